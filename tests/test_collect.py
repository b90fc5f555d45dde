"""Collection of (s, a, s') transitions on rte_case5_example: shapes, encoding, determinism,
resume after an interrupted run, corrupt shards."""

from __future__ import annotations

import numpy as np
import pytest

from clustering.power_grid import collect as C
from distributed_grid2op.envs import EnvSpec
from distributed_grid2op.errors import UserError
from distributed_grid2op.grid import substation_topology, unitary_topologies

SUBS = (0, 3)


def _settings(mode="thesis", **kw):
    base = dict(
        spec=EnvSpec("rte_case5_example"),
        substations=SUBS,
        n_episodes=6,
        n_samples=40,
        mode=mode,
        seed=3,
        max_steps=12,
        episodes_per_shard=2,
    )
    base.update(kw)
    return C.CollectSettings(**base)


def _same(a: dict, b: dict):
    assert a.keys() == b.keys()
    for s in a:
        for key in ("state", "next_state", "action_raw", "action", "terminal", "episode_id"):
            np.testing.assert_array_equal(
                getattr(a[s], key), getattr(b[s], key), err_msg=f"{s} {key}"
            )


@pytest.mark.parametrize("mode", ["thesis", "simulate"])
def test_shapes_and_encoding(tmp_path, case5_env, mode):
    data = C.collect(_settings(mode), tmp_path, progress=False)
    assert sorted(data) == list(SUBS)
    for sub, d in data.items():
        n = len(d)
        assert 0 < n <= 40
        assert d.state.shape == d.next_state.shape == (n, case5_env.n_line)
        assert d.state_names[0] == "rho[0]" and len(d.state_names) == case5_env.n_line
        n_topo = len(unitary_topologies(case5_env, sub))
        assert d.action_raw.min() >= 0 and d.action_raw.max() < n_topo
        # thesis encoding: rank of the distinct set-bus vector among those present / their number
        vectors = np.array(
            [substation_topology(a, sub, case5_env) for a in unitary_topologies(case5_env, sub)]
        )
        uniq = np.unique(vectors[d.action_raw], axis=0)
        rank = [int(np.flatnonzero((uniq == vectors[r]).all(axis=1))[0]) for r in d.action_raw]
        np.testing.assert_allclose(d.action, np.asarray(rank) / len(uniq))
        assert np.all(np.diff(d.episode_id) >= 0)
        if mode == "thesis":
            # within an episode, s' of one transition is s of the next one
            same_ep = d.episode_id[1:] == d.episode_id[:-1]
            np.testing.assert_array_equal(d.next_state[:-1][same_ep], d.state[1:][same_ep])
            # a terminal transition ends its episode with grid2op's all-zero game-over rho
            for i in np.flatnonzero(d.terminal):
                assert np.all(d.next_state[i] == 0)
                assert i == n - 1 or d.episode_id[i + 1] != d.episode_id[i]
        assert not np.any(d.drop_terminal().terminal)


def test_deterministic_and_independent_of_workers(tmp_path, case5_env):
    one = C.collect(_settings(), tmp_path / "a", progress=False)
    again = C.collect(_settings(), tmp_path / "b", progress=False)
    two = C.collect(_settings(), tmp_path / "c", workers=2, progress=False)
    _same(one, again)
    _same(one, two)
    other = C.collect(_settings(seed=4), tmp_path / "d", progress=False)
    assert not np.array_equal(one[0].action_raw[:20], other[0].action_raw[:20])


def test_sample_and_episode_caps(tmp_path, case5_env):
    data = C.collect(_settings(n_samples=15, n_episodes=50), tmp_path / "a", progress=False)
    assert all(len(d) == 15 for d in data.values())
    capped = C.collect(
        _settings(n_samples=10_000, n_episodes=3, max_steps=4), tmp_path / "b", progress=False
    )
    for d in capped.values():
        assert set(d.episode_id.tolist()) <= {0, 1, 2} and len(d) <= 12


def test_resume_after_crash_matches_uninterrupted(tmp_path, case5_env, monkeypatch):
    ref = C.collect(_settings(), tmp_path / "ref", progress=False)
    real = C._run_task
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("killed")
        return real(*args, **kwargs)

    monkeypatch.setattr(C, "_run_task", flaky)
    with pytest.raises(RuntimeError, match="killed"):
        C.collect(_settings(), tmp_path / "run", progress=False)
    written = sorted(p.name for p in (tmp_path / "run").glob("*.npz"))
    assert len(written) == 2  # two shards survived, no partial file
    assert not list((tmp_path / "run").glob(".*"))
    monkeypatch.setattr(C, "_run_task", real)
    mtimes = {p: p.stat().st_mtime_ns for p in (tmp_path / "run").glob("*.npz")}
    resumed = C.collect(_settings(), tmp_path / "run", progress=False, resume=True)
    _same(ref, resumed)
    for p, t in mtimes.items():  # earlier shards were reused, not rewritten
        assert p.stat().st_mtime_ns == t


def test_shards_stop_at_the_sample_budget(tmp_path, case5_env):
    small = C.collect(_settings(n_samples=5, max_steps=None), tmp_path, progress=False)
    assert all(len(d) == 5 for d in small.values())
    for shard in tmp_path.glob("*.npz"):
        data = C.read_shard(shard)
        assert len(data["action_raw"]) <= 5 and bool(data["truncated"]) == (
            len(data["action_raw"]) == 5
        )
    # the truncated episodes are prefixes of the full ones
    full = C.collect(_settings(n_samples=40, max_steps=None), tmp_path / "full", progress=False)
    for s in SUBS:
        np.testing.assert_array_equal(small[s].action_raw, full[s].action_raw[:5])
        np.testing.assert_array_equal(small[s].next_state, full[s].next_state[:5])
    with pytest.raises(UserError, match="samples"):
        C.collect(_settings(n_samples=40, max_steps=None), tmp_path, progress=False)


def test_refuses_existing_without_resume_and_other_settings(tmp_path, case5_env):
    C.collect(_settings(), tmp_path, progress=False)
    with pytest.raises(UserError, match="resume"):
        C.collect(_settings(), tmp_path, progress=False, resume=False)
    with pytest.raises(UserError, match="other settings"):
        C.collect(_settings(seed=5), tmp_path, progress=False)


def test_corrupt_shard_is_a_user_error(tmp_path, case5_env):
    C.collect(_settings(), tmp_path, progress=False)
    shard = sorted(tmp_path.glob("*.npz"))[0]
    shard.write_bytes(b"not a zip file")
    with pytest.raises(UserError, match="corrupt shard"):
        C.collect(_settings(), tmp_path, progress=False)


def test_bad_settings():
    with pytest.raises(UserError):
        _settings(mode="greedy")
    with pytest.raises(UserError):
        _settings(n_samples=0)
