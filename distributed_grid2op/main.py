"""``python -m distributed_grid2op.main``: train the distributed (or centralised) agent.

Every option is a field of `TrainConfig` (the same object the experiments' TOML ``[train]``
tables and the Python API `train` take). Defaults reproduce the thesis training: seed 90566,
``CloseToOverflowReward``, lightsim2grid, the thesis case14 partition when no
``--factorization`` is given.

Continuous control: ``--actions redispatch,curtailment,storage`` (or with ``topology``) gives
every cluster owning such units a continuous agent (``--unit-learner``, SAC; its flags
``--sac-*``) acting every step, trained on the operating cost (``--cost-weights``,
``--game-over-cost``; `cost.transition_reward`). Without ``--actions``: topology when the
env has set-bus actions, plus the continuous kinds it supports when the factorization
assigns units to clusters (format 2) or the env has no topology actions
(`agents.hierarchical.default_actions`): the thesis setting stays topology only.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from distributed_grid2op import cli
from distributed_grid2op.config import Config, option
from distributed_grid2op.cost import GAME_OVER_COST
from distributed_grid2op.envs import EnvSpec
from distributed_grid2op.errors import UserError
from distributed_grid2op.execution import Executor
from distributed_grid2op.io import ensure_writable_dir
from distributed_grid2op.loop import DEFAULT_RECONNECT, RECONNECT_RULES, SCOPES
from distributed_grid2op.training import Trainer

PROG = "python -m distributed_grid2op.main"


THESIS_SEED = 90566


def _actions_list(text) -> list[str]:
    """``redispatch,storage`` -> a list of action kinds (`agents.hierarchical.ACTION_KINDS`)."""
    from distributed_grid2op.agents.hierarchical import ACTION_KINDS

    names = [t.strip() for t in (text.split(",") if isinstance(text, str) else text) if t.strip()]
    bad = [n for n in names if n not in ACTION_KINDS]
    if not names or bad:
        raise argparse.ArgumentTypeError(
            f"unknown action kind {', '.join(bad) or repr(text)}; choose from "
            f"{', '.join(ACTION_KINDS)}"
        )
    return list(dict.fromkeys(names))


def _weights(text) -> dict:
    """``overload=50,redispatch=0.5`` -> ``{"overload": 50.0, "redispatch": 0.5}`` (cost terms
    of `cost.TERMS`)."""
    from distributed_grid2op.cost import TERMS

    if isinstance(text, dict):
        pairs = list(text.items())
    else:
        pairs = [
            p.split("=", 1) if "=" in p else (p, "") for p in str(text).split(",") if p.strip()
        ]
    out = {}
    for key, value in pairs:
        key = str(key).strip()
        try:
            out[key] = float(value)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(
                f"cost weight {key}={value!r} is not a number"
            ) from None
        if key not in TERMS:
            raise argparse.ArgumentTypeError(
                f"unknown cost term {key!r}; the terms are {', '.join(TERMS)}"
            )
    return out


def _split_list(text: str) -> list[str]:
    from distributed_grid2op.splits import SPLITS

    names = [t.strip() for t in str(text).split(",") if t.strip()]
    bad = [n for n in names if n not in SPLITS]
    if not names or bad:
        raise argparse.ArgumentTypeError(
            f"unknown split {', '.join(bad) or repr(text)}; choose from {', '.join(SPLITS)}"
        )
    return names


@dataclass
class TrainConfig(Config):
    """Every setting of ``python -m distributed_grid2op.main`` (and of `train`).

    Defaults reproduce the thesis training: seed 90566, ``CloseToOverflowReward``,
    lightsim2grid, the thesis case14 partition when no factorization is given, pure PPO.
    """

    env: str = option("l2rpn_case14_sandbox", "bundled env name or env folder")
    factorization: str | None = option(
        None, "factorization.json (default: thesis case14 partition)"
    )
    centralized: bool = option(False, "one agent for the whole grid (baseline)")
    complete_obs: bool = option(False, "every cluster agent sees the whole grid")
    episodes: int = option(200, "training episodes in total", parse=cli.positive_int, results=False)
    seed: int = option(THESIS_SEED, "seed (the thesis')", parse=int)
    thermal_limit_scale: float = option(1.0, "multiply thermal limits (stressed case14: 0.85)",
                                        parse=cli.positive_float, metavar="X")  # fmt: skip
    scenarios: list = option(["train"], "scenario split(s) to train on, comma-separated",
                             parse=_split_list)  # fmt: skip
    out: str = option("runs/train", "output folder", results=False)
    resume: bool = option(False, "continue from the last checkpoint in --out", results=False)
    checkpoint_every: int = option(20, "episodes between checkpoints", parse=cli.positive_int,
                                   results=False)  # fmt: skip
    episodes_per_update: int = option(4, "episodes per learner update", parse=cli.positive_int)
    imitation_episodes: int = option(0, "expert episodes behaviour-cloned first (0: pure RL)",
                                     parse=cli.non_negative_int)  # fmt: skip
    dagger_rounds: int = option(0, "DAgger rounds after them (policy acts, expert labels)",
                                parse=cli.non_negative_int)  # fmt: skip
    prune_actions: bool = option(False, "keep only the actions the expert used during imitation")
    max_start: int = option(
        0, "start episodes at a random step in [0, N]", parse=cli.non_negative_int
    )
    danger: float = option(0.9, "act when max rho >= this", parse=cli.danger_threshold)
    rank_by: str = option("max", "substation picker ranking", choices=("max", "mean"))
    reconnect: str = option(DEFAULT_RECONNECT, "line reconnection rule: hold (safe, lines that "
                            "tripped on overload left out), safe (simulated first), first "
                            "(the first legal line, unchecked) or none",
                            choices=RECONNECT_RULES)  # fmt: skip
    scope: str = option("substation", "what a decision covers: the picked substation's "
                        "topologies, or every topology of the picked cluster (cluster: the "
                        "imitation teacher is then the reduced-set expert's search within the "
                        "cluster)", choices=SCOPES, results=False)  # fmt: skip
    revert: float | None = option(None, "below this max rho, split substations go back to "
                                  "their reference topology (default: never)",
                                  parse=cli.danger_threshold, results=False)  # fmt: skip
    expert_budget: int = option(100, "simulations per imitation label with --scope cluster",
                                parse=cli.positive_int, results=False)  # fmt: skip
    top_k: int = option(0, "at evaluation, simulate the K most probable actions and keep the "
                        "safest (0: the policy alone)", parse=cli.non_negative_int)  # fmt: skip
    action_set: str | None = option(None, "a reduced action set (actions.json of "
                                    "python -m distributed_grid2op.actions)")  # fmt: skip
    backend: str = option("lightsim", "power-flow backend", choices=("lightsim", "pandapower"))
    learner: str = option("ppo", "cluster learner (registry key)")
    learner_config: dict = option({}, "learner hyper-parameters that differ from its defaults",
                                  cli=False)  # fmt: skip
    actions: list | None = option(None, "what the agents control, comma-separated: topology, "
                                  "redispatch, curtailment, storage (default: topology if the "
                                  "env has set-bus actions, plus the continuous kinds it "
                                  "supports when the factorization assigns units, format 2, or "
                                  "there is no topology)", parse=_actions_list, results=False)  # fmt: skip
    unit_learner: str = option("sac", "learner of the continuous agents (registry key)",
                               results=False)  # fmt: skip
    unit_learner_config: dict = option({}, "continuous learner hyper-parameters that differ "
                                       "from its defaults", cli=False, results=False)  # fmt: skip
    cost_weights: dict = option({}, "weights of the continuous agents' cost reward that differ "
                                "from cost.DEFAULT_WEIGHTS, e.g. overload=50,redispatch=0.5",
                                parse=_weights, results=False)  # fmt: skip
    game_over_cost: float = option(GAME_OVER_COST, "the continuous agents' reward of a game "
                                   "over is minus this", parse=cli.positive_float,
                                   results=False)  # fmt: skip
    workers: int = option(1, "parallel workers", cli=False, results=False)
    ray: str | None = option(None, "Ray address", cli=False, results=False)
    progress: bool = option(True, "progress bar", results=False)

    def validate(self):
        from distributed_grid2op.agents.learners import learner_entry
        from distributed_grid2op.config import coerce_learner_config

        entry = learner_entry(self.learner)
        self.learner_config = coerce_learner_config(
            entry, dict(self.learner_config), "learner_config"
        ).to_dict()
        defaults = entry.config().to_dict()
        self.learner_config = {k: v for k, v in self.learner_config.items() if defaults[k] != v}
        unit = learner_entry(self.unit_learner)
        if "box" not in unit.action_kinds:
            raise UserError(f"learner {self.unit_learner!r} cannot act on continuous (box) actions")
        self.unit_learner_config = coerce_learner_config(
            unit, dict(self.unit_learner_config), "unit_learner_config"
        ).to_dict()
        defaults = unit.config().to_dict()
        self.unit_learner_config = {k: v for k, v in self.unit_learner_config.items()
                                    if defaults[k] != v}  # fmt: skip
        if isinstance(self.scenarios, str):
            self.scenarios = _split_list(self.scenarios)
        if self.actions is not None:
            self.actions = _actions_list(self.actions)
        self.cost_weights = _weights(self.cost_weights)
        return self

    def scope_options(self) -> dict:
        """The decision-scope options when any differs from its default (else {}: the resume
        check of a run made before they existed stays what it was)."""
        keys = ("scope", "revert", "expert_budget")
        default = TrainConfig()
        if all(getattr(self, k) == getattr(default, k) for k in keys):
            return {}
        return {k: getattr(self, k) for k in keys}

    def continuous_options(self) -> dict:
        """The continuous-control options when any differs from its default (else {}: the
        resume check of a topology-only run stays what it was before continuous control)."""
        keys = ("actions", "unit_learner", "unit_learner_config", "cost_weights", "game_over_cost")
        default = TrainConfig()
        if all(getattr(self, k) == getattr(default, k) for k in keys):
            return {}
        out = {k: getattr(self, k) for k in keys if k != "unit_learner_config"}
        hyper = self.unit_hyperparameters().to_dict()
        out.update({f"{self.unit_learner}_{k}": v for k, v in hyper.items()})
        return out

    def unit_hyperparameters(self):
        """The continuous learner's config dataclass (its defaults with the overrides)."""
        from distributed_grid2op.agents.learners import learner_entry
        from distributed_grid2op.config import coerce_learner_config

        return coerce_learner_config(
            learner_entry(self.unit_learner), self.unit_learner_config, "unit_learner_config"
        )

    @classmethod
    def from_mapping(cls, mapping: dict, source: str = "config"):
        """A TOML table; ``learning_rate`` and ``bc_temperature`` at the top level are
        shortcuts for the learner's fields of those names."""
        if not isinstance(mapping, dict):
            return super().from_mapping(mapping, source)  # the one error for a non-table
        mapping = dict(mapping)
        shortcuts = {k: mapping.pop(k) for k in ("learning_rate", "bc_temperature") if k in mapping}
        if shortcuts:
            nested = mapping.get("learner_config", {})
            if not isinstance(nested, dict):
                raise UserError(f"{source}: learner_config must be a table of learner options")
            mapping["learner_config"] = {**nested, **shortcuts}
        return super().from_mapping(mapping, source)

    def result_options(self) -> dict:
        """Options that change results; learner fields as ``<learner>_<field>`` (their flags)."""
        out = super().result_options()
        hyper = out.pop("learner_config")
        full = self.learner_hyperparameters().to_dict()
        out.update({f"{self.learner}_{k}": v for k, v in full.items()})
        assert set(hyper) <= set(full)
        out.update(self.continuous_options())
        out.update(self.scope_options())
        return out

    def learner_hyperparameters(self):
        from distributed_grid2op.agents.learners import learner_entry
        from distributed_grid2op.config import coerce_learner_config

        return coerce_learner_config(
            learner_entry(self.learner), self.learner_config, "learner_config"
        )


def train(config: TrainConfig, *, executor: Executor | None = None, run_info: dict | None = None):
    """Train the agent ``config`` describes; returns the fitted `Trainer` (its agent in
    ``trainer.agent``, written to ``<out>/final``). The Python face of
    ``python -m distributed_grid2op.main``."""
    from grid2op.Reward import CloseToOverflowReward

    from distributed_grid2op.agents import HierarchicalAgent
    from distributed_grid2op.envs import quiet_grid2op
    from distributed_grid2op.factorization_file import load_factorization
    from distributed_grid2op.splits import split_scenarios

    out = ensure_writable_dir(config.out)
    base = EnvSpec(config.env, backend=config.backend,
                   thermal_limit_scale=config.thermal_limit_scale, reward=CloseToOverflowReward)  # fmt: skip
    with quiet_grid2op():
        probe = base.make()
        fact = load_factorization(config.factorization, env=probe)
        action_file = None
        if config.action_set is not None:
            from distributed_grid2op.actions.file import load_action_file

            action_file = load_action_file(config.action_set, env=probe)
        probe.close()
        n_agents = 1 if config.centralized else len(fact.clusters)
        spec = EnvSpec(config.env, backend=config.backend,
                       thermal_limit_scale=config.thermal_limit_scale, reward=CloseToOverflowReward,
                       params={"MAX_SUB_CHANGED": max(1, n_agents),
                               "MAX_LINE_STATUS_CHANGED": max(1, n_agents)})  # fmt: skip
        env = spec.make(config.seed)
        scenarios = sorted({i for split in config.scenarios for i in split_scenarios(env, split)})
    agent = HierarchicalAgent(
        env, fact, centralized=config.centralized, complete_obs=config.complete_obs,
        danger=config.danger, rank_by=config.rank_by, learner=config.learner,
        config=config.learner_hyperparameters(), top_k=config.top_k, seed=config.seed,
        spec=spec, action_file=action_file, reconnect=config.reconnect, actions=config.actions,
        unit_learner=config.unit_learner, unit_config=config.unit_hyperparameters(),
        cost_weights=config.cost_weights, game_over_cost=config.game_over_cost,
        scope=config.scope, revert=config.revert, expert_budget=config.expert_budget,
    )  # fmt: skip
    info = {**(run_info or {}), "config": config.to_dict(), "env_spec": spec.to_dict(),
            "split": ",".join(config.scenarios)}  # fmt: skip
    own = executor is None
    if own:
        from distributed_grid2op.execution import executor_for

        executor = executor_for(config.workers, config.ray)
    try:
        trainer = Trainer(agent, out, spec=spec, scenarios=scenarios, seed=config.seed,
                          episodes_per_update=config.episodes_per_update,
                          checkpoint_every=config.checkpoint_every,
                          imitation_episodes=config.imitation_episodes,
                          dagger_rounds=config.dagger_rounds, prune_actions=config.prune_actions,
                          max_start=config.max_start, executor=executor, resume=config.resume,
                          progress=config.progress, run_info=info,
                          resume_check=config.result_options())  # fmt: skip
        with quiet_grid2op():
            trainer.fit(config.episodes)
    finally:
        if own:
            executor.close()
    return trainer


def build_parser() -> cli.ArgumentParser:
    from distributed_grid2op.agents.learners import LEARNERS
    from distributed_grid2op.config import learner_arguments

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


def config_from_args(args) -> TrainConfig:
    """The `TrainConfig` of parsed options (learner flags of another learner are refused)."""
    from distributed_grid2op.config import learner_overrides

    per_learner = learner_overrides(args)
    other = sorted(set(per_learner) - {args.learner, args.unit_learner})
    if other:
        raise UserError(f"--{other[0]}-* options given but --learner is {args.learner!r} and "
                        f"--unit-learner {args.unit_learner!r}")  # fmt: skip
    overrides = dict(per_learner.get(args.learner, {}))
    for key in ("learning_rate", "bc_temperature"):
        if getattr(args, key) is not None:
            overrides.setdefault(key, getattr(args, key))
    unit = {} if args.unit_learner == args.learner else dict(per_learner.get(args.unit_learner, {}))
    return TrainConfig.from_args(args, learner_config=overrides, unit_learner_config=unit)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = config_from_args(args)
    with cli.executor_from_args(args) as executor:
        trainer = train(config, executor=executor,
                        run_info={"argv": list(sys.argv[1:] if argv is None else argv)})  # fmt: skip
    agent = trainer.agent
    n = len(agent.decomposition.clusters)
    kind = "centralised" if config.centralized else f"{n}-cluster"
    print(
        f"trained {kind} agent: {trainer.episodes_done_} episodes, log "
        f"{trainer.out / 'train_log.csv'}, agent {trainer.out / 'final'}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(cli.run(main))
