"""The grid control problem cut into one sub-problem per cluster of a factorization.

Per cluster: an observation mask over ``obs.to_vect()`` (the thesis attributes restricted to
the cluster's lines, substations and the generators/loads attached to them, plus calendar
features) with fixed per-attribute scales, and an action set (`action_sets.TopologyActionSet`:
do-nothing first, then the set-bus topologies of its substations with more than 3 elements:
every unitary one, or those of a reduced ``actions.json``; do-nothing alone when topology is
not controlled). With continuous kinds (redispatch, curtailment, storage), a cluster also
owns a box set over its own units (`continuous.ContinuousActionSet`: the units of a format-2
factorization, or those on its substations, `FactorizationFile.with_units`), acted on every
step from `ClusterView.unit_features`.

The decision rules (reconnect, do nothing while safe, the CAPA picker) and the loop that
runs them are `distributed_grid2op.loop`'s; `DecomposedAECEnv` wraps that loop as a
PettingZoo AEC env (acting agent = owner of the picked substation; safe steps pass and
their rewards accumulate) and `CentralizedGymEnv` as the gymnasium single-agent view of a
one-cluster decomposition. The continuous agents act at every grid step:
`DecomposedParallelEnv` is their PettingZoo parallel env (one agent per cluster that owns
units, the rules and an optional topology policy playing the rest of each step) and
`UnitsGymEnv` the gymnasium view of a one-cluster decomposition's continuous agent.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from pettingzoo import AECEnv, ParallelEnv

from distributed_grid2op import cost, grid
from distributed_grid2op.action_sets import TopologyActionSet
from distributed_grid2op.continuous import ContinuousActionSet, joint_action
from distributed_grid2op.errors import UserError
from distributed_grid2op.loop import (
    DEFAULT_DANGER,
    DEFAULT_RECONNECT,
    Controller,
    Decision,
    DecisionLoop,
    Turn,
)

#: attributes of the observation the thesis kept (everything else is masked out)
THESIS_ATTRS = (
    "month", "day_of_week", "hour_of_day", "minute_of_hour", "gen_p", "load_p", "p_or", "rho",
    "timestep_overflow", "line_status", "actual_dispatch", "target_dispatch", "curtailment",
    "curtailment_limit", "gen_p_before_curtail", "topo_vect", "time_before_cooldown_sub",
)  # fmt: skip
CALENDAR = {"month": 12.0, "day_of_week": 7.0, "hour_of_day": 24.0, "minute_of_hour": 60.0}
GEN_ATTRS = ("gen_p", "actual_dispatch", "target_dispatch", "curtailment", "curtailment_limit",
             "gen_p_before_curtail")  # fmt: skip
LINE_ATTRS = ("p_or", "rho", "timestep_overflow", "line_status")
#: divide raw values by these so that network inputs are of order 1 (MW attributes: 100 MW)
SCALES = {"gen_p": 100.0, "load_p": 100.0, "p_or": 100.0, "actual_dispatch": 100.0,
          "target_dispatch": 100.0, "gen_p_before_curtail": 100.0, "timestep_overflow": 3.0,
          "time_before_cooldown_sub": 3.0, **CALENDAR}  # fmt: skip


@dataclass
class ClusterView:
    """One cluster's observation mask and action set.

    Attributes:
        name: ``cluster_<i>``.
        substations, lines: the cluster's ids (the factorization).
        controlled: its substations with more than 3 elements (the ones it may act on).
        action_set: its `TopologyActionSet` (index 0 = do-nothing).
        obs_index: indices into ``obs.to_vect()`` kept for this cluster.
        obs_scale: (len(obs_index),) divisors applied to those values.
        units: its continuous box set over its own units (None: no continuous control, or
            no unit of the controlled kinds in this cluster).
    """

    name: str
    substations: tuple[int, ...]
    lines: tuple[int, ...]
    controlled: tuple[int, ...]
    action_set: TopologyActionSet = field(repr=False)
    obs_index: np.ndarray = field(repr=False)
    obs_scale: np.ndarray = field(repr=False)
    units: ContinuousActionSet | None = field(default=None, repr=False)

    @property
    def actions(self) -> list:
        """The grid2op actions of the action set (index 0 = do-nothing)."""
        return self.action_set.actions

    @property
    def action_substation(self) -> np.ndarray:
        """Substation of each action, -1 for do-nothing."""
        return self.action_set.substations

    @property
    def n_actions(self) -> int:
        return self.action_set.n

    @property
    def n_features(self) -> int:
        """Network input size: masked observation + one-hot of the picked substation."""
        return len(self.obs_index) + len(self.controlled)

    def features(self, obs_vect: np.ndarray, substation: int = -1) -> np.ndarray:
        """Scaled masked observation and the one-hot of ``substation`` (zeros if not ours)."""
        onehot = np.zeros(len(self.controlled), dtype=np.float32)
        if substation in self.controlled:
            onehot[self.controlled.index(substation)] = 1.0
        return np.concatenate([self._masked(obs_vect), onehot])

    @property
    def n_unit_features(self) -> int:
        """Input size of the continuous agent: masked observation + 2 per storage unit."""
        return len(self.obs_index) + 2 * (0 if self.units is None else len(self.units.storage))

    def unit_features(self, obs_vect: np.ndarray, obs) -> np.ndarray:
        """What the continuous agent sees: the scaled masked observation, then per storage
        unit of its box its state of charge (``storage_charge / storage_Emax``) and its power
        (``storage_power / storage_max_p_absorb``)."""
        s = np.zeros(0, dtype=np.int64) if self.units is None else self.units.storage
        cls = type(obs)
        soc = np.asarray(obs.storage_charge, dtype=float)[s] / np.maximum(cls.storage_Emax[s], 1e-9)
        p = np.asarray(obs.storage_power, dtype=float)[s] / np.maximum(
            cls.storage_max_p_absorb[s], 1e-9
        )
        extra = np.nan_to_num(np.concatenate([soc, p]).astype(np.float32), nan=0.0)
        return np.concatenate([self._masked(obs_vect), extra])

    def _masked(self, obs_vect: np.ndarray) -> np.ndarray:
        x = np.asarray(obs_vect, dtype=np.float32)[self.obs_index] / self.obs_scale
        return np.nan_to_num(x, nan=0.0, posinf=10.0, neginf=-10.0)

    def action_mask(self, substation: int = -1, cooldown=None) -> np.ndarray:
        """Do-nothing plus the actions on ``substation`` (all actions if -1), without those on
        substations in cooldown when ``cooldown`` (``obs.time_before_cooldown_sub``) is given."""
        mask = self.action_set.mask(substation)
        if cooldown is not None:
            subs = self.action_substation
            free = np.asarray(cooldown)[np.maximum(subs, 0)] == 0
            mask = mask & (free | (subs < 0))
        return mask


def _attribute_slices(env) -> dict[str, tuple[int, int]]:
    names = list(env.observation_space.attr_list_vect)
    sizes = np.asarray(env.observation_space.shape, dtype=int)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    return {n: (int(s), int(z)) for n, s, z in zip(names, starts, sizes)}


def observation_mask(env, substations, lines, attrs=THESIS_ATTRS, complete: bool = False):
    """``(index, scale)`` of the kept entries of ``obs.to_vect()`` for a cluster.

    ``complete=True`` keeps every element of ``attrs`` (the "complete observation" variant).
    """
    slices = _attribute_slices(env)
    subs = np.asarray(sorted(substations), dtype=int)
    topo_sub = np.repeat(np.arange(env.n_sub), env.sub_info)
    select = {
        "gen": np.isin(env.gen_to_subid, subs),
        "load": np.isin(env.load_to_subid, subs),
        "line": np.isin(np.arange(env.n_line), lines),
        "sub": np.isin(np.arange(env.n_sub), subs),
        "topo": np.isin(topo_sub, subs),
    }
    index, scale = [], []
    for attr in attrs:
        if attr not in slices:
            raise UserError(
                f"observation attribute {attr!r} does not exist in this grid2op version"
            )
        start, size = slices[attr]
        if attr in CALENDAR or size == 0:
            keep = np.ones(size, dtype=bool)
        elif complete:
            keep = np.ones(size, dtype=bool)
        elif attr in GEN_ATTRS:
            keep = select["gen"]
        elif attr == "load_p":
            keep = select["load"]
        elif attr in LINE_ATTRS:
            keep = select["line"]
        elif attr == "time_before_cooldown_sub":
            keep = select["sub"]
        elif attr == "topo_vect":
            keep = select["topo"]
        else:
            raise UserError(f"no cluster rule for observation attribute {attr!r}")
        idx = start + np.flatnonzero(keep)
        index.append(idx)
        scale.append(np.full(len(idx), SCALES.get(attr, 1.0), dtype=np.float32))
    return np.concatenate(index).astype(np.int64), np.concatenate(scale)


class Decomposition:
    """Per-cluster observation masks and action sets of a grid2op env under a factorization.

    Args:
        env: the grid2op env (only its structure is read).
        factorization: a `FactorizationFile` (see `load_factorization`).
        complete_obs: every cluster sees every kept attribute of the whole grid.
        min_elements: substations with at least this many elements are controllable (thesis: 4).
        action_file: a reduced action set (`distributed_grid2op.actions.load_action_file`):
            each cluster gets its topologies instead of every unitary one.
        topology: clusters control the topology of their substations (False: do-nothing is
            their only topology action and no substation is controllable).
        continuous: continuous kinds (`continuous.KINDS`) each cluster controls on its own
            units (a box set per cluster that owns some; `UserError` if the env does not
            support a kind or no cluster owns a unit of them).
    """

    def __init__(
        self,
        env,
        factorization,
        *,
        complete_obs: bool = False,
        min_elements: int = 4,
        action_file=None,
        topology: bool = True,
        continuous=(),
    ):
        if factorization.n_sub != env.n_sub or factorization.n_line != env.n_line:
            raise UserError(
                f"{factorization.source}: factorization covers {factorization.n_sub} substations and "
                f"{factorization.n_line} lines, the grid has {env.n_sub} and {env.n_line}"
            )
        self.factorization = factorization
        self.complete_obs = bool(complete_obs)
        self.min_elements = int(min_elements)
        self.action_file = action_file
        self.topology, self.continuous = bool(topology), tuple(continuous)
        controllable = set(grid.controllable_substations(env, min_elements) if topology else ())
        units = factorization
        if self.continuous:
            ContinuousActionSet.from_env(env, kinds=self.continuous)  # kinds the env supports
            units = factorization.with_units(type(env).gen_to_subid, type(env).storage_to_subid)
        self.clusters: list[ClusterView] = []
        for i, (c, u) in enumerate(zip(factorization.clusters, units.clusters)):
            box = None
            if self.continuous:
                box = ContinuousActionSet.from_env(env, u.generators, u.storages, self.continuous,
                                                   required=False)  # fmt: skip
            controlled = tuple(s for s in sorted(c.substations) if s in controllable)
            actions = TopologyActionSet.from_env(env, controlled, action_file)
            index, scale = observation_mask(env, c.substations, c.lines, complete=complete_obs)
            self.clusters.append(
                ClusterView(
                    f"cluster_{i}",
                    tuple(c.substations),
                    tuple(c.lines),
                    controlled,
                    actions,
                    index,
                    scale,
                    box,
                )
            )
        # the picker's substations: controlled ones with at least one topology in their
        # cluster's set (a reduced set may have none for some: a turn there is a lost decision)
        self.owner = {s: i for i, cv in enumerate(self.clusters) for s in cv.controlled
                      if cv.action_set.mask(s)[1:].any()}  # fmt: skip
        self.controllable = sorted(self.owner)
        if topology and not self.controllable:
            raise UserError(
                "no cluster controls any substation (none has more than 3 elements"
                + (" and an action in the action set)" if action_file is not None else ")")
            )
        if self.continuous and not self.unit_clusters:
            raise UserError(f"no cluster owns a unit to control ({', '.join(self.continuous)})")

    @property
    def unit_clusters(self) -> list[int]:
        """Indices of the clusters with a continuous box set (each has a continuous agent)."""
        return [i for i, c in enumerate(self.clusters) if c.units is not None]

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.clusters]

    def joint_action(self, env, choices: dict[int, int]):
        """One grid2op action combining cluster ``i``'s action ``choices[i]`` for each ``i``."""
        act = env.action_space()
        for i, a in choices.items():
            act = act + self.clusters[i].actions[a]
        return act

    def required_params(self) -> dict:
        """grid2op parameters that make a joint action of every cluster legal."""
        n = len(self.clusters)
        return {"MAX_SUB_CHANGED": n, "MAX_LINE_STATUS_CHANGED": max(1, n)}

    def describe(self) -> dict:
        """JSON summary: per cluster its ids, controlled substations and sizes."""
        return {
            "complete_obs": self.complete_obs,
            "clusters": [
                {"name": c.name, "substations": list(c.substations), "lines": list(c.lines),
                 "controlled": list(c.controlled), "n_actions": c.n_actions, "n_obs": len(c.obs_index),
                 **({} if c.units is None else {"units": c.units.describe()})}
                for c in self.clusters
            ],
        }  # fmt: skip


# ---- PettingZoo / gymnasium views of the decision loop ------------------------------------------


class _Episodes:
    """The decision loop of a decomposition, with the scenario draw of the env views."""

    def __init__(self, env, decomposition, *, danger=DEFAULT_DANGER, rank_by="max", scenarios=None,
                 reconnect: str = DEFAULT_RECONNECT):  # fmt: skip
        controller = Controller(env, decomposition.owner, danger=danger, rank_by=rank_by,
                                reconnect=reconnect)  # fmt: skip
        self.loop = DecisionLoop(env, controller)
        self.scenarios = list(scenarios) if scenarios is not None else None
        self.rng = np.random.default_rng(0)

    def reset(self, seed=None, options=None, *, advance: bool = True) -> float:
        """Reset the env (scenario drawn from ``scenarios`` with the seeded generator); with
        ``advance``, play rule steps up to the first turn and return their summed reward."""
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        opts = dict(options or {})
        if self.scenarios is not None and "time serie id" not in opts:
            opts["time serie id"] = int(self.rng.choice(self.scenarios))
        self.loop.reset(seed=seed, options=opts)
        return self.loop.advance() if advance else 0.0

    def act(self, cluster: ClusterView, index: int) -> float:
        """Play action ``index`` of ``cluster`` at the pending turn, then run to the next one."""
        turn = self.loop.pending
        decision = Decision(cluster.name, int(index), turn.substation, turn.cluster)
        action = cluster.action_set.to_grid2op(index, self.loop.obs)
        reward = self.loop.apply(action, decision)
        return reward + self.loop.advance()


class _AgentSpaces:
    """Per-agent spaces and the no-op render / close of the PettingZoo views."""

    _obs_spaces: dict
    _act_spaces: dict

    def observation_space(self, agent):
        return self._obs_spaces[agent]

    def action_space(self, agent):
        return self._act_spaces[agent]

    def render(self):
        return None

    def close(self):
        pass


class DecomposedAECEnv(_AgentSpaces, AECEnv):
    """PettingZoo AEC env: one agent per cluster; the acting agent is the picked one's owner.

    Observations are ``{"observation": float32 features, "action_mask": int8 mask}``; the
    mask allows do-nothing and the actions on the picked substation (only do-nothing for an
    agent that is not acting). Rewards: the env reward of every grid step, to every agent,
    accumulated until the agent acts again.
    """

    metadata = {"render_modes": [], "name": "decomposed_grid2op_v0", "is_parallelizable": False}

    def __init__(
        self,
        env,
        decomposition: Decomposition,
        *,
        danger: float = DEFAULT_DANGER,
        rank_by: str = "max",
        scenarios=None,
        reconnect: str = DEFAULT_RECONNECT,
    ):
        self.episodes = _Episodes(env, decomposition, danger=danger, rank_by=rank_by,
                                  scenarios=scenarios, reconnect=reconnect)  # fmt: skip
        self.loop = self.episodes.loop
        self.dec = decomposition
        self.possible_agents = decomposition.names
        self._index = {n: i for i, n in enumerate(self.possible_agents)}
        self._obs_spaces = {
            c.name: spaces.Dict({
                "observation": spaces.Box(-np.inf, np.inf, (c.n_features,), np.float32),
                "action_mask": spaces.Box(0, 1, (c.n_actions,), np.int8),
            })
            for c in decomposition.clusters
        }  # fmt: skip
        self._act_spaces = {c.name: spaces.Discrete(c.n_actions) for c in decomposition.clusters}
        self.render_mode = None
        self.agents = []

    def observe(self, agent):
        i = self._index[agent]
        cv = self.dec.clusters[i]
        acting = self.loop.pending is not None and self.loop.pending.cluster == i
        sub = self.loop.pending.substation if acting else -1
        mask = cv.action_mask(sub) if acting else np.eye(1, cv.n_actions, 0, dtype=bool)[0]
        return {
            "observation": cv.features(self.loop.obs.to_vect(), sub),
            "action_mask": mask.astype(np.int8),
        }

    def reset(self, seed=None, options=None):
        self.agents = list(self.possible_agents)
        self.rewards = {a: 0.0 for a in self.agents}
        self._cumulative_rewards = {a: 0.0 for a in self.agents}
        self.infos = {a: {} for a in self.agents}
        reward = self.episodes.reset(seed=seed, options=options)
        self._after_advance(reward)

    def _after_advance(self, reward: float) -> None:
        self.rewards = {a: reward for a in self.agents}
        self.terminations = {a: self.loop.terminated for a in self.agents}
        self.truncations = {a: self.loop.truncated for a in self.agents}
        if self.loop.pending is not None:
            self.agent_selection = self.possible_agents[self.loop.pending.cluster]
        else:
            self.agent_selection = self.agents[0]
        for a in self.agents:
            self.infos[a] = {
                "substation": -1 if self.loop.pending is None else self.loop.pending.substation
            }
        self._accumulate_rewards()

    def step(self, action):
        agent = self.agent_selection
        if self.terminations[agent] or self.truncations[agent]:
            self._was_dead_step(action)
            if self.agents:
                self.agent_selection = self.agents[0]
            return
        self._cumulative_rewards[agent] = 0.0
        cluster = self.dec.clusters[self.loop.pending.cluster]
        reward = self.episodes.act(cluster, 0 if action is None else int(action))
        self._after_advance(reward)


def make_gym_env(env, decomposition: Decomposition, **kwargs):
    """`CentralizedGymEnv` for a one-cluster decomposition (see `Decomposition`)."""
    return CentralizedGymEnv(env, decomposition, **kwargs)


class CentralizedGymEnv(gym.Env):
    """gymnasium single-agent view of a one-cluster decomposition (the centralised case).

    ``step`` takes an index of the cluster's action set and returns the reward summed until
    the next decision; ``action_masks()`` (sb3-contrib convention) and ``info["action_mask"]``
    give the legal actions for the picked substation.
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        env,
        decomposition: Decomposition,
        *,
        danger: float = DEFAULT_DANGER,
        rank_by: str = "max",
        scenarios=None,
        reconnect: str = DEFAULT_RECONNECT,
    ):
        if len(decomposition.clusters) != 1:
            raise UserError(
                f"the gymnasium view needs one cluster, got {len(decomposition.clusters)}; "
                "use factorization.centralized()"
            )
        self.episodes = _Episodes(env, decomposition, danger=danger, rank_by=rank_by,
                                  scenarios=scenarios, reconnect=reconnect)  # fmt: skip
        self.loop = self.episodes.loop
        self.cluster = decomposition.clusters[0]
        self.observation_space = spaces.Box(-np.inf, np.inf, (self.cluster.n_features,), np.float32)
        self.action_space = spaces.Discrete(self.cluster.n_actions)

    def _obs(self):
        sub = -1 if self.loop.pending is None else self.loop.pending.substation
        return self.cluster.features(self.loop.obs.to_vect(), sub), {
            "action_mask": self.action_masks(),
            "substation": sub,
        }

    def action_masks(self) -> np.ndarray:
        sub = -1 if self.loop.pending is None else self.loop.pending.substation
        return self.cluster.action_mask(sub)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.episodes.reset(seed=seed, options=options)
        return self._obs()

    def step(self, action):
        reward = self.episodes.act(self.cluster, int(action))
        obs, info = self._obs()
        return obs, reward, self.loop.terminated, self.loop.truncated, info


class DecomposedParallelEnv(_AgentSpaces, ParallelEnv):
    """PettingZoo parallel env of the continuous agents: one agent per cluster owning units
    (`Decomposition.unit_clusters`), all acting at every grid step.

    An agent's action is a vector in [-1, 1]^d of its box set (`ClusterView.units`); the
    agents' vectors are translated together (`continuous.joint_action`), so any action in
    the spaces is legal. Its observation is `ClusterView.unit_features`. The rest of the step
    is the rules' (`loop.Controller`: reconnection, do nothing while safe); at a danger turn
    ``topology(obs, turn) -> grid2op action`` decides (None: do-nothing), e.g. a trained
    agent's topology learners. Every agent gets the step's `cost.transition_reward`
    (``-sum_k weight_k * term_k``; ``-game_over_cost`` for the step that ends in a game over).
    ``infos[agent]`` carry the step's ``"decision"`` (``""``, ``"reconnect"`` or the topology
    policy's), ``"costs"`` (`cost.step_costs`; NaN after a game over) and ``"illegal"``
    (grid2op refused the action).
    """

    metadata = {"render_modes": [], "name": "decomposed_units_v0"}

    def __init__(
        self,
        env,
        decomposition: Decomposition,
        *,
        danger: float = DEFAULT_DANGER,
        rank_by: str = "max",
        reconnect: str = DEFAULT_RECONNECT,
        scenarios=None,
        topology=None,
        cost_weights: dict[str, float] | None = None,
        game_over_cost: float = cost.GAME_OVER_COST,
    ):
        if not decomposition.unit_clusters:
            raise UserError(
                "no cluster has a continuous agent: make the Decomposition with "
                "continuous=('redispatch', 'curtailment', 'storage') or a subset"
            )
        self.episodes = _Episodes(env, decomposition, danger=danger, rank_by=rank_by,
                                  scenarios=scenarios, reconnect=reconnect)  # fmt: skip
        self.loop, self.dec, self.topology = self.episodes.loop, decomposition, topology
        self.weights = cost.cost_weights(cost_weights)
        self.game_over_cost = float(game_over_cost)
        self.units = [decomposition.clusters[i] for i in decomposition.unit_clusters]
        self.possible_agents = [c.name for c in self.units]
        self._obs_spaces = {
            c.name: spaces.Box(-np.inf, np.inf, (c.n_unit_features,), np.float32)
            for c in self.units
        }
        self._act_spaces = {c.name: c.units.space for c in self.units}
        self.render_mode = None
        self.agents = []

    def _observations(self) -> dict:
        obs = self.loop.obs
        vect = obs.to_vect()
        return {c.name: c.unit_features(vect, obs) for c in self.units}

    def reset(self, seed=None, options=None):
        self.agents = list(self.possible_agents)
        self.episodes.reset(seed=seed, options=options, advance=False)
        return self._observations(), {a: {} for a in self.agents}

    def step(self, actions: dict):
        missing = [a for a in self.agents if a not in actions]
        if missing:
            raise UserError(f"every continuous agent acts at every step; missing {missing}")
        before = self.loop.obs
        choices = [actions[c.name] for c in self.units]
        action = joint_action([c.units for c in self.units], choices, before)
        what = self.loop.controller.decide(before)
        if isinstance(what, Turn):
            topo = (
                self.loop.env.action_space()
                if self.topology is None
                else self.topology(before, what)
            )
            decision = Decision("topology" if self.topology is not None else "", -1,
                                what.substation, what.cluster)  # fmt: skip
        else:
            topo, decision = what.action, what.decision
        self.loop.step(topo + action, decision, units={"actions": choices})
        after, done, over = self.loop.obs, self.loop.done, self.loop.terminated
        # a game-over observation holds no grid state: no cost terms (NaN, as step_metrics)
        terms = dict.fromkeys(cost.TERMS, np.nan) if over else cost.step_costs(before, after)
        reward = cost.transition_reward(before, after, over, self.weights, self.game_over_cost,
                                        terms=terms)  # fmt: skip
        info = {"decision": decision.agent, "costs": terms,
                "illegal": bool(self.loop.info.get("is_illegal", False))}  # fmt: skip
        agents = self.agents
        out = (
            self._observations(),
            {a: reward for a in agents},
            {a: self.loop.terminated for a in agents},
            {a: self.loop.truncated for a in agents},
            {a: dict(info) for a in agents},
        )
        if done:
            self.agents = []
        return out


class UnitsGymEnv(gym.Env):
    """gymnasium view of the continuous agent of a one-cluster decomposition (the
    centralised continuous case): `DecomposedParallelEnv` with its single agent. Takes the
    same arguments."""

    metadata = {"render_modes": []}

    def __init__(self, env, decomposition: Decomposition, **kwargs):
        if len(decomposition.clusters) != 1:
            raise UserError(
                f"the gymnasium view needs one cluster, got {len(decomposition.clusters)}; "
                "use factorization.centralized()"
            )
        self.parallel = DecomposedParallelEnv(env, decomposition, **kwargs)
        self.agent = self.parallel.possible_agents[0]
        self.observation_space = self.parallel.observation_space(self.agent)
        self.action_space = self.parallel.action_space(self.agent)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        obs, infos = self.parallel.reset(seed=seed, options=options)
        return obs[self.agent], infos[self.agent]

    def step(self, action):
        obs, rew, term, trunc, info = self.parallel.step({self.agent: action})
        a = self.agent
        return obs[a], rew[a], term[a], trunc[a], info[a]
