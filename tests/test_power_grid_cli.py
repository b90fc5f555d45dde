"""``python -m clustering.power_grid``: outputs end to end (--quick) and bad input (exit 2)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from clustering.power_grid import pipeline as P
from clustering.power_grid.__main__ import main
from distributed_grid2op.factorization_file import load_factorization


def _run(argv, capsys):
    from distributed_grid2op.cli import run

    try:
        code = run(main, argv)
    except SystemExit as exc:  # argparse errors exit from inside main
        code = exc.code
    return code, capsys.readouterr()


SMALL = [
    "--quick",
    "--no-progress",
    "--workers",
    "1",
    "--samples",
    "300",
    "--episodes",
    "6",
    "--k",
    "0.05",
]


@pytest.mark.slow
@pytest.mark.parametrize("env_name", ["rte_case5_example", "l2rpn_case14_sandbox"])
def test_quick_end_to_end_writes_every_output(tmp_path, capsys, env_name, request):
    env = request.getfixturevalue("case5_env" if env_name.startswith("rte") else "case14_env")
    out = tmp_path / "out"
    code, cap = _run(
        ["--env", env_name, "--out", str(out), *SMALL, "--quantile", "0.6", "--quantile", "0.8"],
        capsys,
    )
    assert code == 0, cap.err
    for name in ("mi.npy", "shuffled_mi.npy", "unbiased_mi.npy"):
        m = np.load(out / name)
        assert m.shape == (env.n_line, env.n_sub)
    mi, sh, unb = (np.load(out / f) for f in ("mi.npy", "shuffled_mi.npy", "unbiased_mi.npy"))
    np.testing.assert_allclose(unb, mi - sh)
    from distributed_grid2op.grid import controllable_substations

    ctrl = controllable_substations(env)
    others = [s for s in range(env.n_sub) if s not in ctrl]
    assert np.all(mi[:, others] == 0) and np.any(mi[:, ctrl] != 0)
    fact = load_factorization(out / "factorization.json", env=env)  # every line and substation once
    assert fact.n_sub == env.n_sub and fact.n_line == env.n_line
    for q in ("0.6", "0.8"):
        load_factorization(out / f"factorization_q{q}.json", env=env)
    refs = {p.stem: load_factorization(p, env=env) for p in (out / "references").glob("*.json")}
    assert set(refs) == {"louvain", "greedy_modularity"}  # no operator areas on these grids
    assert refs["louvain"].method == "louvain" and refs["louvain"].n_line == env.n_line
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["samples"]) == {str(s) for s in ctrl}
    assert "louvain" in summary["agreement"]
    assert ("thesis" in summary["agreement"]) == (env_name == "l2rpn_case14_sandbox")
    text = (out / "summary.md").read_text()
    assert "Timings" in text and "collect" in text and "Clusters" in text
    for fig in summary["figures"]:
        assert (out / fig).stat().st_size > 1000
    assert {
        "figures/grid_clusters.png",
        "figures/binarized_q0.6.png",
        "figures/blocks.png",
        "figures/mi.png",
        "figures/shuffled_mi.png",
        "figures/unbiased_mi.png",
    } <= set(summary["figures"])
    assert list((out / "shards").glob("*.npz"))
    assert "cluster(s)" in cap.out


@pytest.mark.slow
def test_thesis_route_and_resume(tmp_path, capsys, case5_env):
    out = tmp_path / "out"
    argv = ["--env", "rte_case5_example", "--out", str(out), *SMALL, "--thesis"]
    code, cap = _run(argv, capsys)
    assert code == 0, cap.err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["mode"] == "thesis" and summary["method"] == "quantile-threshold-components"
    assert summary["settings"]["n_permutations"] == 1
    code, cap = _run(argv, capsys)  # same folder without --resume: refused, nothing touched
    assert code == 2 and "resume" in cap.err
    first = json.loads((out / "summary.json").read_text())
    mi_before = np.load(out / "mi.npy")
    (out / "mi.npy").unlink()  # the resumed run recomputes MI from the shards on disk
    code, cap = _run([*argv, "--resume"], capsys)
    assert code == 0, cap.err
    assert json.loads((out / "summary.json").read_text())["clusters"] == first["clusters"]
    np.testing.assert_array_equal(np.load(out / "mi.npy"), mi_before)
    shard = sorted((out / "shards").glob("*.npz"))[0]
    shard.write_bytes(b"garbage")
    code, cap = _run([*argv, "--resume"], capsys)
    assert code == 2
    assert cap.err.startswith("error: corrupt shard") and cap.err.count("\n") == 1


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--env", "no_such_env"], "unknown env"),
        (["--quantile", "1.5"], "quantile"),
        (["--samples", "0"], "samples"),
        (["--k", "-3"], "k"),
        (["--mode", "greedy"], "mode"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, argv, needle):
    code, cap = _run([*argv, "--out", str(tmp_path / "o"), "--no-progress"], capsys)
    assert code == 2
    assert cap.err.startswith("error:") and needle in cap.err and cap.err.count("\n") == 1


def test_bad_input_via_argparse_exit_code(tmp_path):
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "clustering.power_grid",
            "--quantile",
            "1.5",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 2
    assert res.stderr.strip().startswith("error:") and len(res.stderr.strip().splitlines()) == 1


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_out(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        code, cap = _run(
            ["--env", "rte_case5_example", "--out", str(locked / "x"), "--no-progress"], capsys
        )
    finally:
        locked.chmod(0o700)
    assert code == 2 and "not writable" in cap.err


def test_complete_assignment_covers_every_line_and_substation(case14_env):
    from clustering.factorization import Factorization

    cols = [1, 2, 3, 4, 5, 8, 12]
    # block 0: lines 0-6 with subs 1, 2, 4; block 1: lines 7-18 with 3, 5, 8, 12; line 19 alone
    fac = Factorization([list(range(7)), list(range(7, 19)), [19]], [[0, 1, 3], [2, 4, 5, 6], []])
    sub_c, line_c = P.complete_assignment(case14_env, fac, cols)
    assert len(sub_c) == case14_env.n_sub and len(line_c) == case14_env.n_line
    assert sub_c[1] == sub_c[2] == sub_c[4] != sub_c[3]
    assert sub_c[0] == sub_c[1]  # substation 0's lines (0, 1) are in block 0
    from distributed_grid2op.grid import line_endpoints

    orig, ext = line_endpoints(case14_env)
    assert line_c[19] in (sub_c[orig[19]], sub_c[ext[19]])  # an isolated line joins its substations
    doc = P.factorization_document("l2rpn_case14_sandbox", "spectral", {}, sub_c, line_c)
    from distributed_grid2op.factorization_file import parse_factorization

    parse_factorization(doc, n_sub=case14_env.n_sub, n_line=case14_env.n_line)


def test_louvain_baseline_is_seeded(case14_env):
    a = P.louvain_baseline(case14_env, 29)
    b = P.louvain_baseline(case14_env, 29)
    np.testing.assert_array_equal(a[0], b[0])
    assert len(set(a[0].tolist())) > 1


def test_spectral_by_modularity_finds_blocks_without_being_told_and_is_stable():
    rng = np.random.default_rng(0)
    m = rng.uniform(0, 0.02, size=(20, 7))
    m[:7, :3] += 0.3  # lines 0-6 x first three columns
    m[7:, 3:] += 0.2
    m[:, 6] = rng.uniform(0, 0.05, size=20)  # a noisy column chaining the thesis method
    labels = set()
    for seed in range(4):
        fac = P.spectral_by_modularity(m, seed)
        assert fac.n_blocks == 2 and fac.params["modularity"] > 0.3
        rows = tuple(sorted(tuple(g) for g in fac.row_groups))
        labels.add(rows)
    assert labels == {(tuple(range(7)), tuple(range(7, 20)))}
    flat = P.spectral_by_modularity(np.full((20, 7), 0.1) + rng.uniform(0, 1e-4, (20, 7)), 0)
    assert flat.n_blocks == 1


def test_non_finite_mi_estimates_are_zeroed(monkeypatch):
    import clustering.mutual_info as M
    from clustering.power_grid.collect import Transitions

    real = M.mi_matrix

    def with_inf(targets, inputs, **kw):
        out = real(targets, inputs, **kw)
        out[0, 0] = np.inf
        return out

    monkeypatch.setattr(M, "mi_matrix", with_inf)
    rng = np.random.default_rng(0)
    n = 200
    d = Transitions(
        1,
        rng.normal(size=(n, 3)),
        rng.normal(size=(n, 3)),
        rng.integers(0, 4, n),
        rng.integers(0, 4, n) / 4,
        np.zeros(n, bool),
        np.zeros(n, np.int32),
    )
    cfg = P.PipelineConfig(n_permutations=1, workers=1, progress=False)
    with pytest.warns(UserWarning, match="non-finite"):
        mi, null, unb = P.mi_columns({1: d}, 3, 2, cfg)
    assert np.all(np.isfinite(unb)) and mi[0, 1] == 0 and np.all(mi[:, 0] == 0)


def test_k_larger_than_the_samples_is_refused_before_collecting(tmp_path, capsys):
    out = tmp_path / "o"
    code, cap = _run(
        ["--env", "rte_case5_example", "--samples", "50", "--k", "80", "--out", str(out)], capsys
    )
    assert code == 2
    assert cap.err.startswith("error:") and "--samples 50" in cap.err
    assert cap.err.count("\n") == 1
    assert not (out / "shards").exists()  # refused up front: nothing collected


def test_workers_option_comes_from_the_execution_layer():
    from clustering.power_grid.__main__ import build_parser

    assert build_parser().parse_args(["--workers", "3"]).workers == 3
    assert build_parser().parse_args([]).workers is None  # default: the available CPUs
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--workers", "0"])


@pytest.mark.slow
def test_sensitivity_mode_end_to_end_with_n_clusters(tmp_path, capsys, case5_env):
    out = tmp_path / "out"
    argv = ["--env", "rte_case5_example", "--out", str(out), "--no-progress", "--workers", "1",
            "--mode", "sensitivity", "--samples", "60", "--episodes", "4", "--permutations", "1",
            "--actions-per-state", "3", "--n-clusters", "2"]  # fmt: skip
    code, cap = _run(argv, capsys)
    assert code == 0, cap.err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["mode"] == "sensitivity" and summary["method"] == "profiles"
    assert summary["settings"]["actions_per_state"] == 3
    assert len(summary["clusters"]) == 2 and summary["factorization_params"]["n_clusters"] == 2
    effects = np.load(out / "effects.npy")
    assert effects.shape == (case5_env.n_line, case5_env.n_sub) and np.all(effects >= 0)
    from distributed_grid2op.grid import controllable_substations

    ctrl = controllable_substations(case5_env)
    assert np.all(effects[:, ctrl].max(axis=0) > 0)
    assert summary["shuffled_control"]["n_clusters"] == 2
    assert set(summary["locality"]) == {"mi", "effects"}
    assert summary["areas"] is None  # case5 defines no operator areas
    load_factorization(out / "factorization.json", env=case5_env)
    assert "Shuffled control" in (out / "summary.md").read_text()


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--n-clusters", "0"], "n-clusters"),
        (["--actions-per-state", "x"], "actions-per-state"),
        (["--mode", "thesis", "--actions-per-state", "4"], "actions-per-state"),
        (["--mode", "thesis", "--method", "profiles"], "profiles"),
        (["--stop-tolerance", "0"], "stop-tolerance"),
        (["--mode", "simulate", "--stop-tolerance", "0.05"], "stop-tolerance"),
    ],
)
def test_bad_sensitivity_options_exit_2_with_one_line(tmp_path, capsys, argv, needle):
    code, cap = _run([*argv, "--out", str(tmp_path / "o"), "--no-progress"], capsys)
    assert code == 2
    assert cap.err.startswith("error:") and needle in cap.err and cap.err.count("\n") == 1


def test_n_clusters_is_honoured_and_bounded():
    rng = np.random.default_rng(0)
    m = rng.uniform(0, 0.01, size=(12, 6))
    for b in range(3):  # three planted blocks of 4 rows x 2 columns
        m[4 * b : 4 * b + 4, 2 * b : 2 * b + 2] += 1.0
    fac = P.factorize(m, list(range(6)), "spectral", 0.7, 0, n_clusters=3)
    assert fac.n_blocks == 3 and sorted(map(len, fac.col_groups)) == [2, 2, 2]
    assert P.factorize(m, list(range(6)), "profiles", 0.7, 0, n_clusters=2).n_blocks == 2
    from distributed_grid2op.errors import UserError

    with pytest.raises(UserError, match="n-clusters"):
        P.factorize(m, list(range(6)), "spectral", 0.7, 0, n_clusters=7)


def test_operator_areas_and_area_agreement():
    from types import SimpleNamespace

    from distributed_grid2op.grid import operator_areas

    rules = SimpleNamespace(legal_action=SimpleNamespace(substations_id_by_area={
        "b": [3, 4, 5], "a": [0, 1, 2]}))  # fmt: skip
    area = operator_areas(SimpleNamespace(_game_rules=rules, n_sub=6))
    assert area.tolist() == [0, 0, 0, 1, 1, 1]
    assert operator_areas(SimpleNamespace(n_sub=6)) is None  # no areas in the rules
    same = P.area_agreement(np.array([1, 1, 1, 0, 0, 0]), area)
    assert same["ari"] == 1.0 and same["homogeneity"] == 1.0 and same["min_purity"] == 1.0
    split = P.area_agreement(np.array([0, 0, 1, 1, 2, 2]), area)
    assert split["homogeneity"] < 1.0 and split["min_purity"] == 0.5 and split["min_size"] == 2
    assert [c["size"] for c in split["clusters"]] == [2, 2, 2]


def test_greedy_modularity_baseline_gives_the_number_asked(case14_env):
    for n in (2, 3):
        sub_c, line_c = P.greedy_modularity_baseline(case14_env, n)
        assert len(set(sub_c.tolist())) == n and line_c.shape == (case14_env.n_line,)


def _rows(rng, n_line=6, subs=(1, 3), n_ep=4, per_ep=25):
    return {
        s: (rng.normal(0, 0.01 * (s + 1), size=(n_ep * per_ep, n_line)),
            np.repeat(np.arange(n_ep), per_ep))
        for s in subs
    }  # fmt: skip


def test_effect_matrix_is_the_typical_effect_and_halves_split_episodes():
    rng = np.random.default_rng(0)
    rows = _rows(rng)
    eff = P.effect_matrix(rows, 6, 5)
    assert eff.shape == (6, 5) and np.all(eff[:, [0, 2, 4]] == 0) and np.all(eff[:, [1, 3]] > 0)
    # a rare huge effect (one row of 100) does not move the typical effect much
    e, ep = rows[1]
    spiked = {**rows, 1: (np.vstack([e[:-1], 100 * np.ones((1, 6))]), ep)}
    assert np.all(P.effect_matrix(spiked, 6, 5)[:, 1] < 2 * eff[:, 1])
    halves = P.effect_halves(rows, 6, 5, seed=7, n_splits=3)
    again = P.effect_halves(rows, 6, 5, seed=7, n_splits=3)
    assert len(halves) == 3
    for (a, b), (a2, b2) in zip(halves, again):
        np.testing.assert_array_equal(a, a2)
        np.testing.assert_array_equal(b, b2)
        assert not np.allclose(a[:, [1, 3]], b[:, [1, 3]])  # different data in each half
    # every half is the median of whole episodes of the substation (2 of its 4)
    a, _ = halves[0]
    candidates = [np.median(np.abs(e[np.isin(ep, pair)]), axis=0)
                  for pair in ([0, 1], [0, 2], [0, 3], [1, 2], [1, 3], [2, 3])]  # fmt: skip
    assert any(np.allclose(a[:, 1], c) for c in candidates)


def test_shuffled_rows_keep_counts_and_pool_but_not_who_acted():
    rng = np.random.default_rng(1)
    rows = _rows(rng)
    shuf = P.shuffled_rows(rows, seed=3)
    assert {s: len(r[0]) for s, r in shuf.items()} == {s: len(r[0]) for s, r in rows.items()}
    pool = np.sort(np.concatenate([r[0] for r in rows.values()]), axis=None)
    np.testing.assert_array_equal(
        np.sort(np.concatenate([r[0] for r in shuf.values()]), axis=None), pool
    )
    assert not np.array_equal(shuf[1][0], rows[1][0])
    np.testing.assert_array_equal(P.shuffled_rows(rows, seed=3)[1][0], shuf[1][0])


def test_reference_factorizations_of_the_areas(case14_env):
    """The operator's areas (crafted here: case14 has none) and the greedy-modularity
    partition with as many communities become factorizations agents can train on."""
    from distributed_grid2op.factorization_file import parse_factorization

    areas = np.array([0] * 7 + [1] * 7)
    docs = P.reference_factorizations(case14_env, "l2rpn_case14_sandbox", areas=areas)
    assert set(docs) == {"greedy_modularity", "greedy_modularity_2", "areas"}
    fact = parse_factorization(docs["areas"], n_sub=14, n_line=case14_env.n_line)
    assert [sorted(c.substations) for c in fact.clusters] == [list(range(7)), list(range(7, 14))]
    orig = np.asarray(case14_env.line_or_to_subid)
    for c, cluster in enumerate(fact.clusters):
        assert all(areas[orig[ln]] == c for ln in cluster.lines)
    assert len(parse_factorization(docs["greedy_modularity_2"], n_sub=14,
                                   n_line=case14_env.n_line).clusters) == 2  # fmt: skip
