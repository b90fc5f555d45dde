"""Reference agents every evaluation runs next to trained ones.

All are `distributed_grid2op.loop.LoopAgent`\\ s (grid2op ``BaseAgent``\\ s made of the rules
of a `Controller` and a ``decide`` at each turn), like the trained agents: evaluation runs
them all through the same `DecisionLoop`.

- ``do-nothing``: never acts; the 0 of the L2RPN-style score.
- ``reconnect``: do-nothing plus the reconnection rule (safe by default: a disconnected line
  is reconnected only if its simulation does not make the max loading worse).
- ``expert``: the greedy expert of the L2RPN literature: reconnect first; otherwise, when
  the max line loading ``rho`` reaches ``danger`` (0.9), simulate (``obs.simulate``) the
  candidate topologies and take the one with the lowest resulting max rho, if it beats doing
  nothing. Candidates: every unitary set-bus topology of the controllable substations (>= 4
  elements; ~160 on case14, ~1 ms per simulation), or a reduced action set
  (``actions.json``); with a simulation budget, the candidates nearest the overloaded lines
  first (`actions.search.greedy_search`), which is what makes it usable on 118-bus grids.
"""

from __future__ import annotations

import numpy as np

from distributed_grid2op import grid
from distributed_grid2op.action_sets import check_enumerable
from distributed_grid2op.errors import UserError
from distributed_grid2op.grid import controllable_substations, unitary_topologies
from distributed_grid2op.loop import (
    DEFAULT_DANGER,
    DEFAULT_RECONNECT,
    Controller,
    Decision,
    LoopAgent,
    Turn,
)
from distributed_grid2op.scoring import best_index, score_actions, simulated_max_rho

BASELINES = ("do-nothing", "reconnect", "expert")
#: baselines run only when asked for by name (``--baselines ...,opf``): the DC optimal power
#: flow expert over redispatch, curtailment and storage (`distributed_grid2op.opf`)
OPTIONAL_BASELINES = ("opf",)
DANGER = DEFAULT_DANGER
#: the expert's revert level: below it, split substations go back to the reference topology
REVERT = 0.8


class DoNothing(LoopAgent):
    """Always the empty action (no rule, never a turn)."""

    name = "do-nothing"

    def __init__(self, action_space, env=None):
        env = env if env is not None else _SpaceOnly(action_space)
        super().__init__(action_space, Controller(env, danger=np.inf, reconnect="none"))


class Reconnect(LoopAgent):
    """Do-nothing plus the reconnection rule (``action_id`` = the line reconnected)."""

    name = "reconnect"

    def __init__(self, action_space, env=None, reconnect: str = DEFAULT_RECONNECT):
        env = env if env is not None else _SpaceOnly(action_space)
        super().__init__(action_space, Controller(env, danger=np.inf, reconnect=reconnect))


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
        action_file: a reduced action set (`actions.file.ActionFile`): its topologies are the
            candidates instead of every unitary one.
        budget: at most this many simulations per decision, the candidates nearest the
            overloaded lines first (None: every candidate, in order).
        reconnect: the reconnection rule (`loop.Controller`).
        revert: below this max rho, a split substation goes back to its reference topology
            when the simulation keeps max rho below it (`loop.Controller`; None: never).

    Attributes:
        candidates_: list of grid2op actions; ``action_id`` indexes it.
        candidate_subs_: substation of each candidate, int array of shape (n_candidates,).
        n_simulations_: simulations run so far.
    """

    name = "expert"

    def __init__(
        self,
        action_space,
        env,
        danger: float = DANGER,
        substations=None,
        *,
        action_file=None,
        budget: int | None = None,
        reconnect: str = DEFAULT_RECONNECT,
        revert: float | None = REVERT,
    ):
        controller = Controller(env, danger=danger, reconnect=reconnect, revert=revert)
        super().__init__(action_space, controller)
        self.danger, self.env = float(danger), env
        self.budget = None if budget is None else int(budget)
        subs = (
            controllable_substations(env) if substations is None else [int(s) for s in substations]
        )
        self.reduced = action_file is not None
        if action_file is not None:
            keep = action_file.for_substations(subs)
            self.candidates_ = action_file.to_grid2op(action_space, keep)
            self.candidate_subs_ = np.asarray(action_file.substations[keep], dtype=np.int64)
        else:
            check_enumerable(env, subs)
            self.candidates_ = [a for s in subs for a in unitary_topologies(env, s)]
            self.candidate_subs_ = np.asarray(
                [s for s in subs for _ in unitary_topologies(env, s)], dtype=np.int64
            )
        self.n_simulations_ = 0
        self.n_decisions_ = 0

    def decide(self, observation, turn: Turn, *, deterministic: bool = True, rng=None):
        """Simulate do-nothing and the candidates (within the budget, nearest the overloads
        first; else every candidate whose substation is not in cooldown); the lowest max rho
        wins (the first on exact ties), do-nothing unless strictly beaten. With a reduced
        set, returning a split substation to its reference topology is a candidate too
        (first in its substation; grid2op's full enumeration has it already)."""
        self.n_decisions_ += 1
        reverts = grid.revert_actions(self.env, observation) if self.reduced else []
        actions = [a for a, _ in reverts] + self.candidates_
        subs = np.concatenate([np.asarray([s for _, s in reverts], dtype=np.int64),
                               self.candidate_subs_])  # fmt: skip
        if self.budget is not None:
            from distributed_grid2op.actions.search import greedy_search

            best, n_sim = greedy_search(observation, actions, subs, self.env,
                                        budget=self.budget, danger=self.danger)  # fmt: skip
        else:
            free = np.flatnonzero(np.asarray(observation.time_before_cooldown_sub)[subs] == 0)
            base = simulated_max_rho(observation, self.action_space({}))
            scores = np.concatenate([[base], score_actions(observation, actions, free)])
            n_sim = 1 + free.size
            best = best_index(scores, default=0, tie=0.0) - 1
        self.n_simulations_ += n_sim
        if best < 0:
            return self.action_space({}), Decision("expert", simulations=n_sim)
        if best < len(reverts):
            return actions[best], Decision("revert", substation=int(subs[best]),
                                           simulations=n_sim)  # fmt: skip
        best -= len(reverts)
        sub = int(self.candidate_subs_[best])
        decision = Decision("expert", action_id=int(best), substation=sub, simulations=n_sim)
        return self.candidates_[best], decision


def make_baseline(
    name: str,
    env,
    *,
    danger: float = DANGER,
    reconnect: str = DEFAULT_RECONNECT,
    action_file=None,
    budget: int | None = None,
    revert: float | None = REVERT,
) -> LoopAgent:
    """A fresh baseline agent by name (``do-nothing``, ``reconnect``, ``expert`` or ``opf``)."""
    if name == "do-nothing":
        return DoNothing(env.action_space, env)
    if name == "reconnect":
        return Reconnect(env.action_space, env, reconnect=reconnect)
    if name == "expert":
        return GreedyExpert(env.action_space, env, danger=danger, action_file=action_file,
                            budget=budget, reconnect=reconnect, revert=revert)  # fmt: skip
    if name == "opf":
        from distributed_grid2op.opf import OPFExpert

        return OPFExpert(env.action_space, env, danger=danger, reconnect=reconnect)
    known = BASELINES + OPTIONAL_BASELINES
    raise UserError(f"unknown baseline {name!r}; choose from {', '.join(known)}")
