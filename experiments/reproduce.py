"""``python -m experiments.reproduce {synthetic,factorization,training,all} --profile {quick,full}``.

Each experiment reads its TOML config from ``experiments/configs/``, writes into
``OUT/<experiment>/<profile>-<config hash>/`` its config, versions, timings, figures,
``results.json`` and a ``report.md``; ``all`` also writes ``OUT/report.md`` linking them.
"""

from __future__ import annotations

import importlib
import time
from pathlib import Path

from distributed_grid2op.cli import ArgumentParser, run
from distributed_grid2op.io import write_text
from experiments.runs import EXPERIMENTS, PROFILES, Run, load_config


def reproduce(
    experiment: str,
    profile: str,
    out: str | Path,
    config: str | Path | None = None,
    progress: bool = True,
) -> Path:
    """Run one experiment; return its ``report.md``."""
    cfg = load_config(experiment, profile, config)
    r = Run.create(out, experiment, cfg)
    module = importlib.import_module(f"experiments.{experiment}")
    with r.stage("total"):
        module.run(r, progress=progress)
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
    args = p.parse_args(argv)
    if args.config and args.experiment == "all":
        p.error("--config needs a single experiment")
    names = EXPERIMENTS if args.experiment == "all" else (args.experiment,)
    start = time.perf_counter()
    reports = []
    for name in names:
        print(f"== {name} ({args.profile})", flush=True)
        report = reproduce(name, args.profile, args.out, args.config, progress=not args.no_progress)
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
