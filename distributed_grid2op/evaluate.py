"""``python -m distributed_grid2op.evaluate``: agents and baselines on the same scenarios.

Example (the standard stressed case14 evaluation, baselines only)::

    python -m distributed_grid2op.evaluate --env l2rpn_case14_sandbox \\
        --thermal-limit-scale 0.85 --baselines do-nothing,reconnect,expert --out runs/eval
"""

from __future__ import annotations

from collections.abc import Sequence

from distributed_grid2op import cli
from distributed_grid2op.cli import ArgumentParser, run

PROG = "python -m distributed_grid2op.evaluate"


def build_parser() -> ArgumentParser:
    """The CLI's options: the fields of `evaluation.EvaluateConfig` and the executor's."""
    from distributed_grid2op.evaluation import EvaluateConfig

    p = ArgumentParser(
        prog=PROG, description="Evaluate agents and baselines on the same scenarios and seeds."
    )
    EvaluateConfig.add_arguments(p)
    cli.add_executor_arguments(p, default_workers=None)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the evaluation, write the CSVs and print the run summary."""
    from distributed_grid2op.evaluation import EvaluateConfig, format_summary, run_evaluation

    args = build_parser().parse_args(argv)
    config = EvaluateConfig.from_args(args)
    with cli.executor_from_args(args, config.n_tasks()) as executor:
        result = run_evaluation(config, executor=executor)
    print(format_summary(result.runs))
    names = "step_metrics,daily_summary,episode_summary,run_summary"
    names += ",l2rpn_score" if result.l2rpn is not None else ""
    print(f"wrote {result.out}/{{{names}}}.csv")
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main))
