"""Experiment 3: distributed vs centralised agents, learning curves, held-out evaluation."""

from __future__ import annotations

import pandas as pd

from distributed_grid2op.evaluate import main as evaluate_main
from distributed_grid2op.main import main as train_main
from distributed_grid2op.plots import plot_learning, plot_survival
from experiments._argv import to_argv
from experiments.runs import Run, markdown_table


def run(run: Run, progress: bool = True) -> None:
    """Train every variant with the same seed and budget, then evaluate them with the baselines."""
    cfg = run.cfg
    seed, env = int(cfg["seed"]), cfg["env"]
    agents, logs = [], []
    for variant in cfg["variant"]:
        name = variant["name"]
        out = run.root / "train" / name
        options = {**env, **cfg["train"], **{k: v for k, v in variant.items() if k != "name"}}
        with run.stage(f"train {name}"):
            code = train_main(
                to_argv({**options, "seed": seed, "out": out, "no_progress": not progress})
            )
        if code:
            raise RuntimeError(f"training failed for variant {name} (exit {code})")
        log = pd.read_csv(out / "train_log.csv").assign(run=name)
        logs.append(log)
        agents.append(out)
        curve = plot_learning(log, run.root / f"learning_{name}.png")
        run.numbers.setdefault("training", {})[name] = {
            "episodes": len(log),
            "survived_steps_mean": round(float(log["survived_steps"].mean()), 3),
            "safe_steps_mean": round(float(log["safe_steps"].mean()), 3),
        }
        run.section(f"Learning curve: {name}", f"`train/{name}/train_log.csv`", [curve])
    eval_dir = run.root / "evaluation"
    with run.stage("evaluation"):
        argv = to_argv(
            {**env, **cfg["evaluate"], "seed": seed, "out": eval_dir, "no_progress": not progress}
        )
        code = evaluate_main(["--agents", *map(str, agents), *argv])
    if code:
        raise RuntimeError(f"evaluation failed (exit {code})")
    summary = pd.read_csv(eval_dir / "run_summary.csv")
    cols = [
        "run",
        "episodes",
        "survived_fraction_mean",
        "survived_fraction_std",
        "completed_fraction",
        "decisions_mean",
        "score",
        "decision_ms_per_decision",
    ]
    table = summary[cols].to_dict("records")
    run.numbers["evaluation"] = [
        {
            k: (round(v, 4) if isinstance(v, float) else v)
            for k, v in r.items()
            if k != "decision_ms_per_decision"
        }
        for r in table
    ]
    steps = pd.read_csv(eval_dir / "step_metrics.csv")
    survival = plot_survival(steps, run.root / "evaluation_survival.png")
    setting = (
        f"`{env['env']}`, thermal limits x {env.get('thermal_limit_scale', 1.0)}, scenarios "
        f"`{cfg['evaluate'].get('scenarios', 'all')}`, seed {seed}; same episodes for every run"
    )
    run.section("Held-out evaluation", f"{setting}.\n\n{markdown_table(table)}", [survival])
