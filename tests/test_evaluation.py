"""Evaluation: hand-checked metrics, CSV schemas, reproducibility, resume, CLI errors."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from distributed_grid2op import evaluate as evaluate_cli
from distributed_grid2op.cli import run
from distributed_grid2op.envs import EnvSpec
from distributed_grid2op.errors import UserError
from distributed_grid2op.evaluation import (
    DAILY_COLUMNS,
    EPISODE_COLUMNS,
    RUN_COLUMNS,
    STEP_COLUMNS,
    TIMING_COLUMNS,
    daily_summary,
    episode_steps,
    episode_summary,
    evaluate,
    l2rpn_score,
    make_agent,
    plan_episodes,
    run_specs,
    summarize_runs,
)
from distributed_grid2op.seeding import child_seeds

CASE5 = EnvSpec("rte_case5_example", thermal_limit_scale=0.85)
SMALL = {"episodes": 2, "max_steps": 12, "seed": 3, "progress": False}


def crafted_episode(run="agent", episode=0) -> dict:
    """4 steps on 2 lines, day boundary after step 2, game over on step 4 (10-step episode)."""
    nan = np.nan
    return {
        "rho": np.array([[0.5, 0.6], [1.1, 0.2], [0.3, 0.4], [nan, nan]]),
        "line_status0": np.array([True, True]),
        "line_status": np.array([[True, True], [True, False], [True, True], [False, False]]),
        "minutes": np.array([5, 10, 1440, 1445]),
        "datetime": np.array(["2019-01-01 00:05", "2019-01-01 00:10", "2019-01-02 00:00", "2019-01-02 00:05"]),
        "losses_mw": np.array([1.0, 2.0, 3.0, nan]),
        "agent": np.array(["", "expert", "", "reconnect"]),
        "action_id": np.array([-1, 7, -1, 1]),
        "substation": np.array([-1, 3, -1, -1]),
        "reward": np.array([1.0, 2.0, 3.0, 0.0]),
        "illegal": np.array([False, False, True, False]),
        "ambiguous": np.array([False, False, False, False]),
        "decision_ms": np.array([1.0, 100.0, 1.0, 3.0]),
        "meta": {"run": run, "episode": episode, "scenario": 0, "scenario_name": "00", "seed": 1,
                 "max_steps": 10, "survived_steps": 3, "game_over_cause": "BackendError"},
    }  # fmt: skip


def test_step_metrics_of_a_crafted_episode():
    s = episode_steps(crafted_episode())
    assert list(s.columns) == STEP_COLUMNS + ["rho_0", "rho_1"]
    np.testing.assert_allclose(s["max_rho"], [0.6, 1.1, 0.4, np.nan])
    assert s["n_overloaded"].tolist() == [0, 1, 0, 0]
    assert s["line_status_changes"].tolist() == [0, 1, 1, 0]  # game-over row: no change counted
    assert s["game_over"].tolist() == [0, 0, 0, 1]
    assert s["day"].tolist() == [0, 0, 1, 1]
    assert s["step"].tolist() == [1, 2, 3, 4]
    assert s["illegal"].tolist() == [0, 0, 1, 0]


def test_daily_summary_of_a_crafted_episode():
    d = daily_summary(episode_steps(crafted_episode()), danger=0.9)
    assert list(d.columns) == DAILY_COLUMNS
    assert d["steps"].tolist() == [2, 2]
    np.testing.assert_allclose(d["max_max_rho"], [1.1, 0.4])
    np.testing.assert_allclose(d["mean_max_rho"], [0.85, 0.4])
    assert d["danger_steps"].tolist() == [1, 0]
    assert d["overload_steps"].tolist() == [1, 0]
    assert d["decisions"].tolist() == [1, 1]
    assert d["actions"].tolist() == [1, 1]
    np.testing.assert_allclose(d["losses_mean_mw"], [1.5, 3.0])
    np.testing.assert_allclose(d["losses_mwh"], [3.0 * 5 / 60, 3.0 * 5 / 60])


def test_episode_summary_of_a_crafted_episode():
    e = episode_summary(crafted_episode(), danger=0.9)
    assert set(e) == set(EPISODE_COLUMNS)
    assert e["survived_steps"] == 3 and e["survived_fraction"] == pytest.approx(0.3)
    assert e["completed"] == 0 and e["safe_steps"] == 1  # step 2 is the first in danger
    assert e["total_reward"] == 6.0 and e["decisions"] == 2 and e["actions"] == 2
    assert e["illegal_actions"] == 1 and e["game_over_cause"] == "BackendError"
    assert e["decision_ms_mean"] == pytest.approx(26.25)
    assert e["decision_ms_per_decision"] == pytest.approx(51.5)


def test_l2rpn_score_by_hand():
    # equal to reference, all, nothing, reference already full, worse, half-way up
    s, r = [5, 10, 0, 10, 7, 7], [5, 5, 5, 10, 10, 4]
    np.testing.assert_allclose(l2rpn_score(s, r, [10] * 6), [0, 100, -100, 0, -30, 50])


def test_run_summary_means_stds_scores_and_causes():
    rows = []
    for name, survived in (("do-nothing", (4, 10)), ("agent", (10, 6))):
        for ep, s in enumerate(survived):
            rows.append({"run": name, "episode": ep, "max_steps": 10, "survived_steps": s,
                         "survived_fraction": s / 10, "completed": int(s == 10), "safe_steps": s,
                         "total_reward": float(s), "decisions": 2, "actions": 1, "illegal_actions": 0,
                         "game_over_cause": "" if s == 10 else "BackendError",
                         "simulations_per_decision": 3.0 if name == "agent" else float("nan"),
                         "decision_ms_mean": 1.0, "decision_ms_per_decision": 5.0})  # fmt: skip
    out = summarize_runs(pd.DataFrame(rows)).set_index("run")
    assert out.loc["agent", "simulations_per_decision"] == 3.0
    assert list(out.reset_index().columns) == RUN_COLUMNS
    assert out.loc["agent", "survived_steps_mean"] == 8.0
    assert out.loc["agent", "survived_steps_std"] == 2.0  # population std
    assert out.loc["agent", "completed_fraction"] == 0.5
    assert out.loc["agent", "score"] == pytest.approx((100.0 + -40.0) / 2)
    assert out.loc["do-nothing", "score"] == 0.0
    assert np.isnan(out.loc["agent", "score_vs_reconnect"])  # reconnect was not run
    assert out.loc["do-nothing", "game_over_causes"] == "BackendError:1"


def test_plan_cycles_scenarios_with_distinct_seeds(case5_env):
    plan = plan_episodes(case5_env, "all", episodes=3, seed=7)
    assert [p["scenario"] for p in plan] == [0, 1, 2]
    assert [p["seed"] for p in plan] == child_seeds(7, 3)
    test = plan_episodes(case5_env, "test", seed=7)
    cycled = plan_episodes(case5_env, "test", episodes=2 * len(test) + 1, seed=7)
    assert [p["scenario"] for p in cycled] == [p["scenario"] for p in test] * 2 + [
        test[0]["scenario"]
    ]
    assert len({p["seed"] for p in cycled}) == len(cycled)


def test_run_specs_validate():
    assert [r.name for r in run_specs(["do-nothing", "expert"])] == ["do-nothing", "expert"]
    with pytest.raises(UserError, match="nothing to evaluate"):
        run_specs([], [])
    with pytest.raises(UserError, match="does not exist"):
        run_specs([], ["/no/such/agent/dir"])


def test_run_specs_one_run_per_agent_and_top_k(tmp_path):
    agent = tmp_path / "dist"
    agent.mkdir()
    runs = run_specs(["do-nothing"], [agent], top_k=[0, 3])
    assert [(r.name, r.top_k) for r in runs] == [
        ("do-nothing", None),
        ("dist-top0", 0),
        ("dist-top3", 3),
    ]
    assert [r.name for r in run_specs([], [agent])] == ["dist"]


@pytest.fixture(scope="module")
def small_eval(tmp_path_factory):
    out = tmp_path_factory.mktemp("eval") / "a"
    res = evaluate(run_specs(["do-nothing", "reconnect", "expert"]), CASE5, out, **SMALL)
    return out, res


def test_csv_schemas_and_run_config(small_eval):
    out, res = small_eval
    steps = pd.read_csv(out / "step_metrics.csv")
    assert list(steps.columns) == STEP_COLUMNS + [f"rho_{i}" for i in range(8)]
    assert list(pd.read_csv(out / "daily_summary.csv").columns) == DAILY_COLUMNS
    assert list(pd.read_csv(out / "episode_summary.csv").columns) == EPISODE_COLUMNS
    assert list(pd.read_csv(out / "run_summary.csv").columns) == RUN_COLUMNS
    eps = res.episodes
    assert len(eps) == 6 and set(eps["max_steps"]) == {12}
    # one row per step played: the survived steps plus the game-over step if any
    per_ep = steps.groupby(["run", "episode"], sort=False).size().sort_index()
    expected = eps.set_index(["run", "episode"]).sort_index()
    played = expected["survived_steps"] + (expected["game_over_cause"].fillna("") != "")
    assert per_ep.to_dict() == played.to_dict()
    cfg = json.loads((out / "run_config.json").read_text())
    assert cfg["env"] == "rte_case5_example" and cfg["thermal_limit_scale"] == 0.85
    assert cfg["seed"] == 3 and cfg["scenarios"] == "all" and cfg["grid2op_version"]
    assert [p["seed"] for p in cfg["plan"]] == child_seeds(3, 2)


def test_expert_survives_at_least_as_long_as_do_nothing(small_eval):
    _, res = small_eval
    s = res.episodes.pivot(index="episode", columns="run", values="survived_steps")
    assert (s["expert"] >= s["do-nothing"]).all()
    assert (s["do-nothing"] < 12).any()  # the stressed grid really fails without control
    runs = res.runs.set_index("run")
    assert runs.loc["expert", "score"] > 0 and runs.loc["do-nothing", "score"] == 0


def _same(a, b, name, drop=()):
    x, y = pd.read_csv(a / name), pd.read_csv(b / name)
    pd.testing.assert_frame_equal(x.drop(columns=list(drop)), y.drop(columns=list(drop)))


def test_same_seed_gives_identical_csvs_and_resume_is_lossless(small_eval, tmp_path):
    out, _ = small_eval
    other = tmp_path / "b"
    evaluate(run_specs(["do-nothing", "reconnect", "expert"]), CASE5, other, **SMALL)
    assert (out / "step_metrics.csv").read_bytes() == (other / "step_metrics.csv").read_bytes()
    assert (out / "daily_summary.csv").read_bytes() == (other / "daily_summary.csv").read_bytes()
    _same(out, other, "episode_summary.csv", TIMING_COLUMNS)
    _same(out, other, "run_summary.csv", TIMING_COLUMNS)

    # interrupted: one episode file and the CSVs missing -> rerun redoes only that episode
    files = sorted((other / "episodes").rglob("*.npz"))
    kept = {f: f.stat().st_mtime_ns for f in files[1:]}
    files[0].unlink()
    (other / "step_metrics.csv").unlink()
    evaluate(run_specs(["do-nothing", "reconnect", "expert"]), CASE5, other, **SMALL)
    assert all(f.stat().st_mtime_ns == t for f, t in kept.items())
    assert files[0].is_file()
    assert (out / "step_metrics.csv").read_bytes() == (other / "step_metrics.csv").read_bytes()


def test_other_settings_in_the_same_folder_are_refused(small_eval, tmp_path):
    out, _ = small_eval
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    spec = EnvSpec("rte_case5_example", thermal_limit_scale=0.9)
    with pytest.raises(UserError, match="thermal_limit_scale"):
        evaluate(run_specs(["do-nothing"]), spec, copy, **SMALL)


def _cli(argv, capsys):
    try:
        code = run(evaluate_cli.main, argv)
    except SystemExit as exc:  # argparse errors exit from inside the parser
        code = exc.code
    return code, capsys.readouterr()


def test_cli_baselines_only(tmp_path, capsys):
    out = tmp_path / "cli"
    argv = ["--env", "rte_case5_example", "--thermal-limit-scale", "0.85", "--baselines", "do-nothing,reconnect",
            "--episodes", "1", "--max-steps", "5", "--out", str(out), "--workers", "1", "--no-progress"]  # fmt: skip
    code, cap = _cli(argv, capsys)
    assert code == 0, cap.err
    assert "do-nothing" in cap.out and "reconnect" in cap.out and "expert" not in cap.out
    assert set(pd.read_csv(out / "run_summary.csv")["run"]) == {"do-nothing", "reconnect"}


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--baselines", "random"], "unknown baseline"),
        (["--thermal-limit-scale", "-1"], "thermal-limit-scale"),
        (["--env", "no_such_env"], "unknown env"),
        (["--agents", "/no/such/dir"], "does not exist"),
        (["--scenarios", "holdout"], "invalid choice"),
        (["--top-k", "1,x"], "comma-separated integers"),
    ],
)
def test_cli_user_errors_are_one_line(argv, message, tmp_path, capsys):
    code, cap = _cli([*argv, "--out", str(tmp_path / "o"), "--no-progress"], capsys)
    assert code == 2
    assert cap.err.startswith("error:") and message in cap.err and cap.err.count("\n") == 1


def test_agent_dir_without_checkpoint_is_a_user_error(tmp_path, capsys):
    empty = tmp_path / "empty_agent"
    empty.mkdir()
    argv = ["--env", "rte_case5_example", "--agents", str(empty), "--baselines", "none",
            "--out", str(tmp_path / "o"), "--no-progress"]  # fmt: skip
    code, cap = _cli(argv, capsys)
    assert code == 2 and cap.err.startswith("error:") and cap.err.count("\n") == 1
    assert not (tmp_path / "o" / "episodes").exists()


def test_a_folder_without_checkpoint_is_a_user_error_before_any_episode(tmp_path, capsys):
    """The driver reads every agent before any episode: a bad one is one line, exit 2."""
    ckpt = tmp_path / "case14_agent"
    ckpt.mkdir()
    argv = ["--env", "rte_case5_example", "--agents", str(ckpt), "--out", str(tmp_path / "o"),
            "--no-progress"]  # fmt: skip
    code, cap = _cli(argv, capsys)
    assert code == 2 and "no agent checkpoint" in cap.err and cap.err.count("\n") == 1
    assert not (tmp_path / "o" / "episodes").exists()


def test_workers_give_the_same_results_as_one_process(small_eval, tmp_path):
    out, _ = small_eval
    evaluate(
        run_specs(["do-nothing", "reconnect", "expert"]), CASE5, tmp_path / "w", workers=2, **SMALL
    )
    assert (out / "step_metrics.csv").read_bytes() == (
        tmp_path / "w" / "step_metrics.csv"
    ).read_bytes()


@pytest.mark.slow
def test_case14_stressed_expert_beats_do_nothing(tmp_path):
    spec = EnvSpec("l2rpn_case14_sandbox", thermal_limit_scale=0.85)
    res = evaluate(
        run_specs(["do-nothing", "reconnect", "expert"]),
        spec,
        tmp_path,
        max_steps=200,
        progress=False,
    )
    s = res.episodes.pivot(index="episode", columns="run", values="survived_steps")
    assert len(s) == 3
    assert (s["expert"] >= s["do-nothing"]).all()
    assert s["expert"].sum() > s["do-nothing"].sum()


def test_a_real_checkpoint_is_evaluated_and_refused_on_another_grid(tmp_path, capsys):
    """Round trip with the agents module: its decisions land in step_metrics.csv."""
    from distributed_grid2op import agents
    from distributed_grid2op.factorization_file import parse_factorization

    env = CASE5.make()
    fact = parse_factorization(
        {"format": 1, "clusters": [{"substations": [0, 1, 2], "lines": [0, 1, 2, 3]},
                                   {"substations": [3, 4], "lines": [4, 5, 6, 7]}]},
        n_sub=env.n_sub, n_line=env.n_line,
    )  # fmt: skip
    ckpt = agents.HierarchicalAgent(env, fact, seed=0).save(tmp_path / "case5_agent")
    env.close()
    res = evaluate(
        run_specs(["do-nothing"], [ckpt]),
        CASE5,
        tmp_path / "ok",
        episodes=1,
        max_steps=5,
        progress=False,
    )
    acted = res.steps.loc[res.steps["run"] == "case5_agent", "agent"].fillna("")
    assert (acted != "").any()
    assert make_agent(run_specs([], [ckpt], top_k=[4])[0], CASE5.make()).top_k == 4
    assert set(acted) <= {"", "reconnect", "cluster_0", "cluster_1"}
    argv = [
        "--env",
        "l2rpn_case14_sandbox",
        "--agents",
        str(ckpt),
        "--out",
        str(tmp_path / "o"),
        "--no-progress",
    ]
    code, cap = _cli(argv, capsys)
    assert code == 2 and cap.err.startswith("error:") and cap.err.count("\n") == 1
    assert not (tmp_path / "o" / "episodes").exists()
