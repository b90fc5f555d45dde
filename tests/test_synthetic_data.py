"""Synthetic factored MDPs: shapes, seeds, block structure, recovery and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from clustering.factorization import block_diagonalize
from clustering.mutual_info import MutualInformation
from clustering.plots import plot_binarized, plot_blocks, plot_mi_heatmap
from clustering.synthetic_data import THESIS_BLOCKS, CopyMDP, RandomFactoredMDP, main, make_blocks


def _envs():
    return [CopyMDP(5, 3, THESIS_BLOCKS), RandomFactoredMDP(12, 4, make_blocks(12, 4, 2, seed=1))]


@pytest.mark.parametrize("env", _envs(), ids=["copy", "random"])
def test_samples_have_shapes_and_are_seeded(env):
    d = env.sample(500, seed=3)
    assert d["state"].shape == d["next_state"].shape == (500, env.n_state)
    assert d["action"].shape == (500, env.n_action)
    again, other = env.sample(500, seed=3), env.sample(500, seed=4)
    for key in d:
        np.testing.assert_array_equal(d[key], again[key])
    assert not np.array_equal(d["next_state"], other["next_state"])


@pytest.mark.parametrize("env", _envs(), ids=["copy", "random"])
def test_actions_only_influence_their_block(env):
    d = env.sample(3000, seed=2)
    mi = MutualInformation(k=0.05, n_permutations=1, seed=0).fit(d["next_state"], d["action"])
    rows, cols = env.reference()
    for block_rows, block_cols in zip(rows, cols):
        outside = [j for j in range(env.n_action) if j not in block_cols]
        assert np.abs(mi.unbiased_[np.ix_(block_rows, outside)]).max() < 0.01
        if isinstance(env, CopyMDP):  # random tables may make a single edge weak
            assert mi.unbiased_[np.ix_(block_rows, block_cols)].max(axis=1).min() > 0.01


def test_thesis_example_recovered_by_thesis_method_and_auto_threshold():
    env = CopyMDP(5, 3, THESIS_BLOCKS)
    d = env.sample(5000, seed=0)
    m = (
        MutualInformation(k=0.05, n_permutations=1, seed=0)
        .fit(d["next_state"], d["action"])
        .unbiased_
    )
    rows, cols = env.reference()
    assert block_diagonalize(m, quantile=0.7).score(rows, cols)["ari_rows"] == 1.0
    auto = block_diagonalize(m, method="auto-threshold")
    assert auto.score(rows, cols) == {"ari_rows": 1.0, "ari_cols": 1.0, "consensus": 1.0}


def test_make_blocks_is_a_seeded_partition():
    blocks = make_blocks(30, 10, 4, seed=0)
    assert sorted(i for b in blocks for i in b[0]) == list(range(30))
    assert sorted(j for b in blocks for j in b[1]) == list(range(10))
    assert all(len(b[0]) >= 2 and b[1] for b in blocks)
    assert make_blocks(30, 10, 4, seed=0) == blocks != make_blocks(30, 10, 4, seed=1)
    with pytest.raises(ValueError, match="n_action >= n_blocks"):
        make_blocks(5, 2, 3)
    with pytest.raises(ValueError, match="partition"):
        CopyMDP(3, 1, [([0, 1], [0])])


def test_figures_are_written(tmp_path):
    m = np.random.default_rng(0).random((6, 4))
    fac = block_diagonalize(m, quantile=0.5)
    for path in (
        plot_mi_heatmap(m, tmp_path / "a.png", [f"s{i}" for i in range(6)], list("abcd")),
        plot_binarized(fac.binary, tmp_path / "b.png"),
        plot_blocks(m, fac, tmp_path / "c.png", col_names=list("abcd")),
    ):
        assert path.stat().st_size > 1000 and path.read_bytes()[:4] == b"\x89PNG"
        assert path.stat().st_mode & 0o777 == 0o644  # shared outputs, not mkstemp's 0600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "b.png", "c.png"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--steps", "0"], "--steps"),
        (["--large", "3x5"], "STATESxACTIONSxBLOCKS"),
        (["--large", "4x2x3"], "n_action >= n_blocks"),
        (["--k", "1.5"], "--k"),
    ],
)
def test_cli_bad_input_is_one_line_error(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as exc:
        main(["--out", str(tmp_path), *argv])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_cli_k_not_below_steps_is_an_error(tmp_path, capsys):
    assert main(["--out", str(tmp_path), "--steps", "50", "--k", "50", "--only", "thesis"]) == 2
    assert capsys.readouterr().err.startswith("error: --k 50")


@pytest.mark.slow
def test_cli_end_to_end_recovers_both_examples(tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "clustering.synthetic_data",
        "--out",
        str(tmp_path),
        "--steps",
        "4000",
        "--large-steps",
        "6000",
        "--n-permutations",
        "1",
        "--n-jobs",
        "1",
        "--no-progress",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    for name in ("thesis", "large"):
        folder = tmp_path / name
        summary = json.loads((folder / "summary.json").read_text())
        assert summary["exact_quantiles"], name
        assert summary["auto"]["ari_rows"] == summary["auto"]["ari_cols"] == 1.0
        fac = json.loads((folder / "factorization.json").read_text())
        assert fac["format"] == 1 and {"state", "action"} == set(fac["clusters"][0])
        for fig in ("mi_heatmap.png", "binarized.png", "blocks.png", "recovery.md"):
            assert (folder / fig).stat().st_size > 0
    # a rerun reuses the stored MI (resumable) and gives the same table
    first = (tmp_path / "large" / "recovery.md").read_text()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "(MI 0.0 s)" in proc.stdout
    assert (tmp_path / "large" / "recovery.md").read_text() == first
