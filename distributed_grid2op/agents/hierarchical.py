"""The hierarchical agent: rules on top, one PPO learner per cluster below.

Reconnect a disconnected line when legal; do nothing while max rho < danger threshold;
otherwise the CAPA-style picker (`decomposed.Controller`) chooses a substation and the
learner of the cluster owning it chooses an action among do-nothing and that substation's
unitary topologies. With one cluster (``factorization.centralized()``) it is the centralised
baseline. It is a grid2op ``BaseAgent`` (so the grid2op ``Runner`` can evaluate it) with
``learn / predict / save / load``.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import torch
from grid2op.Agent import BaseAgent

from distributed_grid2op.agents.ppo import PPOConfig, PPOLearner
from distributed_grid2op.decomposed import DEFAULT_DANGER, Controller, Decomposition
from distributed_grid2op.envs import env_metadata
from distributed_grid2op.errors import UserError
from distributed_grid2op.factorization_file import load_factorization, parse_factorization
from distributed_grid2op.io import atomic_path, write_json
from distributed_grid2op.seeding import child_seeds

AGENT_FORMAT = 1
META_FILE, WEIGHTS_FILE = "agent.json", "weights.pt"
NO_DECISION = {"agent": "", "action_id": -1, "substation": -1}


def grid_signature(env) -> dict:
    """What makes two envs the same grid for an agent: sizes and element layout."""
    return {
        "n_sub": int(env.n_sub),
        "n_line": int(env.n_line),
        "sub_info": [int(x) for x in env.sub_info],
        "line_or_to_subid": [int(x) for x in env.line_or_to_subid],
        "line_ex_to_subid": [int(x) for x in env.line_ex_to_subid],
    }


class HierarchicalAgent(BaseAgent):
    """Rules + CAPA picker + independent per-cluster PPO learners.

    Args:
        env: grid2op env (its structure fixes the masks and action sets).
        factorization: a `FactorizationFile`, a path, or None (thesis case14 partition).
        centralized: merge every cluster into one (the centralised baseline).
        complete_obs: every cluster sees the whole grid's kept attributes.
        danger: act only when max rho >= this.
        rank_by: picker ranking, ``"max"`` (highest, then mean loading) or ``"mean"``.
        config: PPO hyper-parameters shared by the learners.
        seed: initialises the learners' networks (one child seed each).
        top_k: when acting greedily (evaluation), simulate do-nothing and the ``top_k`` most
            probable actions of the policy (``obs.simulate``, ~1 ms each) and take the one with
            the lowest simulated max rho. 0 (default): the pure learned policy. Off in training.

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
        config: PPOConfig | None = None,
        seed: int = 0,
        top_k: int = 0,
    ):
        super().__init__(env.action_space)
        # one intra-op thread: fastest for these small networks, and fork-safe (evaluation
        # forks worker processes after making the agent; a forked OpenMP pool deadlocks)
        torch.set_num_threads(1)
        if factorization is None or isinstance(factorization, str | Path):
            factorization = load_factorization(factorization, env=env)
        if centralized:
            factorization = factorization.centralized()
        self.env = env
        self.factorization = factorization
        self.centralized, self.complete_obs = bool(centralized), bool(complete_obs)
        self.danger, self.rank_by, self.seed = float(danger), rank_by, int(seed)
        self.top_k = int(top_k)
        self.kept_actions: list[list[int]] | None = None  # action-set pruning (see `prune`)
        self.config = config or PPOConfig()
        self.decomposition = Decomposition(env, factorization, complete_obs=complete_obs)
        self.controller = Controller(self.decomposition, env, danger=danger, rank_by=rank_by)
        seeds = child_seeds(seed, len(self.decomposition.clusters))
        self.learners = [PPOLearner(c.n_features, c.n_actions, self.config, seed=s)
                         for c, s in zip(self.decomposition.clusters, seeds)]  # fmt: skip
        self.env_meta = {**env_metadata(env), **grid_signature(env)}
        self.last_decision = dict(NO_DECISION)

    # ---- grid2op BaseAgent -------------------------------------------------------------
    def reset(self, obs=None):
        """Start of an episode: empty the picker queue."""
        self.controller.reset()
        self.last_decision = dict(NO_DECISION)

    def act(self, observation, reward=0.0, done=False):
        """Greedy (argmax) action of the learned policy under the rules."""
        action, _ = self.predict(observation)
        return action

    def predict(
        self, observation, deterministic: bool = True, rng: np.random.Generator | None = None
    ):
        """``(grid2op action, decision)``; decision has ``last_decision``'s keys plus, when a
        cluster decided, ``cluster``, ``features``, ``mask``, ``logp`` and ``value`` (for learning).
        """
        kind, what = self.controller.decide(observation)
        if kind == "reconnect":
            decision = {"agent": "reconnect", "action_id": -1, "substation": -1}
            action = what
        elif kind == "safe":
            decision, action = dict(NO_DECISION), self.action_space()
        else:
            i, sub = what
            cv = self.decomposition.clusters[i]
            x, mask = cv.features(observation.to_vect(), sub), self.action_mask(i, sub)
            a, logp, value = self.learners[i].act(x, mask, rng=rng, deterministic=deterministic)
            if deterministic and self.top_k > 0:
                a = self._top_k_choice(observation, i, x, mask)
            decision = {"agent": cv.name, "action_id": a, "substation": sub, "cluster": i, "features": x,
                        "mask": mask, "logp": logp, "value": value}  # fmt: skip
            action = cv.actions[a]
        self.last_decision = {k: decision[k] for k in NO_DECISION}
        return action, decision

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

    def _top_k_choice(self, observation, cluster: int, x, mask) -> int:
        cv = self.decomposition.clusters[cluster]
        probs = self.learners[cluster].probabilities(x, mask)
        candidates = [int(a) for a in np.argsort(-probs, kind="stable") if mask[a]][: self.top_k]
        best, best_rho = 0, np.inf
        for a in [0] + [a for a in candidates if a != 0]:
            sim_obs, _, sim_done, info = observation.simulate(cv.actions[a])
            if sim_done or info.get("exception"):
                continue
            rho = float(np.max(sim_obs.rho))
            if rho < best_rho - 1e-9:
                best, best_rho = a, rho
        return best

    def expert_scores(self, observation, cluster: int, substation: int) -> np.ndarray:
        """Simulated max rho after each action of the cluster's set on ``substation`` (and
        do-nothing), ``inf`` for the others and for illegal or failing ones: (n_actions,)."""
        cv = self.decomposition.clusters[cluster]
        scores = np.full(cv.n_actions, np.inf)
        for a in np.flatnonzero(cv.action_mask(substation)):
            sim_obs, _, sim_done, info = observation.simulate(cv.actions[a])
            if not (sim_done or info.get("is_illegal") or info.get("exception")):
                scores[a] = float(np.max(sim_obs.rho))
        return scores

    def expert_choice(self, observation, cluster: int, substation: int, scores=None) -> int:
        """Greedy label for imitation: the action with the lowest simulated max rho among
        do-nothing and the actions on ``substation`` (the first within 1e-9; do-nothing if
        every simulation fails)."""
        if scores is None:
            scores = self.expert_scores(observation, cluster, substation)
        best = np.min(scores)
        return int(np.flatnonzero(scores <= best + 1e-9)[0]) if np.isfinite(best) else 0

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
            "danger": self.danger,
            "rank_by": self.rank_by,
            "seed": self.seed,
            "top_k": self.top_k,
            "kept_actions": self.kept_actions,
            "ppo": self.config.to_dict(),
        }  # fmt: skip

    def save(self, path) -> Path:
        """Write ``agent.json`` and ``weights.pt`` into folder ``path`` (each atomically)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        with atomic_path(path / WEIGHTS_FILE) as tmp:
            torch.save([learner.state_dict() for learner in self.learners], tmp)
        write_json(path / META_FILE, self.metadata())
        return path

    @classmethod
    def load(cls, path, env) -> HierarchicalAgent:
        """Rebuild a saved agent on ``env``; `UserError` if it was made for another grid."""
        return load_agent(path, env)


def _checkpoint_dir(path: Path) -> Path:
    if (path / META_FILE).is_file():
        return path
    if (path / "final" / META_FILE).is_file():
        return path / "final"
    ckpts = sorted(p for p in (path / "checkpoints").glob("ep*") if (p / META_FILE).is_file())
    if ckpts:
        return ckpts[-1]
    raise UserError(
        f"no agent checkpoint in {path} (expected {META_FILE}, final/ or checkpoints/ep*/)"
    )


def agent_from_metadata(meta: dict, env, source: str = "<memory>") -> HierarchicalAgent:
    """An untrained agent with the structure saved in ``meta`` (weights come separately)."""
    fact = parse_factorization(
        meta["factorization"], n_sub=env.n_sub, n_line=env.n_line, source=source
    )
    return HierarchicalAgent(
        env,
        fact,
        complete_obs=meta["obs"]["complete_obs"],
        danger=meta["danger"],
        rank_by=meta["rank_by"],
        config=PPOConfig.from_dict(meta["ppo"]),
        seed=meta["seed"],
        top_k=meta.get("top_k", 0),
    )


def load_agent(path, env) -> HierarchicalAgent:
    """Load the agent in ``path``: a checkpoint folder, or a training output folder (its
    ``final/`` checkpoint, else the latest of ``checkpoints/``).

    Raises `UserError` when there is no checkpoint or it was made for another grid. A different
    env name or thermal limit scale only warns (evaluating on other scenarios of the same grid,
    or on the unmodified setting, is legitimate).
    """
    path = Path(path)
    if not path.exists():
        raise UserError(f"no such agent folder: {path}")
    ckpt = _checkpoint_dir(path)
    try:
        meta = json.loads((ckpt / META_FILE).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"{ckpt / META_FILE}: unreadable agent metadata ({exc})") from exc
    if meta.get("format") != AGENT_FORMAT:
        raise UserError(f"{ckpt / META_FILE}: not an agent checkpoint of format {AGENT_FORMAT}")
    saved, here = meta["env"], grid_signature(env)
    for key, value in here.items():
        if saved.get(key) != value:
            what = f"{saved.get(key)} vs {value}" if key.startswith("n_") else "differs"
            raise UserError(
                f"{ckpt}: agent was trained on another grid ({saved.get('env')}: {key} {what})"
            )
    here_meta = env_metadata(env)
    for key in ("env", "thermal_limit_scale"):
        if key in here_meta and saved.get(key) is not None and saved.get(key) != here_meta[key]:
            warnings.warn(
                f"agent trained with {key}={saved.get(key)!r}, evaluated with {here_meta[key]!r}",
                stacklevel=2,
            )
    agent = agent_from_metadata(meta, env, source=str(ckpt))
    agent.centralized = bool(meta.get("centralized", False))
    agent.prune(meta.get("kept_actions"))
    sizes = (
        [c.n_features for c in agent.decomposition.clusters],
        [c.n_actions for c in agent.decomposition.clusters],
    )
    if sizes != (meta["obs"]["n_features"], meta["n_actions"]):
        raise UserError(
            f"{ckpt}: observation or action sizes differ from this env's (another grid2op version?)"
        )
    states = torch.load(ckpt / WEIGHTS_FILE, weights_only=False)
    for learner, state in zip(agent.learners, states):
        learner.load_state_dict(state)
    agent.env_meta = dict(saved)
    agent.checkpoint_ = ckpt
    return agent
