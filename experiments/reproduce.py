"""``python -m experiments.reproduce {synthetic,factorization,training,all} --profile {quick,full}``.

Each experiment reads its TOML config from ``experiments/configs/``, writes into
``OUT/<experiment>/<profile>-<config hash>/`` its config, versions, timings, figures,
``results.json`` and a ``report.md``; ``all`` also writes ``OUT/report.md`` linking them.

``--workers N`` and ``--ray [ADDRESS]`` override the workers of every stage of the config
(collection and MI, scenario generation, training, evaluation); the results do not depend on
them, so the run folder (its config hash) and ``config.json`` stay those of the config.
The synthetic experiment has no workers (its MI runs on local threads) and ignores them.
"""

from __future__ import annotations

import importlib
import time
from pathlib import Path

from distributed_grid2op.cli import ArgumentParser, add_executor_arguments, run
from distributed_grid2op.io import write_text
from experiments.runs import EXPERIMENTS, PROFILES, Run, load_config

#: experiment -> the config tables that run on workers (a table or an array of tables)
STAGE_TABLES = {
    "factorization": ("pipeline", "variant"),
    "training": ("scenarios", "train", "variant", "evaluate"),
}


def with_executor(experiment: str, cfg: dict, workers: int | None = None, ray: str | None = None):
    """A copy of ``cfg`` whose every stage runs on ``workers`` workers (None: as configured)
    and, with ``ray``, on Ray at that address (``"local"``: a local Ray)."""
    if workers is None and ray is None:
        return cfg
    out = dict(cfg)
    for key in STAGE_TABLES.get(experiment, ()):
        if key not in out:
            continue
        tables = out[key] if isinstance(out[key], list) else [out[key]]
        changed = []
        for table in tables:
            table = dict(table)
            # the variant tables only override workers they set themselves; the others
            # (pipeline, scenarios, train, evaluate) always run on workers
            if key != "variant" or "workers" in table:
                if workers is not None:
                    table["workers"] = int(workers)
                if ray is not None:
                    table["ray"] = ray
            changed.append(table)
        out[key] = changed if isinstance(out[key], list) else changed[0]
    return out


def stage_workers(experiment: str, cfg: dict) -> int:
    """The most workers any stage of ``cfg`` asks for (at least 1; a stage table without
    ``workers`` may use the CPUs)."""
    from distributed_grid2op.execution import default_workers

    counts = [1]
    for key in STAGE_TABLES.get(experiment, ()):
        tables = cfg.get(key, [])
        for table in tables if isinstance(tables, list) else [tables]:
            if isinstance(table.get("workers"), int):
                counts.append(table["workers"])
            elif key != "variant":
                counts.append(default_workers())
    return max(counts)


def reproduce(
    experiment: str,
    profile: str,
    out: str | Path,
    config: str | Path | None = None,
    progress: bool = True,
    workers: int | None = None,
    ray: str | None = None,
) -> Path:
    """Run one experiment; return its ``report.md``.

    ``workers`` / ``ray``: run every stage on that many workers / on Ray (see `with_executor`);
    the results, the run folder and ``config.json`` do not depend on them.
    """
    cfg = load_config(experiment, profile, config)
    r = Run.create(out, experiment, cfg)  # folder and config.json: the config as written
    module = importlib.import_module(f"experiments.{experiment}")
    r.cfg = with_executor(experiment, cfg, workers, ray)
    if ray is not None and experiment in STAGE_TABLES:
        from distributed_grid2op.execution_ray import init_ray

        # one Ray for every stage, sized for the largest (a stage with more workers than a
        # local Ray's CPUs would wait for them)
        local = ray == "local"
        init_ray(None if local else ray, stage_workers(experiment, r.cfg) if local else None)
    try:
        with r.stage("total"):
            module.run(r, progress=progress)
    finally:
        r.cfg = cfg
    scenarios = r.numbers.get("scenarios")
    if isinstance(scenarios, dict):  # where they ran is not a result
        scenarios.pop("ray", None)
    if workers is not None or ray is not None:
        how = [f"--workers {workers}"] if workers is not None else []
        how += [f"--ray {ray}"] if ray is not None else []
        r.section(
            "Execution",
            f"Every stage ran with `{' '.join(how)}` (overriding the config's workers; the "
            "results do not depend on them).",
        )
    return r.finish()


def main(argv=None) -> int:
    p = ArgumentParser(prog="python -m experiments.reproduce", description=__doc__.splitlines()[0])
    p.add_argument("experiment", choices=[*EXPERIMENTS, "all"])
    p.add_argument(
        "--profile", choices=PROFILES, default="quick", help="quick: minutes; full: thesis scale"
    )
    p.add_argument("--out", default="results", help="output root folder (default: results)")
    p.add_argument(
        "--config", help="a TOML config file instead of the shipped one (one experiment only)"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_executor_arguments(p, default_workers=None)
    for action in p._actions:  # here None means: the workers of each stage's config
        if action.dest == "workers":
            action.help = (
                "workers of every stage (default: each stage's own, from the config); "
                "results do not depend on it"
            )
    args = p.parse_args(argv)
    if args.config and args.experiment == "all":
        p.error("--config needs a single experiment")
    names = EXPERIMENTS if args.experiment == "all" else (args.experiment,)
    start = time.perf_counter()
    reports = []
    for name in names:
        print(f"== {name} ({args.profile})", flush=True)
        report = reproduce(name, args.profile, args.out, args.config,
                           progress=not args.no_progress, workers=args.workers, ray=args.ray)  # fmt: skip
        reports.append(report)
        print(f"   report: {report}", flush=True)
    if len(reports) > 1:
        out = Path(args.out)
        lines = [
            f"# Reproduction ({args.profile} profile, {time.perf_counter() - start:.0f} s)",
            "",
        ]
        lines += [f"- [{p.parent.parent.name}]({p.relative_to(out)})" for p in reports]
        index = write_text(out / "report.md", "\n".join(lines) + "\n")
        print(f"\nAll reports: {index.resolve()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main))
