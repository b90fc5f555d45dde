"""Reference agents every evaluation runs next to trained ones.

All are `distributed_grid2op.loop.LoopAgent`\\ s (grid2op ``BaseAgent``\\ s made of the rules
of a `Controller` and a ``decide`` at each turn), like the trained agents: evaluation runs
them all through the same `DecisionLoop`.

- ``do-nothing``: never acts; the 0 of the L2RPN-style score.
- ``reconnect``: do-nothing plus reconnection of a legally reconnectable line.
- ``expert``: the greedy expert of the L2RPN literature: reconnect first; otherwise, when
  the max line loading ``rho`` reaches ``danger`` (0.9), simulate (``obs.simulate``) every
  unitary set-bus topology of the controllable substations (>= 4 elements) and take the
  one with the lowest resulting max rho, if it beats doing nothing. ~1 ms per simulation,
  ~160 candidates on case14.
"""

from __future__ import annotations

import numpy as np

from distributed_grid2op.errors import UserError
from distributed_grid2op.grid import controllable_substations, unitary_topologies
from distributed_grid2op.loop import DEFAULT_DANGER, Controller, Decision, LoopAgent, Turn
from distributed_grid2op.scoring import best_index, simulated_max_rho

BASELINES = ("do-nothing", "reconnect", "expert")
DANGER = DEFAULT_DANGER


class DoNothing(LoopAgent):
    """Always the empty action (no rule, never a turn)."""

    name = "do-nothing"

    def __init__(self, action_space, env=None):
        env = env if env is not None else _SpaceOnly(action_space)
        super().__init__(action_space, Controller(env, danger=np.inf, reconnect=False))


class Reconnect(LoopAgent):
    """Do-nothing, but reconnect the first legally reconnectable line (``action_id`` = line)."""

    name = "reconnect"

    def __init__(self, action_space, env=None):
        env = env if env is not None else _SpaceOnly(action_space)
        super().__init__(action_space, Controller(env, danger=np.inf, reconnect=True))


class _SpaceOnly:
    """What a `Controller` without picker reads of an env: its action space."""

    def __init__(self, action_space):
        self.action_space = action_space


class GreedyExpert(LoopAgent):
    """Reconnect first; in danger, the unitary topology with the lowest simulated max rho.

    Args:
        action_space: the env's action space.
        env: the env (for the grid's substations and unitary topologies).
        danger: act when ``max(obs.rho) >= danger``.
        substations: substations whose topologies are candidates (default: those with >= 4
            elements).

    Attributes:
        candidates_: list of grid2op actions; ``action_id`` indexes it.
        candidate_subs_: substation of each candidate, int array of shape (n_candidates,).
        n_simulations_: simulations run so far.
    """

    name = "expert"

    def __init__(self, action_space, env, danger: float = DANGER, substations=None):
        super().__init__(action_space, Controller(env, danger=danger, reconnect=True))
        self.danger = float(danger)
        subs = (
            controllable_substations(env) if substations is None else [int(s) for s in substations]
        )
        self.candidates_ = [a for s in subs for a in unitary_topologies(env, s)]
        self.candidate_subs_ = np.asarray(
            [s for s in subs for _ in unitary_topologies(env, s)], dtype=np.int64
        )
        self.n_simulations_ = 0

    def decide(self, observation, turn: Turn, *, deterministic: bool = True, rng=None):
        """Simulate do-nothing and every candidate whose substation is not in cooldown; the
        lowest max rho wins (the first on exact ties), do-nothing unless strictly beaten."""
        free = np.asarray(observation.time_before_cooldown_sub)[self.candidate_subs_] == 0
        scores = np.full(1 + len(self.candidates_), np.inf)
        scores[0] = simulated_max_rho(observation, self.action_space({}))
        for i in np.flatnonzero(free):
            scores[1 + i] = simulated_max_rho(observation, self.candidates_[i])
        self.n_simulations_ += 1 + int(free.sum())
        best = best_index(scores, default=0, tie=0.0) - 1
        if best < 0:
            return self.action_space({}), Decision("expert")
        sub = int(self.candidate_subs_[best])
        return self.candidates_[best], Decision("expert", action_id=int(best), substation=sub)


def make_baseline(name: str, env, *, danger: float = DANGER) -> LoopAgent:
    """A fresh baseline agent by name (``do-nothing``, ``reconnect`` or ``expert``)."""
    if name == "do-nothing":
        return DoNothing(env.action_space, env)
    if name == "reconnect":
        return Reconnect(env.action_space, env)
    if name == "expert":
        return GreedyExpert(env.action_space, env, danger=danger)
    raise UserError(f"unknown baseline {name!r}; choose from {', '.join(BASELINES)}")
