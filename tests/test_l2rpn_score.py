"""grid2op's L2RPN 2023 score (`distributed_grid2op.l2rpn_score`) on the bundled l2rpn_idf_2023.

One evaluation with ``--l2rpn-score`` (do-nothing, 1 scenario, 10 steps) and one direct call on
a fresh temporary copy; the bundled env folder inside site-packages must stay as it was.
"""

from __future__ import annotations

import os
import tempfile
from functools import partial
from pathlib import Path

import pandas as pd
import pytest
from grid2op.Agent import DoNothingAgent

from distributed_grid2op import evaluate as evaluate_cli
from distributed_grid2op.cli import run
from distributed_grid2op.envs import EnvSpec, make_env
from distributed_grid2op.evaluation import RunSpec, make_agent
from distributed_grid2op.l2rpn_score import MARKER, l2rpn_2023_score
from distributed_grid2op.seeding import child_seeds

ENV = "l2rpn_idf_2023"
STEPS = 10


def _listing(folder: Path) -> dict:
    """Every path under ``folder`` with its size and modification time."""
    out = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            p = Path(root) / name
            st = p.stat()
            out[str(p.relative_to(folder))] = (st.st_size, st.st_mtime_ns)
    return out


@pytest.fixture(scope="module")
def bundled_dir():
    env = make_env(ENV)  # making the env is what any command does; snapshot after it
    path = Path(env.get_path_env())
    env.close()
    return path


@pytest.fixture(scope="module")
def scored(bundled_dir, tmp_path_factory):
    """``evaluate --l2rpn-score`` with do-nothing on one bundled scenario, 10 steps."""
    before = _listing(bundled_dir)
    out = tmp_path_factory.mktemp("l2rpn") / "eval"
    argv = ["--env", ENV, "--baselines", "do-nothing", "--episodes", "1", "--max-steps",
            str(STEPS), "--l2rpn-score", "--workers", "1", "--no-progress", "--out", str(out)]  # fmt: skip
    code = run(evaluate_cli.main, argv)
    return {"code": code, "out": out, "before": before, "after": _listing(bundled_dir)}


def test_the_bundled_env_folder_is_untouched(scored):
    assert scored["code"] == 0
    assert scored["after"] == scored["before"]
    assert not any("_statistics" in k for k in scored["after"])


def test_do_nothing_scores_grid2ops_reference_point(scored):
    """Do-nothing is the 0 of the operational part; surviving, with no curtailment and no
    blackout, it gets 100 for renewables and the assistant: 0.6*0 + 0.15*100 + 0.25*100."""
    rows = pd.read_csv(scored["out"] / "l2rpn_score.csv")
    assert rows["run"].tolist() == ["do-nothing"]
    row = rows.iloc[0]
    assert row["survived_steps"] == STEPS and row["max_steps"] == STEPS
    assert row["operational"] == 0.0
    assert (row["renewables"], row["assistant"]) == (100.0, 100.0)
    assert row["score"] == pytest.approx(40.0)
    summary = pd.read_csv(scored["out"] / "run_summary.csv")
    assert summary.loc[0, "l2rpn_2023_score"] == pytest.approx(40.0)
    copies = list((scored["out"] / "l2rpn_2023").iterdir())
    assert len(copies) == 1 and (copies[0] / MARKER).is_file()
    assert sorted(p.name for p in (copies[0] / "chronics").iterdir()) == [row["scenario_name"]]


def test_same_seed_same_score_on_a_fresh_temporary_copy(scored, tmp_path, monkeypatch):
    """A direct call (fresh references in a temporary copy, removed after) gives the CLI's
    numbers; grid2op's own DoNothingAgent scores the same as ours."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    agents = {
        "ours": partial(make_agent, RunSpec("do-nothing", "baseline", "do-nothing")),
        "grid2op": lambda env: DoNothingAgent(env.action_space),
    }
    res = l2rpn_2023_score(EnvSpec(ENV), agents, nb_scenario=1, max_step=STEPS, seed=0)
    assert list(tmp_path.iterdir()) == []  # the temporary copy is gone
    cli = pd.read_csv(scored["out"] / "l2rpn_score.csv").iloc[0]
    assert res["ours"]["seeds"] == child_seeds(0, 1) == [cli["seed"]]
    assert res["ours"]["scenario_names"] == [cli["scenario_name"]]
    assert res["ours"]["episodes"]["score"] == pytest.approx([cli["score"]])
    assert res["ours"]["episodes"] == res["grid2op"]["episodes"]
    assert res["ours"]["survived_steps"] == [STEPS]


def test_an_env_without_alerts_is_one_error_line(tmp_path, capsys):
    argv = ["--env", "l2rpn_case14_sandbox", "--baselines", "do-nothing", "--max-steps", "2",
            "--l2rpn-score", "--no-progress", "--out", str(tmp_path / "o")]  # fmt: skip
    code, cap = run(evaluate_cli.main, argv), capsys.readouterr()
    assert code == 2
    assert cap.err.startswith("error:") and "L2RPN 2023" in cap.err and cap.err.count("\n") == 1
    assert not (tmp_path / "o" / "run_summary.csv").exists()


def test_bad_scenarios_are_user_errors():
    from distributed_grid2op.errors import UserError

    with pytest.raises(UserError, match="nb_scenario"):
        l2rpn_2023_score(ENV, {}, nb_scenario=5)
