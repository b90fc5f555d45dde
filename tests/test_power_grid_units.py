"""Continuous action variables in ``python -m clustering.power_grid``: unit columns
(redispatch, curtailment, storage) recorded as applied values, their MI with the lines, the
assignment of units to clusters, format 2 ``factorization.json`` and the ``--actions`` CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from clustering.power_grid import collect as C
from clustering.power_grid import pipeline as P
from distributed_grid2op.envs import EnvSpec
from distributed_grid2op.errors import UserError
from distributed_grid2op.factorization_file import load_factorization
from distributed_grid2op.io import write_json

STORAGE_ENV = "educ_case14_storage"


def _settings(units=("redispatch:0", "storage:1"), **kw):
    base = dict(
        spec=EnvSpec(STORAGE_ENV),
        substations=(),
        units=tuple(units),
        n_episodes=4,
        n_samples=40,
        seed=5,
        max_steps=20,
        episodes_per_shard=2,
    )
    base.update(kw)
    return C.CollectSettings(**base)


def _shards(folder) -> dict:
    out = {}
    for path in sorted(folder.glob("*.npz")):
        with np.load(path) as z:
            out[path.name] = {k: z[k] for k in z.files}
    return out


def test_unit_columns_of_an_env_and_their_names(storage_env, case14_env):
    assert C.unit_columns(storage_env, ("redispatch", "storage")) == [
        "redispatch:0", "redispatch:1", "redispatch:5", "storage:0", "storage:1",
    ]  # fmt: skip
    assert C.unit_columns(case14_env, ("topology", "curtailment")) == [
        "curtailment:2", "curtailment:3", "curtailment:4",
    ]  # fmt: skip
    assert C.unit_columns(case14_env, ("topology",)) == []
    assert C.parse_unit_key("storage:1") == ("storage", 1)
    with pytest.raises(UserError, match="not a unit column"):
        C.parse_unit_key("battery:1")
    with pytest.raises(UserError, match="not a unit column"):
        _settings(units=("storage",))


def test_unit_columns_record_the_applied_values_within_limits(tmp_path, storage_env):
    settings = _settings()
    data = C.collect(settings, tmp_path, progress=False)
    assert list(data) == ["redispatch:0", "storage:1"]
    cls = type(storage_env)
    for key, d in data.items():
        n = len(d)
        assert n == 40 and d.unit == key and d.substation == -1 and d.column == key
        assert d.requested.shape == d.applied.shape == (n,)
        assert np.all(np.isfinite(d.applied)) and len(np.unique(d.applied)) > n // 2
        # the action variable is the rank encoding of the applied values, on [0, 1)
        uniq = np.unique(d.applied)
        np.testing.assert_allclose(d.action, np.searchsorted(uniq, d.applied) / len(uniq))
        assert not np.any(d.terminal)
    red, sto = data["redispatch:0"].applied, data["storage:1"].applied
    assert np.all(np.abs(red) <= cls.gen_pmax[0] - cls.gen_pmin[0] + 1e-4)
    assert np.all(sto >= -cls.storage_max_p_prod[1] - 1e-4)
    assert np.all(sto <= cls.storage_max_p_absorb[1] + 1e-4)
    names = sorted(p.name for p in tmp_path.glob("*.npz"))
    assert names[0].startswith("thesis-redispatch000-ep000000") and "storage001" in names[-1]


def test_applied_values_come_from_the_next_observation_not_the_request(storage_env):
    """The policy's request is moved into the legal range by grid2op and `legal_action`; what
    is recorded is the next observation's ``actual_dispatch`` / ``storage_power``."""
    from distributed_grid2op.envs import quiet_grid2op

    seen = []
    step = storage_env.step

    def spy(action):
        out = step(action)
        seen.append(out[0])
        return out

    for key, attr in (("redispatch:1", "actual_dispatch"), ("storage:0", "storage_power")):
        seen.clear()
        policy = C._UnitPolicy(storage_env, key)
        with quiet_grid2op():
            storage_env.reset(seed=1, options={"time serie id": 0})
            storage_env.step = spy
            try:
                *_, reqs, apps = C._episode_thesis(
                    storage_env, policy, np.random.default_rng(2), ("rho",), 15
                )
            finally:
                del storage_env.step
        uid = policy.unit
        np.testing.assert_allclose(apps, [getattr(o, attr)[uid] for o in seen], rtol=1e-6)
        assert len(reqs) == len(apps) == 15


def test_same_seed_same_shards_other_seed_others(tmp_path, storage_env):
    settings = _settings(units=("redispatch:5", "storage:0"), n_samples=24, max_steps=12)
    one = C.collect(settings, tmp_path / "one", progress=False)
    two = C.collect(settings, tmp_path / "two", workers=2, progress=False)
    ref, got = _shards(tmp_path / "one"), _shards(tmp_path / "two")
    assert list(ref) == list(got) and ref
    for name in ref:
        for key in ref[name]:
            np.testing.assert_array_equal(got[name][key], ref[name][key], err_msg=name)
    for key in one:
        np.testing.assert_array_equal(one[key].applied, two[key].applied)
    other = C.collect(_settings(units=("redispatch:5", "storage:0"), n_samples=24, max_steps=12,
                                seed=6), tmp_path / "other", progress=False)  # fmt: skip
    assert not np.array_equal(other["storage:0"].applied, one["storage:0"].applied)
    # a resume of the same settings reads the same shards back
    again = C.collect(settings, tmp_path / "one", progress=False, resume=True)
    np.testing.assert_array_equal(again["storage:0"].applied, one["storage:0"].applied)
    # the unit columns enter the fingerprint: topology-only fingerprints are unchanged
    assert "units" in settings.identity()
    assert "units" not in C.CollectSettings(spec=EnvSpec(STORAGE_ENV), substations=(1,)).identity()


def _transitions(key, x, a, rng):
    n = len(a)
    return C._make_transitions(
        -1, x.astype(np.float32), x.astype(np.float32), np.zeros(n, np.int32),
        np.zeros(n, bool), np.arange(n, dtype=np.int32) // 50, n // 50, [], None,
        unit=key, requested=a.astype(np.float32), applied=a.astype(np.float32),
    )  # fmt: skip


def test_a_unit_with_a_planted_effect_joins_the_cluster_of_the_lines_it_moves(storage_env):
    """Synthetic columns through the MI stage: ``storage:0`` (substation 5) drives the lines of
    the cluster that does not hold substation 5; ``redispatch:0`` moves nothing and falls back
    to the cluster of its substation (1)."""
    rng = np.random.default_rng(0)
    n_line, n_sub = int(storage_env.n_line), int(storage_env.n_sub)
    sub_c = np.array([0, 0, 0, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1])
    line_c = np.array([0] * 7 + [1] * 13)
    assert sub_c[5] == 0 and sub_c[1] == 0
    n = 600
    units = P.UnitColumns(("redispatch:0", "storage:0"), n_sub)
    a_red, a_sto = rng.normal(size=n) * 30, rng.uniform(-5, 5, size=n)
    x_red = rng.uniform(0.2, 0.8, size=(n, n_line))
    x_sto = rng.uniform(0.2, 0.8, size=(n, n_line))
    x_sto[:, line_c == 1] = 0.5 + 0.05 * a_sto[:, None] + 0.01 * rng.normal(size=(n, 13))
    data = {
        units.index("redispatch:0"): _transitions("redispatch:0", x_red, a_red, rng),
        units.index("storage:0"): _transitions("storage:0", x_sto, a_sto, rng),
    }
    cfg = P.PipelineConfig(k=0.05, n_permutations=2, progress=False, workers=1)
    _, _, unbiased = P.mi_columns(data, n_line, n_sub + 2, cfg)
    assert unbiased.shape == (n_line, n_sub + 2)
    assert unbiased[line_c == 1, n_sub + 1].min() > 0.5  # the planted dependence is found
    assert np.abs(unbiased[:, n_sub]).max() < 0.05  # and no other
    significant = P.significant_units(unbiased, units)
    assert significant == [n_sub + 1]
    strong_sub = unbiased.copy()
    strong_sub[:, 3] = 100.0  # units are compared with units, not with topology effects
    assert P.significant_units(strong_sub, units) == significant
    gen_c, sto_c, report = P.assign_units(storage_env, unbiased, sub_c, line_c, units, significant)
    assert sto_c[0] == 1  # by its effect, not by its substation (cluster 0)
    assert gen_c[0] == sub_c[1] == 0  # no effect: its substation's cluster
    # generators without a column and storage 1 follow their substations
    np.testing.assert_array_equal(gen_c[1:], sub_c[type(storage_env).gen_to_subid[1:]])
    assert sto_c[1] == sub_c[type(storage_env).storage_to_subid[1]]
    assert report == {"effect": ["storage:0"], "substation": ["redispatch:0"]}


def test_without_substation_columns_the_units_columns_cluster_the_lines(tmp_path, storage_env):
    """No topology: the significant unit columns are the factorized columns; each unit then
    joins the cluster of the lines it moves, an insignificant one its substation's."""
    n_line, n_sub = int(storage_env.n_line), int(storage_env.n_sub)
    units = P.UnitColumns(("redispatch:0", "redispatch:5", "storage:1"), n_sub)
    m = np.zeros((n_line, n_sub + 3))
    m[:8, n_sub] = 1.0  # redispatch:0 -> lines 0-7
    m[8:, n_sub + 1] = 0.8  # redispatch:5 -> lines 8-19
    m[:, n_sub + 2] = 0.01  # storage:1: below the significance share
    cols = P.factor_columns(m, m, [], units)
    assert cols == [n_sub, n_sub + 1]
    cfg = P.PipelineConfig(seed=0, n_samples=100, n_permutations=1, actions=("redispatch",))
    cfg.mode = "thesis"
    fac, sub_c, line_c, doc = P._decompose(storage_env, STORAGE_ENV, m, cols, cfg, "spectral",
                                           0.7, units=units)  # fmt: skip
    assert doc["format"] == 2 and len(doc["clusters"]) == 2
    assert len(set(line_c[:8])) == 1 and len(set(line_c[8:])) == 1 and line_c[0] != line_c[8]
    gens = {g: c for c, cl in enumerate(doc["clusters"]) for g in cl["generators"]}
    assert gens[0] == line_c[0] and gens[5] == line_c[8]
    sto = {u: c for c, cl in enumerate(doc["clusters"]) for u in cl["storages"]}
    assert sto[1] == sub_c[type(storage_env).storage_to_subid[1]]
    how = doc["params"]["unit_assignment"]
    assert how["effect"] == ["redispatch:0", "redispatch:5"] and how["substation"] == ["storage:1"]
    assert doc["params"]["actions"] == ["redispatch"]
    load_factorization(write_json(tmp_path / "factorization.json", doc), env=storage_env)


def test_format_2_document_round_trip(tmp_path, storage_env):
    sub_c = np.array([0, 0, 0, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1])
    line_c = np.array([0] * 7 + [1] * 13)
    gen_c, sto_c = np.array([0, 1, 0, 0, 1, 1]), np.array([1, 0])
    params = {"actions": ["redispatch", "storage"], "seed": 29}
    doc = P.factorization_document(STORAGE_ENV, "spectral", params, sub_c, line_c, gen_c, sto_c)
    path = write_json(tmp_path / "factorization.json", doc)
    fact = load_factorization(path, env=storage_env)
    assert fact.has_units and fact.params["actions"] == ["redispatch", "storage"]
    assert [c.generators for c in fact.clusters] == [(0, 2, 3), (1, 4, 5)]
    assert [c.storages for c in fact.clusters] == [(1,), (0,)]
    assert fact.to_dict() == json.loads(path.read_text())
    # without units: format 1, as before continuous control
    doc1 = P.factorization_document(STORAGE_ENV, "spectral", {}, sub_c, line_c)
    assert doc1["format"] == 1 and "generators" not in doc1["clusters"][0]
    assert not load_factorization(write_json(tmp_path / "f1.json", doc1), env=storage_env).has_units
    # a format 2 file missing a unit is refused
    doc["clusters"][0]["generators"] = [0, 2]
    with pytest.raises(UserError, match="generators \\[3\\] are in no cluster"):
        load_factorization(write_json(tmp_path / "bad.json", doc), env=storage_env)


def _run(argv, capsys):
    from clustering.power_grid.__main__ import main
    from distributed_grid2op.cli import run

    try:
        code = run(main, argv)
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr()


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--actions", "bogus"], "unknown action kind(s) bogus"),
        (["--actions", "topology,bogus,storage"], "bogus"),
        (["--actions", ","], "unknown action kind"),
        (["--env", STORAGE_ENV, "--actions", "topology"], "no topology (set-bus) actions"),
        (["--env", "rte_case5_example", "--actions", "storage"], "does not support storage"),
    ],
)
def test_bad_actions_exit_2_with_one_line(tmp_path, capsys, argv, needle):
    code, cap = _run([*argv, "--out", str(tmp_path / "o"), "--no-progress"], capsys)
    assert code == 2
    assert cap.err.startswith("error:") and needle in cap.err and cap.err.count("\n") == 1
    assert not (tmp_path / "o" / "shards").exists()


def test_storage_env_end_to_end_writes_units_and_figure(tmp_path, capsys, storage_env):
    out = tmp_path / "out"
    argv = ["--env", STORAGE_ENV, "--out", str(out), "--quick", "--no-progress", "--workers",
            "1", "--samples", "200", "--episodes", "2", "--actions", "storage,redispatch"]  # fmt: skip
    code, cap = _run(argv, capsys)
    assert code == 0, cap.err
    fact = load_factorization(out / "factorization.json", env=storage_env)
    assert fact.has_units and fact.params["actions"] == ["redispatch", "storage"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["unit_columns"] == ["redispatch:0", "redispatch:1", "redispatch:5",
                                       "storage:0", "storage:1"]  # fmt: skip
    assert (
        summary["controllable_substations"] == [] and summary["actions"] == fact.params["actions"]
    )
    assert np.load(out / "mi.npy").shape == (storage_env.n_line, storage_env.n_sub + 5)
    assert (out / "figures" / "grid_clusters.png").stat().st_size > 1000
    assert "generators" in (out / "summary.md").read_text()
    assert "gens/" in cap.out
