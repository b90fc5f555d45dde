"""The one decision loop: training, evaluation, the PettingZoo env and the gym view run it.

Per grid step the `Controller` (the hierarchical rules) says what happens:

1. reconnect a disconnected line when legal (a `Rule` step): with ``reconnect="safe"`` only
   if its simulation does not make the max loading worse than doing nothing (or keeps it
   below the danger threshold), the best such line when several are reconnectable
   (`grid.safe_reconnect_action`); ``"hold"`` (`DEFAULT_RECONNECT`): the same, but a line
   that tripped on overload (in service with rho >= 1 at the previous step, out now) is left
   out as do-nothing leaves it (for ``TRIP_HOLD`` steps; the rest of the episode by default),
   so only lines taken by the opponent or by maintenance are brought back; ``"first"``: the
   first legal one blindly; ``"none"``: never. A reconnection that did not take (the line is
   still out at the next step: an opponent holding it down, a protection) is not retried for
   ``RETRY_WAIT`` steps, then twice as long after each new failure, so that a held-down line
   costs neither simulations nor decisions every step;
2. with ``revert`` set, while max rho is below that level, bring a split substation back to
   its reference topology (every element on bus 1) when its simulation keeps max rho below
   the level (a `Rule` step, ``agent="revert"``; the lowest simulated max rho first), so that
   topology changes made in danger do not pile up (`grid.revert_action`);
3. do nothing while max rho < the danger threshold (a `Rule` step, the picker queue empties);
4. otherwise it is a decision: the CAPA-style picker names a `Turn` (the cluster owning the
   most loaded substation not in cooldown, and that substation), or with ``scope="cluster"``
   the cluster alone (the clusters in the order of their most loaded substation, each then
   choosing among the topologies of all its substations), or with ``scope="grid"`` every
   cluster at once (each proposes from all its substations, the agent arbitrates), or the
   whole grid for a policy without clusters (the expert).

On top of whatever the rules or a decision play, continuous agents may act at every step
(redispatch, curtailment, storage set-points): the loop's ``every_step`` policy (a trained
agent's `LoopAgent.every_step`) gives a grid2op action that is added to the step's action
(grid2op actions add: ``a + b``; the continuous part only sets redispatch, curtailment and
storage, which topology and line-status actions never set, so the sum is not ambiguous).
An env whose actions cannot set line status (e.g. ``educ_case14_storage``) gets no
reconnection rule.

`DecisionLoop` runs rule steps until a turn is due (`advance`) and plays the decided action
(`apply`), summing the env rewards in between, and reports every step to an observer (the
evaluation's metrics, the trainer's reward accumulation). Whoever drives the loop decides at
a turn: a trained agent, a baseline, or a PettingZoo agent from outside.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from grid2op.Agent import BaseAgent

from distributed_grid2op import grid
from distributed_grid2op.errors import UserError

DEFAULT_DANGER = 0.9
RECONNECT_RULES = ("hold", "safe", "first", "none")
#: the reconnection rule of baselines and new agents
DEFAULT_RECONNECT = "hold"
#: steps before a reconnection that did not take is tried again (doubling after each failure)
RETRY_WAIT = 12
#: the ``"hold"`` rule keeps a line that tripped on overload out for this many steps (None:
#: for the rest of the episode)
TRIP_HOLD: int | None = None
#: ``reset(options=...)`` keys passed on to grid2op (others, e.g. from generic tests, are ignored)
GRID2OP_RESET_KEYS = ("time serie id", "init ts", "max step", "init datetime", "init state")


@dataclass
class Decision:
    """What was decided at one step (the record every output keeps), plus, when a learner
    decided, what it needs to learn (``features``, ``mask``, ``logp``, ``value``).

    ``agent`` is ``""`` when nothing was decided (a safe step), ``"reconnect"`` for the
    reconnection rule (``action_id`` = the line), else the deciding agent (a cluster name,
    ``"expert"``); ``action_id`` indexes that agent's action set (-1: none); ``simulations``
    counts the ``obs.simulate`` calls the decision took.
    """

    agent: str = ""
    action_id: int = -1
    substation: int = -1
    cluster: int = -1
    features: np.ndarray | None = field(default=None, repr=False)
    mask: np.ndarray | None = field(default=None, repr=False)
    logp: float = 0.0
    value: float = 0.0
    simulations: int = 0  # obs.simulate calls made to decide
    #: a grid turn (``scope="grid"``): every cluster's proposal, one dict per cluster with
    #: ``features``, ``mask``, ``action``, ``logp``, ``value`` (what its learner needs)
    proposals: list | None = field(default=None, repr=False)

    def record(self) -> dict:
        """The three fields written to step metrics."""
        return {"agent": self.agent, "action_id": self.action_id, "substation": self.substation}


#: what a picker's turn covers: one substation (the CAPA picker) or a whole cluster
SCOPES = ("substation", "cluster", "grid")


@dataclass(frozen=True)
class Turn:
    """A decision is due: ``cluster`` decides for ``substation`` (-1, -1: the whole grid;
    ``cluster``, -1: every substation of the cluster)."""

    cluster: int = -1
    substation: int = -1


@dataclass(frozen=True)
class Rule:
    """A step the rules play themselves: reconnection or do-nothing."""

    action: object
    decision: Decision


def rank_substations(obs, substations, env, by: str = "max") -> list[int]:
    """CAPA-style priority: substations whose lines are most loaded first.

    ``by="max"``: sort by the highest rho of the substation's lines, ties by the mean;
    ``by="mean"``: by the mean, ties by the highest. Stable on substation id.
    """
    if by not in ("max", "mean"):
        raise UserError(f"picker must rank by 'max' or 'mean', got {by!r}")
    rho = np.asarray(obs.rho, dtype=float)
    keys = []
    for s in substations:
        r = rho[grid.lines_of_substation(env, s)]
        hi, mean = (float(r.max()), float(r.mean())) if r.size else (0.0, 0.0)
        keys.append((-hi, -mean, s) if by == "max" else (-mean, -hi, s))
    return [k[2] for k in sorted(keys)]


class Controller:
    """The hierarchical rules: reconnect, do nothing when safe, else whose turn it is.

    Args:
        env: the grid2op env (its action space and topology).
        owner: substation -> cluster index of the substations a cluster may act on; None:
            no picker, a decision is a `Turn` for the whole grid.
        danger: a decision is due when max rho >= this (``inf``: never).
        rank_by: picker ranking, ``"max"`` or ``"mean"``.
        reconnect: the reconnection rule: ``"hold"`` (simulated first, lines that tripped on
            overload left out), ``"safe"`` (simulated first), ``"first"`` (the first legally
            reconnectable line, unchecked: the rule before safe reconnection) or ``"none"``;
            ``True``/``False`` mean ``"first"``/``"none"``.
        safe_level: safe reconnection accepts a line whose simulated max rho stays below this
            (or is no worse than doing nothing).
        revert: the max rho below which split substations are brought back to their reference
            topology (None: never, the default of trained agents).
        scope: ``"substation"`` (default): a turn names a substation and its cluster;
            ``"cluster"``: a turn names a cluster only; ``"grid"``: a turn is every cluster's
            (``Turn()``, while a controllable substation is out of cooldown) (`SCOPES`).

    The picker keeps a CAPA queue: when it is empty (or after a safe step) it is refilled
    with the controllable substations in priority order, and each danger step pops the next
    one that is not in cooldown, so that every substation gets its chance in turn. With
    ``scope="cluster"`` the queue holds clusters, ranked by their most loaded substation, and
    a cluster gets a turn while one of its substations is out of cooldown.
    """

    def __init__(
        self,
        env,
        owner: dict[int, int] | None = None,
        *,
        danger: float = DEFAULT_DANGER,
        rank_by: str = "max",
        reconnect: str | bool = "safe",
        safe_level: float = DEFAULT_DANGER,
        revert: float | None = None,
        scope: str = "substation",
    ):
        if not danger > 0:
            raise UserError(f"danger threshold must be > 0, got {danger}")
        if rank_by not in ("max", "mean"):
            raise UserError(f"picker must rank by 'max' or 'mean', got {rank_by!r}")
        self.env, self.owner = env, owner
        self.controllable = None if owner is None else sorted(owner)
        reconnect = {True: "first", False: "none"}.get(reconnect, reconnect)
        if reconnect not in RECONNECT_RULES:
            raise UserError(
                f"reconnection rule must be one of {', '.join(RECONNECT_RULES)}, got {reconnect!r}"
            )
        self.danger, self.rank_by, self.reconnect = float(danger), rank_by, reconnect
        self.safe_level = float(safe_level)
        if revert is not None and not 0 < float(revert) <= float(danger):
            raise UserError(f"revert level must be in (0, danger={danger}], got {revert}")
        self.revert = None if revert is None else float(revert)
        if scope not in SCOPES:
            raise UserError(f"picker scope must be one of {', '.join(SCOPES)}, got {scope!r}")
        self.scope = scope
        keys = getattr(getattr(env.action_space, "actionClass", None), "authorized_keys", None)
        self.can_reconnect = keys is None or "set_line_status" in keys
        self.queue: list[int] = []
        self._tried: tuple[int, int] | None = None  # (line, step) of the last reconnection
        self._retry: dict[int, tuple[int, int]] = {}  # line -> (retry at step, wait)
        self._tripped: dict[int, int] = {}  # line -> step it tripped on overload
        self._last: tuple[int, np.ndarray, np.ndarray] | None = None  # step, status, rho

    def reset(self) -> None:
        self.queue = []
        self._tried, self._retry, self._tripped, self._last = None, {}, {}, None

    def decide(self, obs) -> Rule | Turn:
        """A `Rule` step (reconnection, do-nothing) or the `Turn` of a decision."""
        rule = self._reconnection(obs)
        if rule is not None:
            return rule
        if self.revert is not None and float(np.max(obs.rho)) < self.revert:
            found = grid.revert_action(self.env, obs, level=self.revert)
            if found is not None:
                return Rule(found[0], Decision("revert", substation=found[1]))
        if float(np.max(obs.rho)) < self.danger:
            self.queue = []
            return Rule(self.env.action_space(), Decision())
        if self.owner is None:
            return Turn()
        cooldown = np.asarray(obs.time_before_cooldown_sub)
        if self.scope == "grid":
            if (cooldown[self.controllable] == 0).any():
                return Turn()
            return Rule(self.env.action_space(), Decision())
        for _ in range(2):
            while self.queue:
                s = self.queue.pop(0)
                if self.scope == "cluster":  # s is a cluster: a turn while one of its is free
                    if any(cooldown[t] == 0 for t in self.controllable if self.owner[t] == s):
                        return Turn(s, -1)
                elif cooldown[s] == 0:
                    return Turn(self.owner[s], s)
            ranked = rank_substations(obs, self.controllable, self.env, self.rank_by)
            if self.scope == "cluster":
                ranked = list(dict.fromkeys(self.owner[s] for s in ranked))
            self.queue = ranked
        return Rule(self.env.action_space(), Decision())  # every substation in cooldown

    def _reconnection(self, obs) -> Rule | None:
        """The reconnection rule's step, if a line is (safely) reconnected now."""
        if self.reconnect == "none" or not self.can_reconnect:
            return None
        step = int(getattr(obs, "current_step", 0))
        if self._tried is not None:  # did the last reconnection take?
            line, at = self._tried
            self._tried = None
            if step == at + 1 and not bool(obs.line_status[line]):
                wait = 2 * self._retry[line][1] if line in self._retry else RETRY_WAIT
                self._retry[line] = (step + wait, wait)
            elif step == at + 1:
                self._retry.pop(line, None)
        held = [line for line, (when, _) in self._retry.items() if step < when]
        if self.reconnect == "hold":
            held += self._overload_trips(obs, step)
        if self.reconnect == "first":
            action = grid.reconnect_action(self.env.action_space, obs, exclude=held)
        else:
            action = grid.safe_reconnect_action(
                self.env.action_space, obs, danger=self.safe_level, exclude=held
            )
        if action is None:
            return None
        line = int(np.flatnonzero(np.asarray(action.line_set_status) == 1)[0])
        self._tried = (line, step)
        return Rule(action, Decision("reconnect", action_id=line))

    def _overload_trips(self, obs, step: int) -> list[int]:
        """Lines that tripped on overload and are still held out (``"hold"`` rule): in service
        with rho >= 1 at the previous step and out now; held for `TRIP_HOLD` steps."""
        status, rho = np.asarray(obs.line_status, dtype=bool), np.asarray(obs.rho, dtype=float)
        if self._last is not None and self._last[0] == step - 1:
            tripped = np.flatnonzero(self._last[1] & ~status & (self._last[2] >= 1.0))
            self._tripped.update({int(line): step for line in tripped})
        self._last = (step, status.copy(), rho.copy())
        return [line for line, at in self._tripped.items()
                if not status[line] and (TRIP_HOLD is None or step - at < TRIP_HOLD)]  # fmt: skip


@dataclass
class Step:
    """One grid step as the observer sees it."""

    obs_before: object
    action: object
    decision: Decision
    obs: object
    reward: float
    done: bool
    info: dict
    ms: float  # wall time from the start of the decision to the env step
    units: object = None  # what the every-step (continuous) policy chose, if any


class DecisionLoop:
    """Runs the grid until a decision is due, accumulating the per-step rewards.

    Args:
        env: the grid2op env.
        controller: the rules (`Controller`).
        observer: called with a `Step` after every env step.
        every_step: the continuous agents' policy, called with the observation at every step:
            ``(grid2op action, record)``; the action is added to the step's action and the
            record handed to the observer (`Step.units`). None: no continuous control.
    """

    def __init__(self, env, controller: Controller, observer: Callable[[Step], None] | None = None,
                 every_step: Callable | None = None):  # fmt: skip
        self.env, self.controller, self.observer = env, controller, observer
        self.every_step = every_step
        self.obs, self.info, self.pending = None, {}, None
        self.done = self.terminated = self.truncated = False
        self.steps = 0
        self._t0 = 0.0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """Seed the env (if ``seed``), reset it with ``options``; returns the first observation."""
        if seed is not None:
            self.env.seed(int(seed))
        opts = {k: v for k, v in (options or {}).items() if k in GRID2OP_RESET_KEYS}
        self.obs = self.env.reset(options=opts or None)
        self.controller.reset()
        self.pending, self.info, self.steps = None, {}, 0
        self.done = self.terminated = self.truncated = False
        return self.obs

    def advance(self) -> float:
        """Play rule steps until a `Turn` is due (``pending``) or the episode ends; the summed
        reward of those steps."""
        total = 0.0
        self.pending = None
        while not self.done:
            self._t0 = time.perf_counter()
            what = self.controller.decide(self.obs)
            if isinstance(what, Turn):
                self.pending = what
                return total
            total += self._step(what.action, what.decision)
        return total

    def apply(self, action, decision: Decision) -> float:
        """Play the action decided at the pending turn; its reward."""
        if self.pending is None or self.done:
            raise RuntimeError("no decision is pending")
        self.pending = None
        return self._step(action, decision)

    def step(self, action, decision: Decision | None = None, units=None) -> float:
        """Play one grid step with ``action`` whether or not a turn is pending (the views of
        the continuous agents act at every step, the rules deciding the rest); its reward.
        ``units`` is handed to the observer (`Step.units`)."""
        if self.done:
            raise RuntimeError("the episode is over")
        self._t0 = time.perf_counter()
        self.pending = None
        return self._step(action, decision or Decision(), units)

    def _step(self, action, decision: Decision, units=None) -> float:
        before = self.obs
        if self.every_step is not None:
            extra, units = self.every_step(before)
            action = action + extra
        ms = (time.perf_counter() - self._t0) * 1e3
        self.obs, reward, done, self.info = self.env.step(action)
        self.steps += 1
        if done:
            self.done = True
            self.terminated = bool(self.info.get("exception"))  # game over
            self.truncated = not self.terminated  # end of the scenario
        if self.observer is not None:
            self.observer(Step(before, action, decision, self.obs, float(reward), bool(done),
                               self.info, ms, units))  # fmt: skip
        return float(reward)


def play(loop: DecisionLoop, policy, *, deterministic: bool = True, rng=None) -> None:
    """Drive ``loop`` to the end of the episode, ``policy.decide`` deciding at every turn."""
    loop.advance()
    while not loop.done:
        action, decision = policy.decide(
            loop.obs, loop.pending, deterministic=deterministic, rng=rng
        )
        loop.apply(action, decision)
        loop.advance()


class LoopAgent(BaseAgent):
    """A grid2op agent made of a `Controller` (the rules) and a ``decide`` at each `Turn`.

    Evaluation and training drive it through a `DecisionLoop` (``agent.controller`` and
    ``agent.decide``); ``act``/``predict`` give the same choices step by step, so the grid2op
    ``Runner`` can run it too. After each ``act``, ``last_decision`` holds the `Decision`'s
    record (``{"agent", "action_id", "substation"}``). An agent with continuous agents
    returns their policy from `every_step` (the loop's ``every_step``).
    """

    def __init__(self, action_space, controller: Controller):
        super().__init__(action_space)
        self.controller = controller
        self.last_decision = Decision().record()

    def reset(self, obs=None):
        """Start of an episode: empty the picker queue."""
        self.controller.reset()
        self.last_decision = Decision().record()

    def act(self, observation, reward=0.0, done=False):
        """The action for ``observation`` (greedy)."""
        action, _ = self.predict(observation)
        return action

    def predict(self, observation, deterministic: bool = True, rng=None):
        """``(grid2op action, Decision)`` under the rules."""
        what = self.controller.decide(observation)
        if isinstance(what, Rule):
            action, decision = what.action, what.decision
        else:
            action, decision = self.decide(observation, what, deterministic=deterministic, rng=rng)
        every = self.every_step(deterministic=deterministic, rng=rng)
        if every is not None:
            action = action + every(observation)[0]
        self.last_decision = decision.record()
        return action, decision

    def every_step(self, *, deterministic: bool = True, rng=None) -> Callable | None:
        """The policy of the continuous agents for `DecisionLoop`'s ``every_step`` (None:
        this agent has none)."""
        return None

    def decide(self, observation, turn: Turn, *, deterministic: bool = True, rng=None):
        """``(grid2op action, Decision)`` at a turn (subclasses)."""
        return self.action_space(), Decision()
