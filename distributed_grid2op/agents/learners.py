"""The learner protocol and the registry that names learners in agent metadata.

A learner owns one policy (and whatever it needs to improve it) for one action set:

- ``act(obs, mask=None, rng=None, deterministic=False) -> (action, logp, value)``;
- ``record(obs, masks, actions, logps, values, rewards, last_value=0.0)``: one trajectory
  of its own decisions (arrays of equal length; rewards summed between its decisions);
- ``update(generator, lr_frac=1.0) -> dict``: learn from what was recorded, then forget it;
- ``behaviour_clone(obs, masks, actions, generator, targets=None) -> accuracy``, where
  imitation applies (``supports_imitation``);
- ``state_dict()`` / ``load_state_dict(state)``: everything (for checkpoints);
  ``policy_state()`` / ``load_policy_state(state)``: what acting needs (sent to workers).

`HierarchicalAgent` and `Trainer` use only these. A new learner is one module with a class
and a config dataclass (``to_dict`` / ``from_dict``), plus `register_learner` (see
docs/CONVENTIONS.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from gymnasium import spaces

from distributed_grid2op.errors import UserError


class Learner(Protocol):
    """What the hierarchical agent and the trainer call on a learner."""

    supports_imitation: bool

    def act(self, obs, mask=None, rng=None, deterministic: bool = False) -> tuple: ...
    def record(self, obs, masks, actions, logps, values, rewards, last_value: float = 0.0): ...
    def update(self, generator, lr_frac: float = 1.0) -> dict: ...
    def behaviour_clone(self, obs, masks, actions, generator, targets=None) -> float: ...
    def state_dict(self) -> dict: ...
    def load_state_dict(self, state: dict) -> None: ...
    def policy_state(self) -> dict: ...
    def load_policy_state(self, state: dict) -> None: ...


@dataclass(frozen=True)
class LearnerEntry:
    """A registered learner: its class, its config dataclass, the action-set kinds it takes."""

    cls: type
    config: type
    action_kinds: tuple[str, ...] = ("topology",)


LEARNERS: dict[str, LearnerEntry] = {}


def register_learner(name: str, cls: type, config: type, action_kinds=("topology",)) -> None:
    """Make ``name`` usable in agent metadata, configs and ``--learner``."""
    LEARNERS[name] = LearnerEntry(cls, config, tuple(action_kinds))


def learner_entry(name: str) -> LearnerEntry:
    if name not in LEARNERS:
        raise UserError(f"unknown learner {name!r}; choose from {', '.join(sorted(LEARNERS))}")
    return LEARNERS[name]


def make_learner(name: str, n_obs: int, action_set, config: Any = None, seed: int = 0):
    """A new learner ``name`` for an observation size and an `ActionSet`: a discrete set's
    learner is made as ``cls(n_obs, n_actions, config, seed=...)``, a box set's as
    ``cls(n_obs, low, high, config, seed=...)`` (the bounds of its gymnasium ``Box``)."""
    entry = learner_entry(name)
    if action_set.kind not in entry.action_kinds:
        raise UserError(f"learner {name!r} cannot act on {action_set.kind} action sets")
    config = config or entry.config()
    space = action_set.space
    if isinstance(space, spaces.Box):
        return entry.cls(n_obs, space.low, space.high, config, seed=seed)
    return entry.cls(n_obs, action_set.n, config, seed=seed)


def evaluate_gym(learner, env_id: str, episodes: int = 10, seed: int = 10_000) -> float:
    """Average undiscounted return of a learner's deterministic policy on a gymnasium env
    (any learner: only ``act(obs, deterministic=True)`` is called)."""
    import gymnasium as gym

    env = gym.make(env_id)
    total = 0.0
    for ep in range(episodes):
        obs, _ = env.reset(seed=seed + ep)
        done = False
        while not done:
            obs, r, term, trunc, _ = env.step(learner.act(obs, deterministic=True)[0])
            total += float(r)
            done = term or trunc
    env.close()
    return total / episodes


def _register_builtin() -> None:
    from distributed_grid2op.agents.ppo import PPOConfig, PPOLearner
    from distributed_grid2op.agents.sac import SACConfig, SACLearner

    register_learner("ppo", PPOLearner, PPOConfig)
    register_learner("sac", SACLearner, SACConfig, action_kinds=("box",))


_register_builtin()
