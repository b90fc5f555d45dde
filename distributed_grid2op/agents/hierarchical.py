"""The hierarchical agent: rules on top, one learner per cluster below.

Reconnect a disconnected line when legal; do nothing while max rho < danger threshold;
otherwise the CAPA-style picker (`loop.Controller`) chooses a substation and the learner of
the cluster owning it chooses an action of its action set (do-nothing and that substation's
topologies). With one cluster (``factorization.centralized()``) it is the centralised
baseline. It is a `loop.LoopAgent` (a grid2op ``BaseAgent``, so the grid2op ``Runner`` can
evaluate it) with ``learn / predict / save / load``; the learner is named by its registry key
(`agents.learners`), PPO by default.
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

from distributed_grid2op.agents.learners import learner_entry, make_learner
from distributed_grid2op.checkpoints import META_FILE, WEIGHTS_FILE, find_agent
from distributed_grid2op.decomposed import Decomposition
from distributed_grid2op.envs import env_metadata
from distributed_grid2op.errors import UserError
from distributed_grid2op.factorization_file import load_factorization, parse_factorization
from distributed_grid2op.io import write_bytes, write_json
from distributed_grid2op.loop import DEFAULT_DANGER, Controller, Decision, LoopAgent, Turn
from distributed_grid2op.scoring import TIE, best_index, score_actions
from distributed_grid2op.seeding import child_seeds

AGENT_FORMAT = 2  # 2: "learner" + "learner_config" (format 1: "ppo"), thermal limits recorded
READABLE_FORMATS = (1, 2)


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
        reconnect: the reconnection rule (`loop.Controller`: ``"safe"``, ``"first"``, ``"none"``).

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
        reconnect: str = "safe",
    ):
        if factorization is None or isinstance(factorization, str | Path):
            factorization = load_factorization(factorization, env=env)
        if centralized:
            factorization = factorization.centralized()
        self.env = env
        self.factorization = factorization
        self.centralized, self.complete_obs = bool(centralized), bool(complete_obs)
        self.danger, self.rank_by, self.seed = float(danger), rank_by, int(seed)
        self.top_k, self.reconnect = int(top_k), reconnect
        self.kept_actions: list[list[int]] | None = None  # action-set pruning (see `prune`)
        self.learner_name = learner
        self.config = config or learner_entry(learner).config()
        self.action_file = action_file
        self.decomposition = Decomposition(
            env, factorization, complete_obs=complete_obs, action_file=action_file
        )
        super().__init__(env.action_space, self._controller())
        seeds = child_seeds(seed, len(self.decomposition.clusters))
        self.learners = [
            make_learner(learner, c.n_features, c.action_set, self.config, seed=s)
            for c, s in zip(self.decomposition.clusters, seeds)
        ]
        self.env_meta = {**env_metadata(env, spec), **grid_signature(env),
                         "thermal_limit": thermal_limits(env)}  # fmt: skip

    def _controller(self) -> Controller:
        return Controller(self.env, self.decomposition.owner, danger=self.danger,
                          rank_by=self.rank_by, reconnect=self.reconnect)  # fmt: skip

    def set_rules(self, danger: float | None = None, reconnect: str | None = None):
        """Act from another danger threshold or reconnection rule (evaluation's options)."""
        if danger is not None:
            self.danger = float(danger)
        if reconnect is not None:
            self.reconnect = reconnect
        self.controller = self._controller()
        return self

    # ---- the decision at a turn ---------------------------------------------------------
    def decide(self, observation, turn: Turn, *, deterministic: bool = True, rng=None):
        """The cluster of ``turn`` chooses among do-nothing and its substation's actions:
        ``(grid2op action, Decision)`` with what learning needs (features, mask, logp, value)."""
        i, sub = turn.cluster, turn.substation
        cv = self.decomposition.clusters[i]
        x, mask = cv.features(observation.to_vect(), sub), self.action_mask(i, sub)
        a, logp, value = self.learners[i].act(x, mask, rng=rng, deterministic=deterministic)
        n_sim = 0
        if deterministic and self.top_k > 0:
            a, n_sim = self._top_k_choice(observation, i, x, mask)
        decision = Decision(cv.name, int(a), sub, i, x, mask, float(logp), float(value), n_sim)
        return cv.action_set.to_grid2op(a), decision

    def action_mask(self, cluster: int, substation: int) -> np.ndarray:
        """Legal choices of a cluster for the picked substation (after pruning, if any)."""
        mask = self.decomposition.clusters[cluster].action_mask(substation)
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
        self.kept_actions = kept_actions
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
        do-nothing); ``inf`` for the others and for failed simulations: (n_actions,)."""
        cv = self.decomposition.clusters[cluster]
        return score_actions(observation, cv.actions, np.flatnonzero(cv.action_mask(substation)))

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
        """What `load` checks and rebuilds the agent from (JSON)."""
        return {
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
            "seed": self.seed,
            "top_k": self.top_k,
            "kept_actions": self.kept_actions,
            "learner": self.learner_name,
            "learner_config": self.config.to_dict(),
        }  # fmt: skip

    @classmethod
    def from_metadata(cls, meta: dict, env, source: str = "<memory>") -> HierarchicalAgent:
        """An untrained agent with the structure saved in ``meta`` (weights come separately)."""
        return agent_from_metadata(meta, env, source)

    def policy_states(self) -> list:
        """What acting needs, per learner (sent to workers)."""
        return [learner.policy_state() for learner in self.learners]

    def load_policy_states(self, states: list) -> HierarchicalAgent:
        for learner, state in zip(self.learners, states):
            learner.load_policy_state(state)
        return self

    def save(self, path) -> Path:
        """Write ``agent.json`` and ``weights.pt`` into folder ``path`` (each atomically; the
        weights are serialised to bytes first, so identical agents give identical files)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        torch.save([learner.state_dict() for learner in self.learners], buffer)
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
            if not isinstance(states, list) or len(states) != len(self.learners):
                raise ValueError(f"{len(self.learners)} learner states expected")
            for learner, state in zip(self.learners, states):
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
    try:
        config = entry.config.from_dict(meta.get("learner_config", meta.get("ppo", {})))
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
    sizes = (
        [c.n_features for c in agent.decomposition.clusters],
        [c.n_actions for c in agent.decomposition.clusters],
    )
    if sizes != (meta["obs"]["n_features"], meta["n_actions"]):
        raise UserError(
            f"{ckpt}: observation or action sizes differ from this env's (another grid2op version?)"
        )
    agent.load_weight_bytes(files[WEIGHTS_FILE], source=f"{source}/{WEIGHTS_FILE}")
    agent.env_meta = dict(saved)
    return agent
