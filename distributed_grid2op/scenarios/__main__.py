"""``python -m distributed_grid2op.scenarios``: generate grid2op scenarios from a source env."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from distributed_grid2op.cli import (
    ArgumentParser,
    add_executor_arguments,
    executor_from_args,
    non_negative_int,
    positive_float,
    positive_int,
    run,
)
from distributed_grid2op.config import Config, option
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


@dataclass
class ScenariosConfig(Config):
    """Every setting of ``python -m distributed_grid2op.scenarios`` (and of `generate_from_config`)."""

    source: str = option("l2rpn_case14_sandbox", "bundled test env name or env folder")
    n: int = option(None, "number of scenarios", parse=positive_int, required=True)
    steps: int = option(2016, "steps per scenario (2016 = 1 week of 5 min)", parse=positive_int)
    out: str = option(None, "output env folder (created; never inside site-packages)",
                      required=True, results=False)  # fmt: skip
    seed: int = option(0, "seed of the generated set", parse=non_negative_int)
    thermal_limit_scale: float = option(1.0, "thermal limit scale of the validation replay",
                                        parse=positive_float)  # fmt: skip
    splits: tuple = option((0.7, 0.1, 0.2), "train,val,test fractions", parse=_fractions)
    format: str = option("csv", "chronics files: plain csv (fast) or csv.bz2 (small)",
                         choices=sorted(FORMATS))  # fmt: skip
    replay: int = option(20, "generated scenarios replayed with do-nothing in the validation",
                         parse=non_negative_int)  # fmt: skip
    no_validate: bool = option(False, "skip the do-nothing replay and report")
    no_ramp_limits: bool = option(False, "keep dispatchable schedules that move faster than the "
                                  "generators' ramps (how scenarios were made before ramp "
                                  "limits; reproduces those sets)")  # fmt: skip
    workers: int = option(1, "parallel workers", cli=False, results=False)
    ray: str | None = option(None, "Ray address", cli=False, results=False)
    quiet: bool = option(False, "no progress bars", results=False)


def generate_from_config(config: ScenariosConfig, *, executor=None):
    """Generate what ``config`` describes; returns the env folder (the command's Python face)."""
    from distributed_grid2op.execution import executor_for
    from distributed_grid2op.scenarios.generator import generate

    own = executor is None
    if own:
        executor = executor_for(config.workers, config.ray, config.n)
    try:
        return generate(config.source, config.out, config.n, config.steps, config.seed,
                        workers=executor.workers, executor=executor,
                        validate=not config.no_validate,
                        thermal_limit_scale=config.thermal_limit_scale, splits=config.splits,
                        fmt=config.format, n_replay=config.replay, progress=not config.quiet,
                        model_params={"ramp_limits": False} if config.no_ramp_limits else None)  # fmt: skip
    finally:
        if own:
            executor.close()


def build_parser() -> ArgumentParser:
    p = ArgumentParser(
        prog="python -m distributed_grid2op.scenarios",
        description="Fit a stochastic injection model on a grid2op env and write new scenarios "
        "(a grid2op env folder with chronics, splits.json, generation.json and a validation report). "
        "Rerun the same command to resume an interrupted run.",
    )
    ScenariosConfig.add_arguments(p)
    add_executor_arguments(p, default_workers=1)
    return p


def main(argv=None) -> int:
    """Parse arguments, generate, print where the env and its report are."""
    args = build_parser().parse_args(argv)
    config = ScenariosConfig.from_args(args)
    with executor_from_args(args, n_tasks=config.n) as executor:
        out = generate_from_config(config, executor=executor)
    print(f"wrote {config.n} scenarios to {out} (make_env({str(out)!r}) loads it)")
    if not config.no_validate:
        print(f"validation report: {out / 'validation' / 'report.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main))
