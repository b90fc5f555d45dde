"""The collection's explorative policy over a reduced action set (``--action-set``)."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from clustering.power_grid.collect import (
    CollectActionSet,
    CollectSettings,
    collect,
    load_collection,
    settings_dict,
)
from distributed_grid2op.actions.file import grid_summary, write_action_file
from distributed_grid2op.envs import EnvSpec, make_env, quiet_grid2op
from distributed_grid2op.errors import UserError
from distributed_grid2op.grid import substation_topology, unitary_topologies

ENV = "l2rpn_case14_sandbox"
SPEC = EnvSpec(ENV, thermal_limit_scale=0.85)


@pytest.fixture(scope="module")
def env():
    with quiet_grid2op():
        e = make_env(ENV, thermal_limit_scale=0.85)
    yield e
    e.close()


def _vectors(env, sub):
    return [
        substation_topology(a, sub, env).astype(int).tolist() for a in unitary_topologies(env, sub)
    ]


def _write(path, env, picks: dict[int, list[int]], seed=0):
    """An actions.json with the unitary topologies ``picks[sub]`` (indices) of each substation."""
    actions = []
    for sub, idx in picks.items():
        vecs = _vectors(env, sub)
        actions += [{"substation": sub, "set_bus": vecs[i], "score": {}} for i in idx]
    scoring = {"env": ENV, "thermal_limit_scale": 0.85, "seed": seed, "ranking": "test"}
    return write_action_file(path, env_name=ENV, grid=grid_summary(env), scoring=scoring,
                             actions=actions)  # fmt: skip


def _settings(**kw):
    base = dict(spec=SPEC, substations=(1, 5), n_episodes=2, n_samples=20, max_steps=8,
                episodes_per_shard=1)  # fmt: skip
    base.update(kw)
    return CollectSettings(**base)


def test_draws_from_the_set_and_records_indices(tmp_path, env):
    picks = {1: [3, 7, 11], 5: [2, 4]}
    aset = CollectActionSet.load(_write(tmp_path / "a.json", env, picks), env=env)
    assert aset.substations() == [1, 5]
    settings = _settings(action_set=aset)
    data = collect(settings, tmp_path / "c", workers=1, progress=False)
    for sub, idx in picks.items():
        d = data[sub]
        assert len(d) > 0
        assert d.action_raw.min() >= 0 and d.action_raw.max() < len(idx)
        # the vectors behind action_raw are the file's, in file order
        assert d._vectors.tolist() == [_vectors(env, sub)[i] for i in idx]
    ident = json.loads((tmp_path / "c" / "collection.json").read_text())
    assert ident["action_set"]["digest"] == aset.digest
    assert ident["action_set"]["scoring"]["seed"] == 0
    assert settings_dict(settings)["action_set"]["n_actions"] == 5


def test_full_unitary_set_draws_like_no_set(tmp_path, env):
    """Same seeds, same topologies in the same order: the same transitions."""
    picks = {1: list(range(len(unitary_topologies(env, 1)))),
             5: list(range(len(unitary_topologies(env, 5))))}  # fmt: skip
    aset = CollectActionSet.load(_write(tmp_path / "a.json", env, picks), env=env)
    a = collect(_settings(), tmp_path / "plain", workers=1, progress=False)
    b = collect(_settings(action_set=aset), tmp_path / "set", workers=1, progress=False)
    for sub in (1, 5):
        np.testing.assert_array_equal(a[sub].action_raw, b[sub].action_raw)
        np.testing.assert_array_equal(a[sub].next_state, b[sub].next_state)
        np.testing.assert_array_equal(a[sub].action, b[sub].action)


def test_resume_with_another_set_is_refused(tmp_path, env):
    s1 = CollectActionSet.load(_write(tmp_path / "a.json", env, {1: [1, 2], 5: [1]}), env=env)
    s2 = CollectActionSet.load(
        _write(tmp_path / "b.json", env, {1: [1, 2], 5: [1]}, seed=1), env=env
    )
    out = tmp_path / "c"
    collect(_settings(action_set=s1), out, workers=1, progress=False)
    collect(_settings(action_set=s1), out, workers=1, progress=False, resume=True)  # same: ok
    for other in (s2, None):
        with pytest.raises(UserError, match="other settings"):
            collect(_settings(action_set=other), out, workers=1, progress=False, resume=True)
    # a copied file is the same set
    (tmp_path / "copy.json").write_bytes((tmp_path / "a.json").read_bytes())
    same = CollectActionSet.load(tmp_path / "copy.json", env=env)
    assert same.digest == s1.digest
    collect(_settings(action_set=same), out, workers=1, progress=False, resume=True)
    assert load_collection(out, _settings(action_set=same))[1].action_raw.max() < 2


def test_substation_outside_the_set_is_refused(tmp_path, env):
    aset = CollectActionSet.load(_write(tmp_path / "a.json", env, {1: [1]}), env=env)
    with pytest.raises(UserError, match=r"no action on substation\(s\) \[5\]"):
        _settings(action_set=aset)


def test_no_set_keeps_the_fingerprint():
    """Without an action set the identity is the one collections had before action sets
    (so folders collected earlier resume, and the shards' bytes do not change)."""
    import grid2op

    settings = _settings()
    old = {
        "format": 1,
        "env": SPEC.to_dict(),
        "mode": "thesis",
        "attributes": ["rho"],
        "seed": 29,
        "max_steps": 8,
        "episodes_per_shard": 1,
        "grid2op_version": grid2op.__version__,
    }
    text = json.dumps(old, sort_keys=True, default=str)
    assert settings.identity() == old
    assert settings.fingerprint() == hashlib.sha1(text.encode()).hexdigest()[:16]
    assert "action_set" not in settings_dict(settings)


@pytest.mark.slow
def test_pipeline_cli_with_action_set(tmp_path, env):
    """End to end: substations without actions are left out of the collection and still
    assigned (factorization.json complete); the summary names the set."""
    from clustering.power_grid.__main__ import main
    from distributed_grid2op.factorization_file import load_factorization

    path = _write(tmp_path / "a.json", env, {1: [3, 7, 11], 3: [2, 5], 5: [2, 4], 8: [1, 2]})
    out = tmp_path / "pg"
    args = ["--env", ENV, "--thermal-limit-scale", "0.85", "--action-set", str(path),
            "--episodes", "4", "--samples", "120", "--permutations", "1", "--k", "3",
            "--max-steps", "30", "--workers", "1", "--out", str(out), "--no-progress"]  # fmt: skip
    assert main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert sorted(map(int, summary["samples"])) == [1, 3, 5, 8]
    assert summary["settings"]["action_set"]["substations"] == [1, 3, 5, 8]
    assert any("no action on controllable substation" in n for n in summary["notes"])
    fac = load_factorization(out / "factorization.json", env=env)  # validated: complete
    assert sorted(s for c in fac.clusters for s in c.substations) == list(range(env.n_sub))
    assert "Action set" in (out / "summary.md").read_text()
    with pytest.raises(UserError, match="other settings"):  # resume with another set
        other = _write(tmp_path / "b.json", env, {1: [3], 5: [2]})
        main([*args[:5], str(other), *args[6:], "--resume"])
