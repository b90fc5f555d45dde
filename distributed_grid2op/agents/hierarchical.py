"""The hierarchical agent: rules on top, one learner per cluster below.

Reconnect a disconnected line when legal; do nothing while max rho < danger threshold;
otherwise the CAPA-style picker (`loop.Controller`) chooses a substation and the learner of
the cluster owning it chooses an action of its action set (do-nothing and that substation's
topologies), or, with ``scope="cluster"``, the picker chooses a cluster (the one owning the
most loaded substation) and its learner chooses among do-nothing and the topologies of all
its substations out of cooldown; its imitation teacher is then the budgeted greedy search
over the cluster's whole set (the reduced-set expert restricted to the cluster). With
``scope="grid"`` every cluster proposes at a danger step (do-nothing or one of its topologies
out of cooldown) and the cluster that most wants to act plays its proposal (`decide`); the
teacher is then the reduced-set expert over the whole grid, its choice the label of the
cluster owning it and do-nothing the label of the others (`grid_expert`). With one cluster (``factorization.centralized()``) it is the centralised
baseline. It is a `loop.LoopAgent` (a grid2op ``BaseAgent``, so the grid2op ``Runner`` can
evaluate it) with ``learn / predict / save / load``; the learner is named by its registry key
(`agents.learners`), PPO by default.

Continuous control (``actions`` with redispatch, curtailment or storage): every cluster that
owns units of those kinds also has a continuous agent (``unit_learner``, SAC by default) over
its box set (`continuous.ContinuousActionSet`), which acts at EVERY step (`every_step`); the
step's grid2op action is the rules' or topology agent's action plus the continuous agents'
joint action (`continuous.joint_action`: their set-points made legal together). Topology may
be switched off (``actions`` without ``"topology"``): then only the continuous agents act.
The centralised variant is one cluster owning every unit.
"""

from __future__ import annotations

import io
import json
import pickle
import warnings
import zipfile
from pathlib import Path

import numpy as np
import torch

from distributed_grid2op import cost
from distributed_grid2op.agents.learners import learner_entry, make_learner
from distributed_grid2op.checkpoints import META_FILE, WEIGHTS_FILE, find_agent
from distributed_grid2op.continuous import KINDS, joint_action, supported_kinds
from distributed_grid2op.cost import GAME_OVER_COST
from distributed_grid2op.decomposed import Decomposition
from distributed_grid2op.envs import env_metadata
from distributed_grid2op.errors import UserError
from distributed_grid2op.factorization_file import load_factorization, parse_factorization
from distributed_grid2op.io import write_bytes, write_json
from distributed_grid2op.loop import (
    DEFAULT_DANGER,
    DEFAULT_RECONNECT,
    Controller,
    Decision,
    LoopAgent,
    Turn,
)
from distributed_grid2op.scoring import TIE, best_index, score_actions, simulated_max_rho
from distributed_grid2op.seeding import child_seeds

AGENT_FORMAT = 2  # 2: "learner" + "learner_config" (format 1: "ppo"), thermal limits recorded
#: format of an agent with continuous agents: adds "actions", "unit_learner",
#: "unit_learner_config", "unit_action_sets", "unit_features" (topology-only agents stay 2)
UNITS_AGENT_FORMAT = 3
READABLE_FORMATS = (1, 2, 3)
#: what an agent may control: topology and the continuous kinds
ACTION_KINDS = ("topology", *KINDS)


def has_topology_actions(env) -> bool:
    """Whether the env's actions can set buses (topology actions)."""
    return "set_bus" in env.action_space.actionClass.authorized_keys


def default_actions(env, factorization) -> tuple[str, ...]:
    """What an agent controls when not told (``--actions`` not given): topology when the env
    has set-bus actions, plus the continuous kinds the env supports
    (`continuous.supported_kinds`) when the factorization assigns units to its clusters
    (format 2) or the env has no topology action. So a format-1 factorization on a grid with
    topology actions (the thesis case14 partition on ``l2rpn_case14_sandbox``) controls
    topology only, as before continuous control existed."""
    topo = has_topology_actions(env)
    continuous = supported_kinds(env) if (factorization.has_units or not topo) else ()
    return (("topology",) if topo else ()) + tuple(continuous)


def check_actions(env, actions) -> tuple[str, ...]:
    """``actions`` (kinds of `ACTION_KINDS`) in canonical order; `UserError` when one is
    unknown, none is given, or the env cannot do one."""
    actions = tuple(actions)
    unknown = [a for a in actions if a not in ACTION_KINDS]
    if unknown or not actions:
        raise UserError(f"unknown action kind(s) {unknown or actions!r}; choose from "
                        f"{', '.join(ACTION_KINDS)}")  # fmt: skip
    if "topology" in actions and not has_topology_actions(env):
        raise UserError(f"env {env.env_name!r} has no topology (set-bus) actions")
    missing = [k for k in actions if k in KINDS and k not in supported_kinds(env)]
    if missing:
        raise UserError(f"env {env.env_name!r} does not support {', '.join(missing)} actions "
                        f"(it supports: {', '.join(supported_kinds(env)) or 'none'})")  # fmt: skip
    return tuple(a for a in ACTION_KINDS if a in actions)


def grid_signature(env) -> dict:
    """What makes two envs the same grid for an agent: sizes and element layout."""
    return {
        "n_sub": int(env.n_sub),
        "n_line": int(env.n_line),
        "sub_info": [int(x) for x in env.sub_info],
        "line_or_to_subid": [int(x) for x in env.line_or_to_subid],
        "line_ex_to_subid": [int(x) for x in env.line_ex_to_subid],
    }


def thermal_limits(env) -> list[float]:
    """The env's thermal limits (A), rounded (read from its backend: also after a game over)."""
    from grid2op.Exceptions import Grid2OpException

    try:
        limits = env.get_thermal_limit()
    except Grid2OpException:  # game over: the env refuses, its backend still knows them
        limits = env.backend.get_thermal_limit()
    return [round(float(x), 6) for x in limits]


class HierarchicalAgent(LoopAgent):
    """Rules + CAPA picker + independent per-cluster learners.

    Args:
        env: grid2op env (its structure fixes the masks and action sets).
        factorization: a `FactorizationFile`, a path, or None (thesis case14 partition).
        centralized: merge every cluster into one (the centralised baseline).
        complete_obs: every cluster sees the whole grid's kept attributes.
        danger: act only when max rho >= this.
        rank_by: picker ranking, ``"max"`` (highest, then mean loading) or ``"mean"``.
        learner: registry key of the cluster learners (`agents.learners.LEARNERS`).
        config: the learner's hyper-parameters (its config dataclass; default: its defaults).
        seed: initialises the learners' networks (one child seed each).
        top_k: when acting greedily (evaluation), simulate do-nothing and the ``top_k`` most
            probable actions of the policy and take the one with the lowest simulated max rho
            (`scoring`). 0 (default): the pure learned policy. Off in training.
        spec: the `EnvSpec` the env was made from (recorded in the metadata).
        action_file: a reduced action set (``actions.json``) for the clusters.
        reconnect: the reconnection rule (`loop.RECONNECT_RULES`, see `loop.Controller`).
        actions: what the agent controls (`ACTION_KINDS`; None: `default_actions`).
        unit_learner: registry key of the continuous agents' learner (a box learner).
        unit_config: its hyper-parameters (default: its defaults).
        cost_weights: weights of the continuous agents' reward (`cost.cost_weights`; the
            reward is `cost.transition_reward`, the same for every cluster: the grid's cost).
        game_over_cost: that reward's penalty for a game over.
        scope: what a decision covers (`loop.SCOPES`): ``"substation"`` (the picked
            substation's topologies), ``"cluster"`` (every topology of the picked cluster) or
            ``"grid"`` (every cluster proposes, one acts).
        revert: below this max rho, split substations go back to their reference topology
            (a rule step, `loop.Controller`; None: never).
        expert_budget: simulations per imitation label with ``scope="cluster"`` or ``"grid"``
            (the topologies nearest the overloads first, `actions.search.search_order`).

    After each `act`, ``last_decision`` is ``{"agent", "action_id", "substation"}``.
    """

    def __init__(
        self,
        env,
        factorization=None,
        *,
        centralized: bool = False,
        complete_obs: bool = False,
        danger: float = DEFAULT_DANGER,
        rank_by: str = "max",
        learner: str = "ppo",
        config=None,
        seed: int = 0,
        top_k: int = 0,
        spec=None,
        action_file=None,
        reconnect: str = DEFAULT_RECONNECT,
        actions=None,
        unit_learner: str = "sac",
        unit_config=None,
        cost_weights: dict | None = None,
        game_over_cost: float = GAME_OVER_COST,
        scope: str = "substation",
        revert: float | None = None,
        expert_budget: int = 100,
    ):
        if factorization is None or isinstance(factorization, str | Path):
            factorization = load_factorization(factorization, env=env)
        if centralized:
            factorization = factorization.centralized()
        self.env = env
        self.factorization = factorization
        self.centralized, self.complete_obs = bool(centralized), bool(complete_obs)
        # not `self.seed`: that is grid2op BaseAgent.seed(), which its Runner calls
        self.danger, self.rank_by, self.init_seed = float(danger), rank_by, int(seed)
        self.top_k, self.reconnect = int(top_k), reconnect
        self.scope, self.revert = scope, None if revert is None else float(revert)
        self.expert_budget = int(expert_budget)
        self.kept_actions: list[list[int]] | None = None  # action-set pruning (see `prune`)
        self.learner_name = learner
        self.config = config or learner_entry(learner).config()
        self.action_file = action_file
        self.actions = check_actions(
            env, default_actions(env, factorization) if actions is None else actions
        )
        continuous = tuple(a for a in self.actions if a in KINDS)
        self.decomposition = Decomposition(
            env, factorization, complete_obs=complete_obs, action_file=action_file,
            topology="topology" in self.actions, continuous=continuous,
        )  # fmt: skip
        super().__init__(env.action_space, self._controller())
        clusters = self.decomposition.clusters
        seeds = child_seeds(seed, 2 * len(clusters))  # topology learners, then continuous ones
        self.learners = [
            make_learner(learner, c.n_features, c.action_set, self.config, seed=s)
            for c, s in zip(clusters, seeds)
            if "topology" in self.actions
        ]
        self.unit_learner_name = unit_learner
        self.cost_weights, self.game_over_cost = (
            cost.cost_weights(cost_weights),
            float(game_over_cost),
        )
        self.unit_config = (
            (unit_config or learner_entry(unit_learner).config()) if continuous else None
        )
        #: clusters with a continuous agent, and their learners (same order)
        self.unit_clusters = self.decomposition.unit_clusters
        self.unit_learners = [
            make_learner(unit_learner, clusters[i].n_unit_features, clusters[i].units,
                         self.unit_config, seed=seeds[len(clusters) + i])
            for i in self.unit_clusters
        ]  # fmt: skip
        self.env_meta = {**env_metadata(env, spec), **grid_signature(env),
                         "thermal_limit": thermal_limits(env)}  # fmt: skip

    def _controller(self) -> Controller:
        """The rules and picker; the picker skips substations left with no topology after
        pruning (`prune`), whose turn could only be do-nothing."""
        owner = {s: i for s, i in self.decomposition.owner.items()
                 if self.action_mask(i, s)[1:].any()}  # fmt: skip
        return Controller(self.env, owner, danger=self.danger, rank_by=self.rank_by,
                          reconnect=self.reconnect, scope=self.scope, revert=self.revert)  # fmt: skip

    def set_rules(self, danger: float | None = None, reconnect: str | None = None):
        """Act from another danger threshold or reconnection rule (evaluation's options)."""
        if danger is not None:
            self.danger = float(danger)
        if reconnect is not None:
            self.reconnect = reconnect
        self.controller = self._controller()
        return self

    # ---- the continuous agents, every step ----------------------------------------------
    def unit_reward(self, obs, next_obs, game_over: bool) -> float:
        """The continuous agents' reward of one step (`cost.transition_reward` with this
        agent's ``cost_weights`` and ``game_over_cost``)."""
        return cost.transition_reward(obs, next_obs, game_over, self.cost_weights,
                                      self.game_over_cost)  # fmt: skip

    def every_step(self, *, deterministic: bool = True, rng=None):
        """The continuous agents' policy for `loop.DecisionLoop` (None without them): called
        with an observation, it returns ``(grid2op action, record)``, the action made of
        every continuous agent's choice (`continuous.joint_action`), the record
        ``{"features": [...], "actions": [...]}`` per agent (what learning needs). Sampling
        noise comes from ``rng`` when it is a ``torch.Generator``."""
        if not self.unit_learners:
            return None
        clusters = [self.decomposition.clusters[i] for i in self.unit_clusters]

        def act(obs):
            vect = obs.to_vect()
            xs = [c.unit_features(vect, obs) for c in clusters]
            choices = [
                learner.act(x, rng=rng, deterministic=deterministic)[0]
                for learner, x in zip(self.unit_learners, xs)
            ]
            action = joint_action([c.units for c in clusters], choices, obs)
            return action, {"features": xs, "actions": choices}

        return act

    # ---- the decision at a turn ---------------------------------------------------------
    def decide(self, observation, turn: Turn, *, deterministic: bool = True, rng=None):
        """The cluster of ``turn`` chooses among do-nothing and its substation's actions (all its
        substations' out of cooldown for a cluster turn): ``(grid2op action, Decision)`` with
        what learning needs (features, mask, logp, value)."""
        if turn.cluster == -1:
            return self._decide_grid(observation, deterministic=deterministic, rng=rng)
        i, sub = turn.cluster, turn.substation
        cv = self.decomposition.clusters[i]
        x, mask = cv.features(observation.to_vect(), sub), self.turn_mask(observation, turn)
        a, logp, value = self.learners[i].act(x, mask, rng=rng, deterministic=deterministic)
        n_sim = 0
        if deterministic and self.top_k > 0:
            a, n_sim = self._top_k_choice(observation, i, x, mask)
        if sub == -1:  # a cluster turn: record the substation acted on
            sub = int(cv.action_substation[int(a)])
        decision = Decision(cv.name, int(a), sub, i, x, mask, float(logp), float(value), n_sim)
        return cv.action_set.to_grid2op(a, observation), decision

    def _decide_grid(self, observation, *, deterministic: bool = True, rng=None):
        """A grid turn: every cluster with a legal topology proposes an action of its policy
        (the most probable one, or a sample); among the clusters that propose to act, the one
        whose policy gives do-nothing the lowest probability plays its proposal (the first on
        ties); do-nothing when none proposes to act. ``Decision.proposals`` keeps every
        cluster's proposal (each learner learns from its own)."""
        vect, cooldown = observation.to_vect(), observation.time_before_cooldown_sub
        proposals, best, best_bid = [], None, -1.0
        for i, cv in enumerate(self.decomposition.clusters):
            mask = self.action_mask(i, -1, cooldown)
            if not mask[1:].any():
                continue
            x = cv.features(vect, -1)
            learner = self.learners[i]
            a, logp, value = learner.act(x, mask, rng=rng, deterministic=deterministic)
            bid = 1.0 - float(learner.probabilities(x, mask)[0])
            proposals.append({"cluster": i, "features": x, "mask": mask, "action": int(a),
                              "logp": float(logp), "value": float(value)})  # fmt: skip
            if int(a) != 0 and bid > best_bid:
                best, best_bid = proposals[-1], bid
        if best is None:  # nobody acts: the record names the cluster most inclined to
            return self.action_space({}), Decision(proposals=proposals)
        i, a = best["cluster"], best["action"]
        cv, n_sim = self.decomposition.clusters[i], 0
        if deterministic and self.top_k > 0:
            a, n_sim = self._top_k_choice(observation, i, best["features"], best["mask"])
        decision = Decision(cv.name, int(a), int(cv.action_substation[int(a)]), i,
                            best["features"], best["mask"], best["logp"], best["value"], n_sim,
                            proposals=proposals)  # fmt: skip
        return cv.action_set.to_grid2op(a, observation), decision

    def grid_expert(self, observation) -> tuple[list[int], list[np.ndarray], int]:
        """The imitation teacher of a grid turn: the reduced-set expert's budgeted search over
        every cluster's topologies out of cooldown (nearest the overloads first,
        ``expert_budget`` simulations with do-nothing's). Returns per cluster its label (the
        expert's choice for the cluster owning it, do-nothing for the others) and its scores
        (simulated max rho, ``inf`` where not simulated; the others' only do-nothing's, so
        that soft labels leave them on do-nothing), and the simulations made."""
        from distributed_grid2op.actions.search import search_order

        clusters = self.decomposition.clusters
        cooldown = observation.time_before_cooldown_sub
        owner, local = [], []
        for i in range(len(clusters)):
            legal = np.flatnonzero(self.action_mask(i, -1, cooldown)[1:]) + 1
            owner += [i] * len(legal)
            local += list(legal)
        owner, local = np.asarray(owner, dtype=np.int64), np.asarray(local, dtype=np.int64)
        subs = np.asarray([clusters[i].action_substation[j] for i, j in zip(owner, local)],
                          dtype=np.int64)  # fmt: skip
        order = search_order(observation, subs, self.env, danger=self.danger)
        order = order[: max(0, self.expert_budget - 1)]
        dn = simulated_max_rho(observation, self.action_space({}))
        scores = [np.full(c.n_actions, np.inf) for c in clusters]
        for sc in scores:
            sc[0] = dn
        for k in order:
            i, j = owner[k], local[k]
            scores[i][j] = simulated_max_rho(observation, clusters[i].actions[j])
        best = (-1, dn)  # (cluster, score): the first strictly better than do-nothing by TIE
        for k in order:
            if scores[owner[k]][local[k]] < best[1] - TIE:
                best = (int(owner[k]), float(scores[owner[k]][local[k]]))
        labels = [0] * len(clusters)
        if best[0] >= 0:
            i = best[0]
            labels[i] = best_index(scores[i], default=0, tie=TIE)
            for j, sc in enumerate(scores):
                if j != i:
                    sc[1:] = np.inf
        else:
            for sc in scores:
                sc[1:] = np.inf
        return labels, scores, 1 + len(order)

    def turn_mask(self, observation, turn: Turn) -> np.ndarray:
        """Legal choices at ``turn``: `action_mask`, without the substations in cooldown for a
        cluster turn (a substation turn never names one in cooldown)."""
        cooldown = observation.time_before_cooldown_sub if turn.substation == -1 else None
        return self.action_mask(turn.cluster, turn.substation, cooldown)

    def action_mask(self, cluster: int, substation: int, cooldown=None) -> np.ndarray:
        """Legal choices of a cluster for the picked substation (-1: all of its substations;
        those in ``cooldown`` left out when given), after pruning, if any."""
        mask = self.decomposition.clusters[cluster].action_mask(substation, cooldown)
        if self.kept_actions is not None:
            keep = np.zeros_like(mask)
            keep[self.kept_actions[cluster]] = True
            keep[0] = True
            mask = mask & keep
        return mask

    def prune(self, kept_actions: list[list[int]] | None) -> HierarchicalAgent:
        """Restrict each cluster to do-nothing and the given action indices (None: no pruning)."""
        if kept_actions is not None:
            kept_actions = [sorted({0, *map(int, k)}) for k in kept_actions]
        if kept_actions != self.kept_actions:
            self.kept_actions = kept_actions
            self.controller = self._controller()
        return self

    def _top_k_choice(self, observation, cluster: int, x, mask) -> tuple[int, int]:
        """Do-nothing and the ``top_k`` most probable legal actions, simulated: the lowest max
        rho wins (do-nothing first on ties); failed simulations are never chosen. Returns the
        choice and the number of simulations."""
        cv = self.decomposition.clusters[cluster]
        probs = self.learners[cluster].probabilities(x, mask)
        ranked = [int(a) for a in np.argsort(-probs, kind="stable") if mask[a]][: self.top_k]
        order = [0] + [a for a in ranked if a != 0]
        scores = score_actions(observation, cv.actions, order)
        return order[best_index(scores[order], default=0)], len(order)

    def expert_scores(self, observation, cluster: int, substation: int) -> np.ndarray:
        """Simulated max rho after each action of the cluster's set on ``substation`` (and
        do-nothing); ``inf`` for the others and for failed simulations: (n_actions,).

        For a cluster turn (``substation=-1``): do-nothing and the cluster's topologies out of
        cooldown, nearest the overloads first, ``expert_budget`` simulations in all (the
        reduced-set expert's search restricted to the cluster); ``inf`` for the rest."""
        cv = self.decomposition.clusters[cluster]
        if substation != -1:
            return score_actions(observation, cv.actions,
                                 np.flatnonzero(cv.action_mask(substation)))  # fmt: skip
        from distributed_grid2op.actions.search import search_order

        legal = np.flatnonzero(cv.action_mask(-1, observation.time_before_cooldown_sub)[1:]) + 1
        order = search_order(observation, cv.action_substation[legal], self.env, danger=self.danger)
        chosen = [0, *legal[order[: max(0, self.expert_budget - 1)]].tolist()]
        return score_actions(observation, cv.actions, chosen)

    def expert_choice(self, observation, cluster: int, substation: int, scores=None) -> int:
        """Greedy label for imitation: the action with the lowest simulated max rho among
        do-nothing and the actions on ``substation`` (the first within 1e-9; do-nothing if
        every simulation fails)."""
        if scores is None:
            scores = self.expert_scores(observation, cluster, substation)
        return best_index(scores, default=0, tie=TIE)

    # ---- learn / save / load -----------------------------------------------------------
    def learn(self, episodes: int, out_dir, **trainer_kwargs) -> HierarchicalAgent:
        """Train with `distributed_grid2op.training.Trainer` (see its arguments); returns self."""
        from distributed_grid2op.training import Trainer

        Trainer(self, out_dir, **trainer_kwargs).fit(episodes)
        return self

    def metadata(self) -> dict:
        """What `load` checks and rebuilds the agent from (JSON): format 2 for a topology-only
        agent (as before continuous control), `UNITS_AGENT_FORMAT` with continuous agents."""
        meta = {
            "format": AGENT_FORMAT,
            "env": self.env_meta,
            "thermal_limit_scale": self.env_meta.get("thermal_limit_scale", 1.0),
            "factorization": self.factorization.to_dict(),
            "centralized": self.centralized,
            "obs": {"complete_obs": self.complete_obs, "min_elements": self.decomposition.min_elements,
                    "n_features": [c.n_features for c in self.decomposition.clusters]},
            "n_actions": [c.n_actions for c in self.decomposition.clusters],
            "action_sets": [c.action_set.describe() for c in self.decomposition.clusters],
            "action_file": None if self.action_file is None else self.action_file.to_dict(),
            "danger": self.danger,
            "rank_by": self.rank_by,
            "reconnect": self.reconnect,
            "seed": self.init_seed,
            "top_k": self.top_k,
            "kept_actions": self.kept_actions,
            "learner": self.learner_name,
            "learner_config": self.config.to_dict(),
        }  # fmt: skip
        if self.scope != "substation" or self.revert is not None:  # older agents: neither
            meta.update(scope=self.scope, revert=self.revert, expert_budget=self.expert_budget)
        if self.actions != ("topology",):
            clusters = self.decomposition.clusters
            meta.update(format=UNITS_AGENT_FORMAT, actions=list(self.actions),
                        unit_learner=self.unit_learner_name,
                        unit_learner_config=None if self.unit_config is None else self.unit_config.to_dict(),
                        unit_action_sets=[clusters[i].units.describe() for i in self.unit_clusters],
                        unit_features=[clusters[i].n_unit_features for i in self.unit_clusters],
                        unit_reward={"cost_weights": self.cost_weights,
                                     "game_over_cost": self.game_over_cost})  # fmt: skip
        return meta

    @classmethod
    def from_metadata(cls, meta: dict, env, source: str = "<memory>") -> HierarchicalAgent:
        """An untrained agent with the structure saved in ``meta`` (weights come separately)."""
        return agent_from_metadata(meta, env, source)

    @property
    def all_learners(self) -> list:
        """The topology learners, then the continuous agents' (the order of saved states)."""
        return [*self.learners, *self.unit_learners]

    def policy_states(self) -> list:
        """What acting needs, per learner (sent to workers; order of `all_learners`)."""
        return [learner.policy_state() for learner in self.all_learners]

    def load_policy_states(self, states: list) -> HierarchicalAgent:
        for learner, state in zip(self.all_learners, states, strict=True):
            learner.load_policy_state(state)
        return self

    def save(self, path) -> Path:
        """Write ``agent.json`` and ``weights.pt`` into folder ``path`` (each atomically; the
        weights are serialised to bytes first, so identical agents give identical files)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        torch.save([learner.state_dict() for learner in self.all_learners], buffer)
        write_bytes(path / WEIGHTS_FILE, buffer.getvalue())
        write_json(path / META_FILE, self.metadata())
        return path

    def load_weights(self, folder) -> HierarchicalAgent:
        """Load the learners' states of the agent saved in ``folder``; `UserError` if unreadable."""
        path = Path(folder) / WEIGHTS_FILE
        try:
            raw = path.read_bytes()
        except FileNotFoundError as exc:
            raise UserError(f"{path}: missing agent weights") from exc
        return self.load_weight_bytes(raw, source=str(path))

    def load_weight_bytes(self, raw: bytes, source: str = WEIGHTS_FILE) -> HierarchicalAgent:
        """Load the learners' states from the bytes of a ``weights.pt``; `UserError` if corrupt."""
        path = source
        try:
            states = torch.load(io.BytesIO(raw), weights_only=False)
            learners = self.all_learners
            if not isinstance(states, list) or len(states) != len(learners):
                raise ValueError(f"{len(learners)} learner states expected")
            for learner, state in zip(learners, states):
                learner.load_state_dict(state)
        except (RuntimeError, ValueError, KeyError, TypeError, EOFError, pickle.UnpicklingError,
                zipfile.BadZipFile, AttributeError) as exc:  # fmt: skip
            raise UserError(f"{path}: corrupted or incompatible agent weights ({exc})") from exc
        return self

    def restore(self, folder) -> HierarchicalAgent:
        """Weights and action pruning of the agent saved in ``folder`` (same structure)."""
        self.load_weights(folder)
        return self.prune(read_metadata(folder).get("kept_actions"))

    @classmethod
    def load(cls, path, env) -> HierarchicalAgent:
        """Rebuild a saved agent on ``env``; `UserError` if it was made for another grid."""
        return load_agent(path, env)


def read_metadata(folder) -> dict:
    """``agent.json`` of an agent folder, validated; `UserError` if unreadable."""
    path = Path(folder) / META_FILE
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UserError(f"{path}: unreadable agent metadata ({exc})") from exc
    return parse_metadata(raw, str(path))


def parse_metadata(raw: bytes, source: str = META_FILE) -> dict:
    """The validated content of an ``agent.json`` (bytes); `UserError` naming ``source``."""
    path = source
    try:
        meta = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: unreadable agent metadata ({exc})") from exc
    if not isinstance(meta, dict) or meta.get("format") not in READABLE_FORMATS:
        raise UserError(f"{path}: not an agent checkpoint of format {READABLE_FORMATS}")
    missing = [k for k in ("env", "factorization", "obs", "n_actions", "danger", "rank_by", "seed")
               if k not in meta]  # fmt: skip
    if missing:
        raise UserError(f"{path}: agent metadata lacks {', '.join(missing)}")
    return meta


def agent_from_metadata(meta: dict, env, source: str = "<memory>") -> HierarchicalAgent:
    """An untrained agent with the structure saved in ``meta`` (weights come separately)."""
    fact = parse_factorization(
        meta["factorization"], n_sub=env.n_sub, n_line=env.n_line, source=source
    )
    name = meta.get("learner", "ppo")
    entry = learner_entry(name)
    unit_name = meta.get("unit_learner", "sac")
    try:
        config = entry.config.from_dict(meta.get("learner_config", meta.get("ppo", {})))
        unit_config = meta.get("unit_learner_config")
        if unit_config is not None:
            unit_config = learner_entry(unit_name).config.from_dict(unit_config)
        action_file = None
        if meta.get("action_file"):
            from distributed_grid2op.actions.file import parse_action_file

            action_file = parse_action_file(meta["action_file"], env, source=source)
        agent = HierarchicalAgent(
            env,
            fact,
            complete_obs=bool(meta["obs"]["complete_obs"]),
            danger=float(meta["danger"]),
            rank_by=meta["rank_by"],
            learner=name,
            config=config,
            seed=int(meta["seed"]),
            top_k=int(meta.get("top_k", 0)),
            action_file=action_file,
            reconnect=meta.get("reconnect", "first"),  # agents saved before safe reconnection
            actions=meta.get("actions", ["topology"]),  # format 3; before: topology only
            unit_learner=unit_name,
            unit_config=unit_config,
            **{
                "cost_weights": None,
                "game_over_cost": GAME_OVER_COST,
                **meta.get("unit_reward", {}),
            },
            scope=meta.get("scope", "substation"),
            revert=meta.get("revert"),
            expert_budget=int(meta.get("expert_budget", 100)),
        )
    except (TypeError, KeyError, ValueError) as exc:
        if isinstance(exc, UserError):
            raise
        raise UserError(f"{source}: malformed agent metadata ({exc})") from exc
    agent.centralized = bool(meta.get("centralized", False))
    agent.prune(meta.get("kept_actions"))
    return agent


def read_agent_files(path) -> tuple[dict[str, bytes], Path]:
    """The files of the agent in ``path`` (see `load_agent`) as bytes, and its folder: what a
    worker on another machine receives instead of a path."""
    ckpt = find_agent(path)
    files = {}
    for name in (META_FILE, WEIGHTS_FILE):
        try:
            files[name] = (ckpt / name).read_bytes()
        except OSError as exc:
            raise UserError(f"{ckpt / name}: cannot read the agent ({exc.strerror})") from exc
    return files, ckpt


def load_agent(path, env) -> HierarchicalAgent:
    """Load the agent in ``path``: a checkpoint folder, or a training output folder (its
    ``final/`` checkpoint, else the latest of ``checkpoints/``).

    Raises `UserError` when there is no checkpoint, it is unreadable, or it was made for
    another grid. Other thermal limits than the agent was trained with only warn
    (evaluating on the unmodified setting is legitimate); the check compares the limits
    recorded in the agent with the env's, so it holds for any env.
    """
    files, ckpt = read_agent_files(path)
    agent = agent_from_files(files, env, source=str(ckpt))
    agent.checkpoint_ = ckpt
    return agent


def agent_from_files(files: dict[str, bytes], env, source: str = "<memory>") -> HierarchicalAgent:
    """The agent of an agent folder's files (`read_agent_files`), checked against ``env``."""
    ckpt = source
    meta = parse_metadata(files[META_FILE], f"{source}/{META_FILE}")
    saved, here = meta["env"], grid_signature(env)
    for key, value in here.items():
        if saved.get(key) != value:
            what = f"{saved.get(key)} vs {value}" if key.startswith("n_") else "differs"
            raise UserError(
                f"{ckpt}: agent was trained on another grid ({saved.get('env')}: {key} {what})"
            )
    limits = saved.get("thermal_limit")
    if limits is not None:
        here_limits = np.asarray(thermal_limits(env), dtype=float)
        if not np.allclose(np.asarray(limits, dtype=float), here_limits, rtol=1e-5):
            ratio = float(np.median(here_limits / np.maximum(np.asarray(limits, float), 1e-9)))
            warnings.warn(
                f"agent trained with thermal limits x{saved.get('thermal_limit_scale', 1.0)}; "
                f"this env's limits are x{ratio:.3g} of those",
                stacklevel=2,
            )
    agent = agent_from_metadata(meta, env, source=str(ckpt))
    clusters = agent.decomposition.clusters
    sizes = (
        [c.n_features for c in clusters],
        [c.n_actions for c in clusters],
        [clusters[i].n_unit_features for i in agent.unit_clusters],
    )
    saved_sizes = (meta["obs"]["n_features"], meta["n_actions"], meta.get("unit_features", []))
    if sizes != saved_sizes:
        raise UserError(
            f"{ckpt}: observation or action sizes differ from this env's (another grid2op version?)"
        )
    agent.load_weight_bytes(files[WEIGHTS_FILE], source=f"{source}/{WEIGHTS_FILE}")
    agent.env_meta = dict(saved)
    return agent
