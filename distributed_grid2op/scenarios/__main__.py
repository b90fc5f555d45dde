"""``python -m distributed_grid2op.scenarios``: generate grid2op scenarios from a source env."""

from __future__ import annotations

import argparse

from distributed_grid2op.cli import (
    ArgumentParser,
    add_executor_arguments,
    executor_from_args,
    positive_float,
    positive_int,
    run,
)
from distributed_grid2op.scenarios.writer import FORMATS


def _fractions(text: str) -> tuple[float, float, float]:
    try:
        parts = tuple(float(x) for x in text.split(","))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"expected 3 comma-separated numbers, got {text!r}"
        ) from exc
    if len(parts) != 3 or min(parts) < 0 or abs(sum(parts) - 1.0) > 1e-6:
        raise argparse.ArgumentTypeError(
            f"expected 3 non-negative numbers summing to 1, got {text!r}"
        )
    return parts


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def build_parser() -> ArgumentParser:
    p = ArgumentParser(
        prog="python -m distributed_grid2op.scenarios",
        description="Fit a stochastic injection model on a grid2op env and write new scenarios "
        "(a grid2op env folder with chronics, splits.json, generation.json and a validation report). "
        "Rerun the same command to resume an interrupted run.",
    )
    p.add_argument(
        "--source", default="l2rpn_case14_sandbox", help="bundled test env name or env folder"
    )
    p.add_argument("--n", type=positive_int, required=True, help="number of scenarios")
    p.add_argument(
        "--steps",
        type=positive_int,
        default=2016,
        help="steps per scenario (2016 = 1 week of 5 min)",
    )
    p.add_argument(
        "--out", required=True, help="output env folder (created; never inside site-packages)"
    )
    p.add_argument("--seed", type=_non_negative_int, default=0)
    add_executor_arguments(p, default_workers=1)
    p.add_argument(
        "--thermal-limit-scale",
        type=positive_float,
        default=1.0,
        help="thermal limit scale of the validation replay",
    )
    p.add_argument(
        "--splits",
        type=_fractions,
        default=(0.7, 0.1, 0.2),
        help="train,val,test fractions (default 0.7,0.1,0.2)",
    )
    p.add_argument(
        "--format",
        choices=sorted(FORMATS),
        default="csv",
        help="chronics files: plain csv (fast) or csv.bz2 (small)",
    )
    p.add_argument(
        "--replay",
        type=_non_negative_int,
        default=20,
        help="generated scenarios replayed with do-nothing in the validation",
    )
    p.add_argument(
        "--no-validate", action="store_true", help="skip the do-nothing replay and report"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def main(argv=None) -> int:
    """Parse arguments, generate, print where the env and its report are."""
    args = build_parser().parse_args(argv)
    from distributed_grid2op.scenarios.generator import generate

    with executor_from_args(args, n_tasks=args.n) as executor:
        out = generate(
            args.source,
            args.out,
            args.n,
            args.steps,
            args.seed,
            workers=executor.workers,
            executor=executor,
            validate=not args.no_validate,
            thermal_limit_scale=args.thermal_limit_scale,
            splits=args.splits,
            fmt=args.format,
            n_replay=args.replay,
            progress=not args.quiet,
        )
    print(f"wrote {args.n} scenarios to {out} (make_env({str(out)!r}) loads it)")
    if not args.no_validate:
        print(f"validation report: {out / 'validation' / 'report.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main))
