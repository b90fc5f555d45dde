"""``python -m distributed_grid2op.main``: train the distributed (or centralised) agent.

Every option is a field of `distributed_grid2op.training.TrainConfig` (the same object the
experiments' TOML ``[train]`` tables and the Python API `training.train` take). Defaults
reproduce the thesis training: seed 90566, ``CloseToOverflowReward``, lightsim2grid, the
thesis case14 partition when no ``--factorization`` is given.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from distributed_grid2op import cli
from distributed_grid2op.errors import UserError

PROG = "python -m distributed_grid2op.main"


def build_parser() -> cli.ArgumentParser:
    from distributed_grid2op.agents.learners import LEARNERS
    from distributed_grid2op.config import learner_arguments
    from distributed_grid2op.training import TrainConfig

    p = cli.ArgumentParser(
        prog=PROG, description="Train the distributed (or centralised) agent from a factorization."
    )
    TrainConfig.add_arguments(p)
    cli.add_executor_arguments(p, default_workers=1)
    p.add_argument("--learning-rate", type=cli.positive_float, default=None,
                   help="shortcut for the learner's learning_rate")  # fmt: skip
    p.add_argument("--bc-temperature", type=cli.positive_float, default=None,
                   help="imitation with soft labels: softmax of -(simulated max rho gap) / T "
                   "(e.g. 0.02); default: hard expert labels")  # fmt: skip
    learner_arguments(p, LEARNERS)
    return p


def config_from_args(args) -> TrainConfig:  # noqa: F821 - the name is imported lazily
    """The `TrainConfig` of parsed options (learner flags of another learner are refused)."""
    from distributed_grid2op.config import learner_overrides
    from distributed_grid2op.training import TrainConfig

    per_learner = learner_overrides(args)
    other = sorted(set(per_learner) - {args.learner})
    if other:
        raise UserError(f"--{other[0]}-* options given but --learner is {args.learner!r}")
    overrides = dict(per_learner.get(args.learner, {}))
    for key in ("learning_rate", "bc_temperature"):
        if getattr(args, key) is not None:
            overrides.setdefault(key, getattr(args, key))
    return TrainConfig.from_args(args, learner_config=overrides)


def main(argv: Sequence[str] | None = None) -> int:
    from distributed_grid2op.training import train

    args = build_parser().parse_args(argv)
    config = config_from_args(args)
    with cli.executor_from_args(args) as executor:
        trainer = train(config, executor=executor,
                        run_info={"argv": list(sys.argv[1:] if argv is None else argv)})  # fmt: skip
    agent = trainer.agent
    kind = "centralised" if config.centralized else f"{len(agent.learners)}-cluster"
    print(
        f"trained {kind} agent: {trainer.episodes_done_} episodes, log "
        f"{trainer.out / 'train_log.csv'}, agent {trainer.out / 'final'}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(cli.run(main))
