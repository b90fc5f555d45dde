"""Plots render to files without a display; bad inputs are one-line user errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from distributed_grid2op import plots
from distributed_grid2op.cli import run
from distributed_grid2op.envs import EnvSpec
from distributed_grid2op.evaluation import evaluate, run_specs

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def metrics(tmp_path_factory):
    out = tmp_path_factory.mktemp("plots")
    spec = EnvSpec("rte_case5_example", thermal_limit_scale=0.85)
    evaluate(
        run_specs(["do-nothing", "expert"]),
        spec,
        out,
        episodes=2,
        max_steps=10,
        seed=1,
        progress=False,
    )
    return out / "step_metrics.csv"


def _plot(argv, capsys):
    try:
        code = run(plots.main, argv)
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr()


@pytest.mark.parametrize(
    "kind, extra",
    [
        ("survival", []),
        ("rho", ["--days", "0.02"]),
        ("actions", ["--run", "expert"]),
        ("rho", ["--run", "expert"]),
    ],
)
def test_step_metric_plots_render_png(metrics, kind, extra, tmp_path, capsys):
    out = tmp_path / f"{kind}.png"
    code, cap = _plot([kind, str(metrics), "--output", str(out), *extra], capsys)
    assert code == 0, cap.err
    assert out.read_bytes()[:8] == PNG
    assert Image.open(out).size[0] > 200


def test_learning_curves_from_a_training_log(tmp_path, capsys):
    rng = np.random.default_rng(0)
    rows = [
        {"episode": e, "scenario": e % 3, "seed": seed, "survived_steps": int(rng.integers(10, 100)),
         "max_steps": 100, "safe_steps": 5, "total_reward": float(rng.normal()), "decisions": 3}
        for seed in (0, 1) for e in range(40)
    ]  # fmt: skip
    log = tmp_path / "train_log.csv"
    pd.DataFrame(rows).to_csv(log, index=False)
    out = tmp_path / "learning.png"
    code, cap = _plot(["learning", str(log), "--output", str(out), "--window", "5"], capsys)
    assert code == 0, cap.err
    assert out.read_bytes()[:8] == PNG


def test_grid_coloured_by_cluster(metrics, tmp_path, capsys):
    fact = tmp_path / "factorization.json"
    fact.write_text(json.dumps({"format": 1, "clusters": [
        {"substations": [0, 1, 2], "lines": [0, 1, 2, 3]}, {"substations": [3, 4], "lines": [4, 5, 6, 7]}]}))  # fmt: skip
    out = tmp_path / "grid.png"
    code, cap = _plot(
        ["grid", str(metrics), "--factorization", str(fact), "--output", str(out)], capsys
    )
    assert code == 0, cap.err
    assert out.read_bytes()[:8] == PNG
    # the default (thesis case14) partition does not fit case5: a clear error, not a traceback
    code, cap = _plot(["grid", str(metrics), "--output", str(tmp_path / "g2.png")], capsys)
    assert code == 2 and cap.err.startswith("error:") and "substations" in cap.err


def test_replay_gif_has_one_frame_per_step(metrics, tmp_path, capsys):
    steps = pd.read_csv(metrics)
    n = int(((steps["run"] == "expert") & (steps["episode"] == 1)).sum())
    out = tmp_path / "replay.gif"
    code, cap = _plot(
        ["replay", str(metrics), "--run", "expert", "--episode", "1", "--output", str(out)], capsys
    )
    assert code == 0, cap.err
    gif = Image.open(out)
    assert gif.format == "GIF" and gif.n_frames == n


@pytest.mark.parametrize(
    "argv, message",
    [
        (["survival", "{missing}"], "no such CSV"),
        (["survival", "{bad}"], "missing column"),
        (["rho", "{metrics}", "--run", "nobody"], "unknown run"),
        (["replay", "{metrics}", "--episode", "7"], "no replay data"),
        (["pie", "{metrics}"], "invalid choice"),
    ],
)
def test_plot_user_errors(metrics, argv, message, tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    paths = {"missing": tmp_path / "none.csv", "bad": bad, "metrics": metrics}
    argv = [a.format(**paths) for a in argv] + ["--output", str(tmp_path / "x.png")]
    code, cap = _plot(argv, capsys)
    assert (
        code == 2
        and cap.err.startswith("error:")
        and message in cap.err
        and cap.err.count("\n") == 1
    )


def test_learning_groups_by_run_or_repeated_seed_only():
    per_episode_seed = pd.DataFrame({"episode": range(6), "seed": range(6)})
    two_seeds = pd.DataFrame({"episode": list(range(3)) * 2, "seed": [0] * 3 + [1] * 3})
    assert not plots._is_group(per_episode_seed, "seed")
    assert plots._is_group(two_seeds, "seed")
    assert not plots._is_group(two_seeds, "run")


def test_learning_curves_one_line_per_variant_band_over_seeds(tmp_path, monkeypatch):
    """Two variants x two training seeds: one mean line and one min-max band per variant."""
    rows = [
        {"variant": v, "train_seed": s, "survived_steps": 10 * (s + 1) + (50 if v == "b" else 0),
         "max_steps": 100, "safe_steps": 5, "total_reward": 1.0}
        for v in ("a", "b") for s in (0, 1) for _ in range(30)
    ]  # fmt: skip
    captured, real_save = {}, plots._save

    def save(fig, output):
        captured["fig"] = fig
        return real_save(fig, output)

    monkeypatch.setattr(plots, "_save", save)
    out = plots.plot_learning(
        pd.DataFrame(rows), tmp_path / "c.png", hue="variant", spread="train_seed"
    )
    assert out.read_bytes()[:8] == PNG
    ax = captured["fig"].axes[0]
    means = {ln.get_label(): ln.get_ydata() for ln in ax.get_lines()}
    assert set(means) == {"a: mean", "b: mean"}
    np.testing.assert_allclose(means["a: mean"], 0.15)  # mean of 0.10 and 0.20
    np.testing.assert_allclose(means["b: mean"], 0.65)
    bands = [c for c in ax.collections if "min-max over 2 train_seeds" in c.get_label()]
    assert len(bands) == 2
    assert [a.get_ylabel() for a in captured["fig"].axes] == [
        "survived fraction", "safe fraction", "total reward"]  # fmt: skip
