"""Reproduction runs: config -> hashed folder, identical numbers for the same seed, reports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from distributed_grid2op.errors import UserError
from experiments.reproduce import reproduce
from experiments.runs import config_hash, load_config

TINY_SYNTHETIC = """
seed = 3
k = 0.05
n_permutations = 2
quantiles = [0.70, 0.80]
figure_quantiles = [0.70]

[[mdp]]
name = "thesis"
kind = "copy"
n_state = 5
n_action = 3
blocks = [[[0, 2, 4], [0, 1]], [[1, 3], [2]]]
steps = 3000
"""


def test_shipped_configs_load_for_every_experiment_and_profile():
    for experiment in ("synthetic", "factorization", "training"):
        for profile in ("quick", "full"):
            cfg = load_config(experiment, profile)
            assert cfg["seed"] == (29 if experiment == "factorization" else 90566)
            assert cfg["profile"] == profile
        assert config_hash(load_config(experiment, "quick")) != config_hash(
            load_config(experiment, "full")
        )


def test_bad_config_is_a_user_error(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("seed = = 3")
    with pytest.raises(UserError, match="invalid TOML"):
        load_config("synthetic", "quick", bad)
    with pytest.raises(UserError, match="unknown experiment"):
        load_config("nope", "quick")


def test_synthetic_rerun_is_identical_and_changed_config_gets_new_folder(tmp_path):
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(TINY_SYNTHETIC)
    a = reproduce("synthetic", "quick", tmp_path / "a", cfg, progress=False)
    b = reproduce("synthetic", "quick", tmp_path / "b", cfg, progress=False)
    ra, rb = (json.loads((p.parent / "results.json").read_text()) for p in (a, b))
    assert ra == rb
    assert ra["thesis"]["auto"]["ari_rows"] == 1.0 and ra["thesis"]["auto"]["ari_cols"] == 1.0
    assert "quantile=0.70" in ra["thesis"]["exact_quantiles"]
    assert (a.parent / "thesis" / "blocks_q0.70.png").stat().st_size > 0
    assert "![mi_heatmap](thesis/mi_heatmap.png)" in a.read_text()

    cfg.write_text(TINY_SYNTHETIC.replace("seed = 3", "seed = 4"))
    c = reproduce("synthetic", "quick", tmp_path / "a", cfg, progress=False)
    assert c.parent != a.parent and a.exists() and c.exists()
    assert json.loads((a.parent / "results.json").read_text()) == ra


def test_cli_bad_experiment_and_config_exit_2(tmp_path):
    for args in (
        ["nope"],
        ["all", "--config", "x.toml"],
        ["synthetic", "--config", str(tmp_path / "missing.toml")],
    ):
        proc = subprocess.run(
            [sys.executable, "-m", "experiments.reproduce", *args, "--out", str(tmp_path)],
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.startswith("error:") and proc.stderr.count("\n") == 1


@pytest.mark.slow
@pytest.mark.parametrize("experiment", ["synthetic", "factorization", "training"])
def test_quick_profile_end_to_end(experiment, tmp_path):
    report = reproduce(experiment, "quick", tmp_path, progress=False)
    text = report.read_text()
    assert text.startswith(f"# {experiment} (quick profile)")
    results = json.loads((report.parent / "results.json").read_text())
    assert results
    for line in text.splitlines():
        if line.startswith("![") and "](" in line:
            assert (report.parent / line.split("](")[1].rstrip(")")).is_file(), line
    assert Path(report.parent / "versions.json").is_file()
    if experiment == "factorization":  # the topology-only baseline is a headline of its own
        base = results["louvain_vs_thesis"]
        assert 0 <= base["ari_substations"] < 1 and "Topology-only baseline" in text
    if experiment == "training":  # every variant x seed trained, and evaluated with the baselines
        assert set(results["training"]) == {"distributed", "centralized"}
        assert all(r["seeds"] == [90566, 90567] for r in results["training"].values())
        runs = {e: {r["run"] for r in rows} for e, rows in results["evaluation"].items()}
        agents = {f"{v}-s{s}" for v in ("distributed", "centralized") for s in (90566, 90567)}
        agents |= {"pretrained-case14"}  # the shipped agent, beside the smoke-run ones
        checked = {f"{a}-top{k}" for a in agents for k in (0, 3)}
        assert runs["bundled"] == checked | {"do-nothing", "reconnect", "expert"}
        assert runs["generated-test"] == agents | {"do-nothing"}
        assert text.index("## Smoke run") < text.index("## Training scenarios")
        assert (report.parent / "scenarios" / "splits.json").is_file()
        assert "![learning_curves](learning_curves.png)" in text


def test_by_variant_groups_training_seeds_and_top_k():
    import pandas as pd

    from experiments.training import by_variant

    runs = ["do-nothing", "dist-s1-top0", "dist-s2-top0", "dist-s1-top3", "dist-s2-top3", "cent-s1"]
    summary = pd.DataFrame({
        "run": runs, "survived_fraction_mean": [0.3, 0.6, 0.8, 1.0, 0.9, 0.5],
        "completed_fraction": 0.0, "decisions_mean": 1.0, "decision_ms_per_decision": 2.0,
    })  # fmt: skip
    rows = {r["run"]: r for r in by_variant(summary)}
    assert list(rows) == ["do-nothing", "dist, top-0", "dist, top-3", "cent"]
    assert rows["dist, top-0"]["survived (mean over seeds)"] == 0.7
    assert (rows["dist, top-0"]["min"], rows["dist, top-0"]["max"]) == (0.6, 0.8)
    assert rows["dist, top-3"]["seeds"] == 2 and rows["do-nothing"]["seeds"] == 0
