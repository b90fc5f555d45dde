"""Reference agents every evaluation runs next to trained ones.

All are grid2op ``BaseAgent``\\ s that, after each ``act``, expose ``last_decision``
(``{"agent": str, "action_id": int, "substation": int}``; ``agent == ""`` when nothing was
decided) - the contract shared with `distributed_grid2op.agents`.

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
from grid2op.Agent import BaseAgent

from distributed_grid2op.errors import UserError
from distributed_grid2op.grid import (
    controllable_substations,
    reconnect_action,
    reconnectable_lines,
    unitary_topologies,
)

BASELINES = ("do-nothing", "reconnect", "expert")
DANGER = 0.9


def _no_decision() -> dict:
    return {"agent": "", "action_id": -1, "substation": -1}


class DoNothing(BaseAgent):
    """Always the empty action."""

    name = "do-nothing"

    def __init__(self, action_space):
        super().__init__(action_space)
        self.last_decision = _no_decision()

    def reset(self, obs):
        self.last_decision = _no_decision()

    def act(self, observation, reward, done=False):
        self.last_decision = _no_decision()
        return self.action_space({})


class Reconnect(DoNothing):
    """Do-nothing, but reconnect the first legally reconnectable line (``action_id`` = line)."""

    name = "reconnect"

    def act(self, observation, reward, done=False):
        action = reconnect_action(self.action_space, observation)
        if action is None:
            self.last_decision = _no_decision()
            return self.action_space({})
        line = int(reconnectable_lines(observation)[0])
        self.last_decision = {"agent": "reconnect", "action_id": line, "substation": -1}
        return action


class GreedyExpert(Reconnect):
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
    """

    name = "expert"

    def __init__(self, action_space, env, danger: float = DANGER, substations=None):
        super().__init__(action_space)
        self.danger = float(danger)
        subs = (
            controllable_substations(env) if substations is None else [int(s) for s in substations]
        )
        self.candidates_ = [a for s in subs for a in unitary_topologies(env, s)]
        self.candidate_subs_ = np.asarray(
            [s for s in subs for _ in unitary_topologies(env, s)], dtype=np.int64
        )
        self.n_simulations_ = 0

    @staticmethod
    def _simulated_max_rho(observation, action) -> float:
        sim_obs, _, sim_done, info = observation.simulate(action)
        if sim_done or info.get("exception") or info.get("is_illegal") or info.get("is_ambiguous"):
            return float("inf")
        return float(np.max(sim_obs.rho))

    def act(self, observation, reward, done=False):
        action = super().act(observation, reward, done)
        if self.last_decision["agent"] or float(np.max(observation.rho)) < self.danger:
            return action
        cooldown = np.asarray(observation.time_before_cooldown_sub)
        best_id, best_rho = -1, self._simulated_max_rho(observation, self.action_space({}))
        self.n_simulations_ += 1
        for i, (cand, sub) in enumerate(zip(self.candidates_, self.candidate_subs_)):
            if cooldown[sub] > 0:
                continue
            rho = self._simulated_max_rho(observation, cand)
            self.n_simulations_ += 1
            if rho < best_rho:
                best_id, best_rho = i, rho
        if best_id < 0:
            self.last_decision = {"agent": "expert", "action_id": -1, "substation": -1}
            return self.action_space({})
        sub = int(self.candidate_subs_[best_id])
        self.last_decision = {"agent": "expert", "action_id": best_id, "substation": sub}
        return self.candidates_[best_id]


def make_baseline(name: str, env, *, danger: float = DANGER) -> BaseAgent:
    """A fresh baseline agent by name (``do-nothing``, ``reconnect`` or ``expert``)."""
    if name == "do-nothing":
        return DoNothing(env.action_space)
    if name == "reconnect":
        return Reconnect(env.action_space)
    if name == "expert":
        return GreedyExpert(env.action_space, env, danger=danger)
    raise UserError(f"unknown baseline {name!r}; choose from {', '.join(BASELINES)}")
