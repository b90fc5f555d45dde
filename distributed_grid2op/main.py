"""``python -m distributed_grid2op.main``: train the distributed (or centralised) agent.

Defaults reproduce the thesis training: seed 90566, ``CloseToOverflowReward``, lightsim2grid,
the thesis case14 partition when no ``--factorization`` is given.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from distributed_grid2op import cli
from distributed_grid2op.errors import UserError
from distributed_grid2op.splits import SPLITS

THESIS_SEED = 90566


def _splits(text: str) -> list[str]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    bad = [n for n in names if n not in SPLITS]
    if not names or bad:
        raise argparse.ArgumentTypeError(
            f"unknown split {', '.join(bad) or repr(text)}; choose from {', '.join(SPLITS)}"
        )
    return names


def build_parser() -> cli.ArgumentParser:
    p = cli.ArgumentParser(
        prog="python -m distributed_grid2op.main",
        description="Train the distributed (or centralised) agent from a factorization.",
    )
    p.add_argument("--env", default="l2rpn_case14_sandbox", help="bundled env name or env folder")
    p.add_argument(
        "--factorization",
        default=None,
        help="factorization.json (default: thesis case14 partition)",
    )
    p.add_argument(
        "--centralized", action="store_true", help="one agent for the whole grid (baseline)"
    )
    p.add_argument(
        "--complete-obs", action="store_true", help="every cluster agent sees the whole grid"
    )
    p.add_argument(
        "--episodes", type=cli.positive_int, default=200, help="PPO training episodes (default 200)"
    )
    p.add_argument(
        "--seed", type=int, default=THESIS_SEED, help=f"seed (default {THESIS_SEED}, the thesis')"
    )
    p.add_argument(
        "--thermal-limit-scale",
        type=cli.positive_float,
        default=1.0,
        help="multiply thermal limits (the standard stressed evaluation uses 0.85)",
    )
    p.add_argument(
        "--scenarios",
        type=_splits,
        default="train",
        help=f"scenario split(s) to train on, comma-separated ({', '.join(SPLITS)}; default train)",
    )
    p.add_argument("--out", default="runs/train", help="output folder (default runs/train)")
    p.add_argument(
        "--resume", action="store_true", help="continue from the last checkpoint in --out"
    )
    cli.add_executor_arguments(p, default_workers=1)
    p.add_argument(
        "--checkpoint-every", type=cli.positive_int, default=20, help="episodes between checkpoints"
    )
    p.add_argument(
        "--episodes-per-update", type=cli.positive_int, default=4, help="episodes per PPO update"
    )
    p.add_argument(
        "--imitation-episodes",
        type=int,
        default=0,
        help="expert episodes behaviour-cloned before PPO (default 0: pure PPO as in the thesis)",
    )
    p.add_argument(
        "--dagger-rounds",
        type=int,
        default=0,
        help="DAgger rounds after the expert episodes (policy acts, expert labels)",
    )
    p.add_argument(
        "--prune-actions",
        action="store_true",
        help="keep only the actions the expert used during imitation",
    )
    p.add_argument(
        "--max-start", type=int, default=0, help="start episodes at a random step in [0, N]"
    )
    p.add_argument(
        "--danger", type=cli.danger_threshold, default=0.9, help="act when max rho >= this (0.9)"
    )
    p.add_argument(
        "--rank-by", choices=("max", "mean"), default="max", help="substation picker ranking"
    )
    p.add_argument(
        "--learning-rate", type=cli.positive_float, default=None, help="PPO learning rate"
    )
    p.add_argument(
        "--bc-temperature",
        type=cli.positive_float,
        default=None,
        help="imitation with soft labels: softmax of -(simulated max rho gap) / T (e.g. 0.02); "
        "default: hard expert labels",
    )
    p.add_argument(
        "--top-k",
        type=int,
        default=0,
        help="at evaluation, simulate the K most probable actions and keep the safest (default 0: pure policy)",
    )
    p.add_argument("--backend", choices=("lightsim", "pandapower"), default="lightsim")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for name in ("imitation_episodes", "dagger_rounds", "max_start", "top_k"):
        if getattr(args, name) < 0:
            raise UserError(f"--{name.replace('_', '-')} must be >= 0")
    from grid2op.Reward import CloseToOverflowReward

    from distributed_grid2op.agents import HierarchicalAgent, PPOConfig
    from distributed_grid2op.envs import EnvSpec, quiet_grid2op
    from distributed_grid2op.factorization_file import load_factorization
    from distributed_grid2op.io import ensure_writable_dir
    from distributed_grid2op.splits import split_scenarios
    from distributed_grid2op.training import Trainer

    out = ensure_writable_dir(args.out)
    spec0 = EnvSpec(
        args.env,
        backend=args.backend,
        thermal_limit_scale=args.thermal_limit_scale,
        reward=CloseToOverflowReward,
    )
    with quiet_grid2op():
        probe = spec0.make()
        fact = load_factorization(args.factorization, env=probe)
        n_agents = 1 if args.centralized else len(fact.clusters)
        spec = EnvSpec(
            args.env,
            backend=args.backend,
            thermal_limit_scale=args.thermal_limit_scale,
            reward=CloseToOverflowReward,
            params={
                "MAX_SUB_CHANGED": max(1, n_agents),
                "MAX_LINE_STATUS_CHANGED": max(1, n_agents),
            },
        )
        probe.close()
        env = spec.make(args.seed)
        scenarios = sorted({i for split in args.scenarios for i in split_scenarios(env, split)})
    overrides = {"learning_rate": args.learning_rate, "bc_temperature": args.bc_temperature}
    config = PPOConfig(**{k: v for k, v in overrides.items() if v is not None})
    agent = HierarchicalAgent(
        env,
        fact,
        centralized=args.centralized,
        complete_obs=args.complete_obs,
        danger=args.danger,
        rank_by=args.rank_by,
        config=config,
        top_k=args.top_k,
        seed=args.seed,
        spec=spec,
    )
    trainer = Trainer(agent, out, spec=spec, scenarios=scenarios, seed=args.seed,
                      episodes_per_update=args.episodes_per_update, checkpoint_every=args.checkpoint_every,
                      imitation_episodes=args.imitation_episodes,
        dagger_rounds=args.dagger_rounds,
        prune_actions=args.prune_actions, max_start=args.max_start,
                      executor=cli.executor_from_args(args),
                      resume=args.resume, progress=not args.no_progress,
                      run_info={"argv": list(sys.argv[1:] if argv is None else argv), "env_spec": spec.to_dict(),
                                "split": ",".join(args.scenarios)})  # fmt: skip
    with quiet_grid2op():
        trainer.fit(args.episodes)
    kind = "centralised" if args.centralized else f"{len(agent.learners)}-cluster"
    print(
        f"trained {kind} agent: {trainer.episodes_done_} episodes, log {out / 'train_log.csv'}, "
        f"agent {out / 'final'}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(cli.run(main))
