"""``python -m distributed_grid2op.evaluate``: agents and baselines on the same scenarios.

Example (the standard stressed case14 evaluation, baselines only)::

    python -m distributed_grid2op.evaluate --env l2rpn_case14_sandbox \\
        --thermal-limit-scale 0.85 --baselines do-nothing,reconnect,expert --out runs/eval
"""

from __future__ import annotations

from collections.abc import Sequence

from distributed_grid2op import cli
from distributed_grid2op.baselines import BASELINES, DANGER
from distributed_grid2op.cli import ArgumentParser, positive_float, positive_int, run
from distributed_grid2op.splits import SPLITS

PROG = "python -m distributed_grid2op.evaluate"


def _baseline_list(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip() and n.strip() != "none"]
    unknown = [n for n in names if n not in BASELINES]
    if unknown:
        import argparse

        raise argparse.ArgumentTypeError(
            f"unknown baseline(s) {', '.join(unknown)}; choose from {', '.join(BASELINES)}"
        )
    return names


def _top_k_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = [-1]
    if not values or min(values) < 0:
        import argparse

        raise argparse.ArgumentTypeError(f"must be comma-separated integers >= 0, got {text!r}")
    return list(dict.fromkeys(values))


def build_parser() -> ArgumentParser:
    """The CLI's options (every one has a default)."""
    p = ArgumentParser(
        prog=PROG, description="Evaluate agents and baselines on the same scenarios and seeds."
    )
    p.add_argument(
        "--agents",
        nargs="*",
        default=[],
        metavar="DIR",
        help="trained agent checkpoint directories",
    )
    p.add_argument(
        "--baselines",
        type=_baseline_list,
        default=list(BASELINES),
        help=f"comma-separated subset of {','.join(BASELINES)}, or 'none' (default: all three)",
    )
    p.add_argument(
        "--env", default="l2rpn_case14_sandbox", help="bundled env name or env folder path"
    )
    p.add_argument(
        "--thermal-limit-scale",
        type=positive_float,
        metavar="X",
        default=1.0,
        help="multiply thermal limits (0.85 = the stressed case14 protocol; default 1.0)",
    )
    p.add_argument(
        "--scenarios",
        choices=SPLITS,
        default=None,
        help="scenario split (default: test if the env folder has splits.json, else all)",
    )
    p.add_argument(
        "--episodes", type=positive_int, default=None, help="episodes (default: one per scenario)"
    )
    p.add_argument(
        "--max-steps", type=positive_int, default=None, help="cut episodes to this many steps"
    )
    p.add_argument(
        "--out", default="runs/evaluation", help="output folder (default: runs/evaluation)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the episode seeds (default: 0)")
    cli.add_executor_arguments(p, default_workers=None)
    p.add_argument(
        "--danger",
        type=cli.danger_threshold,
        default=None,
        help=f"danger threshold on max rho of every run (default: {DANGER} for baselines, "
        "trained agents their own)",
    )
    p.add_argument(
        "--top-k",
        type=_top_k_list,
        default=None,
        help="comma-separated K values: each agent also runs with a simulation check of its "
        "K most probable actions (0 = the policy alone; default: as saved)",
    )
    p.add_argument("--backend", choices=("lightsim", "pandapower"), default="lightsim")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the evaluation, write the CSVs and print the run summary."""
    args = build_parser().parse_args(argv)
    from distributed_grid2op.envs import EnvSpec
    from distributed_grid2op.evaluation import evaluate, format_summary, run_specs

    runs = run_specs(args.baselines, args.agents, args.top_k or (None,))
    spec = EnvSpec(args.env, backend=args.backend, thermal_limit_scale=args.thermal_limit_scale)
    n_tasks = len(runs) * (args.episodes or 1_000_000)
    with cli.executor_from_args(args, n_tasks) as executor:
        result = evaluate(
            runs,
            spec,
            args.out,
            scenarios=args.scenarios,
            episodes=args.episodes,
            seed=args.seed,
            max_steps=args.max_steps,
            danger=args.danger,
            executor=executor,
            progress=not args.no_progress,
        )
    print(format_summary(result.runs))
    print(f"wrote {result.out}/{{step_metrics,daily_summary,episode_summary,run_summary}}.csv")
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main))
