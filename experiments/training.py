"""Experiment 3: distributed vs centralised agents, learning curves, held-out evaluation.

Composes three commands: ``distributed_grid2op.scenarios`` (training scenarios generated
from the bundled data, so that thesis-scale training needs no download), training (one run
per variant and seed: `training.train` with a `TrainConfig` made from the ``[train]`` table)
and evaluation (every trained agent and the baselines on the same held-out episodes:
`evaluation.run_evaluation` with an `EvaluateConfig` from each ``[[evaluate]]`` table). The
config tables are validated by those objects: an unknown key is an error before anything runs.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from distributed_grid2op.evaluation import EvaluateConfig, run_evaluation
from distributed_grid2op.main import TrainConfig, train
from distributed_grid2op.plots import plot_learning, plot_survival
from distributed_grid2op.scenarios.__main__ import ScenariosConfig, generate_from_config
from experiments._argv import to_argv
from experiments.runs import Run, markdown_table

EVAL_COLUMNS = [
    "run",
    "episodes",
    "survived_fraction_mean",
    "survived_fraction_std",
    "completed_fraction",
    "decisions_mean",
    "score",
    "decision_ms_per_decision",
]


def _scenarios(run: Run, progress: bool) -> str | None:
    """Generate the training scenarios (``[scenarios]`` table) into the run folder."""
    options = run.cfg.get("scenarios")
    if not options:
        return None
    out = run.root / "scenarios"
    with run.stage("generate scenarios"):
        config = ScenariosConfig.from_mapping(
            {**options, "out": str(out), "quiet": not progress},
            source=f"{run.cfg.get('_source', 'config')} [scenarios]",
        )
        generate_from_config(config)
    run.numbers["scenarios"] = {k: v for k, v in options.items() if k != "workers"}
    report = out / "validation" / "report.md"
    text = f"Generated with `python -m distributed_grid2op.scenarios` {' '.join(to_argv(options))}."
    if report.is_file():
        text += f" Validation report: `{report.relative_to(run.root)}`."
    run.section("Training scenarios", text)
    return str(out)


def _train(run: Run, env: dict, progress: bool) -> list[Path]:
    """One training run per variant and seed; returns the agent folders."""
    cfg = run.cfg
    seeds = [int(s) for s in cfg.get("seeds", [cfg["seed"]])]
    agents, logs = [], []
    for variant in cfg["variant"]:
        name = variant["name"]
        for seed in seeds:
            out = run.root / "train" / f"{name}-s{seed}"
            options = {**env, **cfg["train"], **{k: v for k, v in variant.items() if k != "name"}}
            config = TrainConfig.from_mapping(
                {**options, "seed": seed, "out": str(out), "resume": True, "progress": progress},
                source=f"{cfg.get('_source', 'config')} [train] + variant {name}",
            )
            with run.stage(f"train {name} seed {seed}"):
                train(config)
            logs.append(pd.read_csv(out / "train_log.csv").assign(variant=name, train_seed=seed))
            agents.append(out)
    log = pd.concat(logs, ignore_index=True)
    for name, d in log.groupby("variant", sort=False):
        run.numbers.setdefault("training", {})[name] = {
            "seeds": seeds,
            "episodes_per_seed": int(len(d) // len(seeds)),
            "survived_fraction_mean": round(
                float((d["survived_steps"] / d["max_steps"]).mean()), 4
            ),
            "safe_steps_mean": round(float(d["safe_steps"].mean()), 3),
        }
    curve = plot_learning(log, run.root / "learning_curves.png", hue="variant", spread="train_seed")
    run.section(
        "Learning curves",
        f"PPO episodes (sampled actions) of each variant, smoothed; line = mean over the "
        f"{len(seeds)} training seeds {seeds}, band = min-max over them. Logs: "
        "`train/<variant>-s<seed>/train_log.csv` (imitation episodes: `imitation_log.csv`).",
        [curve],
    )
    return agents


def by_variant(summary: pd.DataFrame) -> list[dict]:
    """Rows of ``run_summary.csv`` grouped over training seeds: runs named
    ``<variant>-s<seed>[-top<k>]`` become one row per (variant, k) with the mean and the
    min-max of the seeds' survived fractions; baselines stay as they are."""
    parts = summary["run"].str.extract(r"^(?P<variant>.+)-s(?P<seed>\d+)(?:-top(?P<k>\d+))?$")
    df = summary.assign(variant=parts["variant"].fillna(summary["run"]), k=parts["k"].fillna("-"))
    rows = []
    for (variant, k), d in df.groupby(["variant", "k"], sort=False):
        f = d["survived_fraction_mean"]
        rows.append({
            "run": variant if k == "-" else f"{variant}, top-{k}",
            "seeds": int(parts.loc[d.index, "seed"].notna().sum()),
            "survived (mean over seeds)": round(float(f.mean()), 4),
            "min": round(float(f.min()), 4),
            "max": round(float(f.max()), 4),
            "completed": round(float(d["completed_fraction"].mean()), 4),
            "decisions / episode": round(float(d["decisions_mean"].mean()), 1),
            "ms / decision": round(float(d["decision_ms_per_decision"].mean()), 2),
        })  # fmt: skip
    return rows


def _evaluate(run: Run, env: dict, agents: list[Path], progress: bool) -> None:
    """Each ``[[evaluate]]`` table: every agent, the shipped agents the config names
    (``pretrained = [...]``, run ``pretrained-<name>``) and the baselines on the same episodes
    (on the training env unless the table names another)."""
    agents = [*map(str, agents), *(f"pretrained:{n}" for n in run.cfg.get("pretrained", []))]
    for ev in run.cfg["evaluate"]:
        name = ev["name"]
        options = {**env, **{k: v for k, v in ev.items() if k not in ("name", "description")}}
        out = run.root / "evaluation" / name
        config = EvaluateConfig.from_mapping(
            {**options, "agents": agents, "seed": run.cfg["seed"],
             "out": str(out), "progress": progress},
            source=f"{run.cfg.get('_source', 'config')} [[evaluate]] {name}",
        )  # fmt: skip
        with run.stage(f"evaluate {name}"):
            run_evaluation(config)
        summary = pd.read_csv(out / "run_summary.csv")
        table = summary[EVAL_COLUMNS].to_dict("records")
        run.numbers.setdefault("evaluation", {})[name] = [
            {k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()
             if k != "decision_ms_per_decision"}
            for r in table
        ]  # fmt: skip
        figure = plot_survival(
            pd.read_csv(out / "step_metrics.csv"), run.root / f"survival_{name}.png"
        )
        env_name = Path(str(options["env"])).name
        setting = (
            f"`{env_name}`, thermal limits x {options.get('thermal_limit_scale', 1.0)}, scenarios "
            f"`{ev.get('scenarios', 'all')}`"
            + (f" ({ev['episodes']} episodes)" if "episodes" in ev else "")
            + f", episode seeds from {run.cfg['seed']}; the same episodes for every run. "
            f"{ev.get('description', '')}"
        )
        grouped = by_variant(summary)
        run.numbers.setdefault("evaluation_by_variant", {})[name] = [  # timings don't reproduce
            {k: v for k, v in r.items() if k != "ms / decision"} for r in grouped
        ]
        text = (
            f"{setting}\n\nOver training seeds:\n\n{markdown_table(grouped)}\n\n"
            f"Every run:\n\n{markdown_table(table)}"
        )
        run.section(f"Held-out evaluation: {name}", text, [figure])


SMOKE = (
    "The agents trained here ({names}) are a **smoke run** of the training machinery (minutes "
    "of training on a few short scenarios), not agents to judge. {shipped}"
)


def run(run: Run, progress: bool = True) -> None:
    """Generate scenarios (if configured), train every variant and seed, evaluate them all.

    A config with ``smoke = true`` says so first, in the report and on the console."""
    if run.cfg.get("smoke"):
        names = ", ".join(f"`{v['name']}-s*`" for v in run.cfg["variant"])
        shipped = ", ".join(f"`pretrained-{n}`" for n in run.cfg.get("pretrained", []))
        text = SMOKE.format(names=names, shipped=f"Trained agents shipped with the package, "
                            f"evaluated beside them: {shipped}." if shipped else "")  # fmt: skip
        run.section("Smoke run", text)
        print(f"   smoke run: {text.replace('**', '')}", flush=True)
    generated = _scenarios(run, progress)
    env = dict(run.cfg["env"])
    if generated:
        env["env"] = generated
    agents = _train(run, env, progress)
    _evaluate(run, env, agents, progress)
