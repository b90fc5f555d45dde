"""Train a `HierarchicalAgent`: episodes of the training scenarios feed the cluster learners.

Round after round, ``episodes_per_update`` episodes are played with the current policy
(sampling), in this process or in worker processes (each with its own env, made from an
`EnvSpec`; only arrays travel), then every cluster learner makes one PPO update on its own
decisions. Optionally the rounds are preceded by an imitation warm start: episodes played by
the substation-local greedy expert (``HierarchicalAgent.expert_choice``), whose decisions
are behaviour-cloned into each cluster's policy.

Everything random is derived from ``(seed, episode)`` or ``(seed, update)``, and workers
start from the same weights, so the results do not depend on the number of workers and a
run resumed from a checkpoint is identical to an uninterrupted one.

Output folder: ``train_log.csv`` (one row per PPO episode), ``imitation_log.csv``,
``checkpoints/epNNNNNN/`` (agent + trainer state, written atomically), ``final/``, ``run.json``.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch

from distributed_grid2op.agents.hierarchical import (
    META_FILE,
    HierarchicalAgent,
    agent_from_metadata,
    load_agent,
)
from distributed_grid2op.envs import EnvSpec
from distributed_grid2op.errors import UserError
from distributed_grid2op.io import ensure_writable_dir, write_json, write_text

LOG_FILE, IMITATION_LOG, STATE_FILE, RUN_FILE = (
    "train_log.csv",
    "imitation_log.csv",
    "trainer.json",
    "run.json",
)
BASE_COLUMNS = ["episode", "scenario", "seed", "start", "survived_steps", "max_steps", "safe_steps",
                "total_reward", "decisions", "reconnections"]  # fmt: skip


def episode_seed(seed: int, episode: int, phase: int = 0) -> int:
    """Independent reproducible seed of one episode (phase 0: PPO, 1: imitation)."""
    return int(
        np.random.SeedSequence([int(seed), int(phase), int(episode)]).generate_state(1)[0] >> 1
    )


def update_generator(seed: int, update: int) -> torch.Generator:
    """Minibatch shuffling of PPO update number ``update`` (so resume needs no RNG state)."""
    return torch.Generator().manual_seed(
        int(np.random.SeedSequence([int(seed), 2, int(update)]).generate_state(1)[0])
    )


def soft_labels(scores: np.ndarray, temperature: float) -> np.ndarray | None:
    """Imitation targets from the expert's simulated max rho (N, n_actions; inf = unavailable):
    softmax of ``-(rho - min rho) / temperature`` over the available actions, so that near-ties
    share the label and clearly worse actions get ~0. ``temperature <= 0``: None (hard labels)."""
    if temperature <= 0 or len(scores) == 0:
        return None
    best = scores.min(axis=1, keepdims=True)
    failed = ~np.isfinite(best[:, 0])  # every simulation failed: do-nothing
    w = np.exp(-(scores - np.where(failed[:, None], 0.0, best)) / temperature)  # exp(-inf) = 0
    w[failed, 0] = 1.0
    return (w / w.sum(axis=1, keepdims=True)).astype(np.float32)


def run_episode(
    agent: HierarchicalAgent, env, *, scenario: int, seed: int, start: int = 0, mode: str = "policy"
) -> dict:
    """Play one episode; returns its statistics and, per cluster, what the learners need.

    ``mode="policy"``: sample the clusters' policies (numpy Generator seeded by ``seed``);
    the trajectory of a cluster holds its decisions with the env rewards summed from each
    decision to its next one (the AEC convention). ``mode="expert"``: the local greedy expert
    decides and its labels are recorded for behaviour cloning, with the simulated max rho of
    every candidate (``scores``, for soft labels); ``mode="dagger"``: the policy acts and the
    expert's labels and scores are recorded (DAgger).
    """
    rng = np.random.default_rng(seed)
    env.seed(int(seed))
    options = {"time serie id": int(scenario)}
    if start:
        options["init ts"] = int(start)
    obs = env.reset(options=options)
    agent.reset(obs)
    clusters = agent.decomposition.clusters
    keys = ("obs", "masks", "actions", "logps", "values", "rewards")
    trajs = [{k: [] for k in keys} for _ in clusters]
    scores: list[list[np.ndarray]] = [[] for _ in clusters]  # expert's simulated max rho
    steps, safe_steps, total, reconnections, game_over = 0, None, 0.0, 0, False
    max_steps = int(env.max_episode_duration()) - int(start)
    done = False
    while not done:
        if safe_steps is None and float(np.max(obs.rho)) >= agent.danger:
            safe_steps = steps
        action, d = agent.predict(obs, deterministic=False, rng=rng)
        if "cluster" in d:
            i = d["cluster"]
            a, logp = d["action_id"], d["logp"]
            if mode in ("expert", "dagger"):  # dagger: the policy acts, the expert labels
                sc = agent.expert_scores(obs, i, d["substation"])
                a, logp = agent.expert_choice(obs, i, d["substation"], sc), 0.0
                scores[i].append(sc)
                if mode == "expert":
                    action = clusters[i].actions[a]
            t = trajs[i]
            for k, v in zip(keys, (d["features"], d["mask"], a, logp, d["value"], 0.0)):
                t[k].append(v)
        elif d["agent"] == "reconnect":
            reconnections += 1
        obs, reward, done, info = env.step(action)
        steps += 1
        total += float(reward)
        for t in trajs:
            if t["rewards"]:
                t["rewards"][-1] += float(reward)
        if done:
            game_over = bool(info.get("exception"))
    stats = {
        "scenario": int(scenario), "seed": int(seed), "start": int(start),
        "survived_steps": steps - int(game_over), "max_steps": max_steps,
        "safe_steps": steps if safe_steps is None else safe_steps, "total_reward": round(total, 6),
        "decisions": sum(len(t["actions"]) for t in trajs), "reconnections": reconnections,
    }  # fmt: skip
    for c, t in zip(clusters, trajs):
        stats[f"reward_{c.name}"] = round(float(sum(t["rewards"])), 6)
        stats[f"decisions_{c.name}"] = len(t["actions"])
    arrays = [
        {k: np.asarray(v, dtype=np.float32 if k != "masks" else bool) for k, v in t.items()}
        for t in trajs
    ]
    for t, c, sc in zip(arrays, clusters, scores):
        t["actions"] = t["actions"].astype(np.int64)
        if len(t["obs"]) == 0:
            t["obs"] = np.zeros((0, 0), dtype=np.float32)
        if mode != "policy":
            t["scores"] = np.asarray(sc, dtype=np.float32).reshape(len(sc), c.n_actions)
    return {"stats": stats, "trajectories": arrays}


# ---- worker processes (each with its own env and agent copy) ---------------------------------
_WORKER: dict = {}


def _init_worker(spec: EnvSpec, agent_meta: dict) -> None:
    torch.set_num_threads(1)
    from distributed_grid2op.envs import quiet_grid2op

    with quiet_grid2op():
        env = spec.make()
    _WORKER["env"] = env
    _WORKER["agent"] = agent_from_metadata(agent_meta, env)


def _worker_episodes(weights: list, kept_actions, tasks: list[dict]) -> list[dict]:
    agent = _WORKER["agent"]
    agent.prune(kept_actions)
    for learner, w in zip(agent.learners, weights):
        learner.net.load_state_dict(w)
    return [run_episode(agent, _WORKER["env"], **t) for t in tasks]


class Trainer:
    """Episode loop, logs, checkpoints and resume for one `HierarchicalAgent`.

    Args:
        agent: the agent to train (its env is used when ``workers == 1``).
        out_dir: output folder.
        spec: recipe of the env (workers make their own from it); required if ``workers > 1``.
        scenarios: chronic indices to train on.
        seed: derives every episode's seed, scenario and start offset.
        episodes_per_update: episodes per PPO round (independent of ``workers``).
        checkpoint_every: checkpoint after the round that crosses each multiple of this.
        imitation_episodes: expert episodes behaviour-cloned before PPO (0: pure PPO).
        dagger_rounds: DAgger rounds after them (see `imitate`).
        prune_actions: keep only the actions the expert used during imitation.
        max_start: episodes start at a random step in ``[0, max_start]`` of their scenario.
        workers: processes collecting episodes (1: in this process).
        resume: continue from the latest checkpoint in ``out_dir``.
        progress: show a tqdm bar.
    """

    def __init__(
        self,
        agent: HierarchicalAgent,
        out_dir,
        *,
        spec: EnvSpec | None = None,
        scenarios=None,
        seed: int = 90566,
        episodes_per_update: int = 4,
        checkpoint_every: int = 20,
        imitation_episodes: int = 0,
        dagger_rounds: int = 0,
        prune_actions: bool = False,
        max_start: int = 0,
        workers: int = 1,
        resume: bool = False,
        progress: bool = True,
        run_info: dict | None = None,
    ):
        if workers > 1 and spec is None:
            raise UserError("worker processes need an EnvSpec to make their envs")
        self.agent, self.out = agent, ensure_writable_dir(out_dir)
        self.spec, self.seed = spec, int(seed)
        self.scenarios = list(scenarios) if scenarios is not None else [0]
        if not self.scenarios:
            raise UserError("no training scenario")
        self.episodes_per_update, self.checkpoint_every = (
            int(episodes_per_update),
            int(checkpoint_every),
        )
        self.imitation_episodes, self.max_start = int(imitation_episodes), int(max_start)
        self.dagger_rounds, self.prune_actions = int(dagger_rounds), bool(prune_actions)
        self.workers, self.resume, self.progress = int(workers), bool(resume), bool(progress)
        self.run_info = dict(run_info or {})
        self.episodes_done_, self.updates_done_ = 0, 0
        self.columns = BASE_COLUMNS + [
            f"{p}_{c}" for c in agent.decomposition.names for p in ("reward", "decisions")
        ]
        self._pool = None
        self.timings_ = {"collect_s": 0.0, "update_s": 0.0, "imitation_s": 0.0}

    # ---- schedule ---------------------------------------------------------------------
    def task(self, episode: int, phase: int = 0, mode: str = "policy") -> dict:
        s = episode_seed(self.seed, episode, phase)
        rng = np.random.default_rng(s)
        scenario = self.scenarios[int(rng.integers(len(self.scenarios)))]
        start = int(rng.integers(self.max_start + 1)) if self.max_start > 0 else 0
        return {"scenario": scenario, "seed": s, "start": start, "mode": mode}

    def _collect(self, tasks: list[dict]) -> list[dict]:
        if self.workers <= 1:
            return [run_episode(self.agent, self.agent.env, **t) for t in tasks]
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                self.workers,
                mp_context=get_context("spawn"),
                initializer=_init_worker,
                initargs=(self.spec, self.agent.metadata()),
            )
        weights = [learner.net.state_dict() for learner in self.agent.learners]
        chunks = [tasks[i :: self.workers] for i in range(self.workers)]
        futures = [
            self._pool.submit(_worker_episodes, weights, self.agent.kept_actions, c)
            for c in chunks
            if c
        ]
        parts = [f.result() for f in futures]
        results: list = [None] * len(tasks)
        for w, part in enumerate(parts):
            for j, r in enumerate(part):
                results[w + j * self.workers] = r
        return results

    # ---- persistence ------------------------------------------------------------------
    def _checkpoint(self) -> Path:
        name = f"ep{self.episodes_done_:06d}"
        final = self.out / "checkpoints" / name
        tmp = self.out / "checkpoints" / f".{name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        self.agent.save(tmp)
        write_json(
            tmp / STATE_FILE,
            {
                "episodes_done": self.episodes_done_,
                "updates_done": self.updates_done_,
                "seed": self.seed,
                "scenarios": self.scenarios,
            },
        )
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        return final

    def _restore(self) -> None:
        ckpts = sorted(
            p for p in (self.out / "checkpoints").glob("ep*") if (p / STATE_FILE).is_file()
        )
        if not ckpts:
            raise UserError(f"--resume: no checkpoint in {self.out / 'checkpoints'}")
        ckpt = ckpts[-1]
        state = json.loads((ckpt / STATE_FILE).read_text())
        if state["seed"] != self.seed or state["scenarios"] != self.scenarios:
            raise UserError(
                f"--resume: {ckpt} was made with seed {state['seed']} on scenarios "
                f"{state['scenarios']}; rerun with the same options"
            )
        loaded = load_agent(ckpt, self.agent.env)
        for mine, theirs in zip(self.agent.learners, loaded.learners):
            mine.load_state_dict(theirs.state_dict())
        self.agent.prune(loaded.kept_actions)
        self.episodes_done_, self.updates_done_ = (
            int(state["episodes_done"]),
            int(state["updates_done"]),
        )
        self._truncate_log(self.out / LOG_FILE, self.episodes_done_)

    def _truncate_log(self, path: Path, rows: int) -> None:
        """Drop log rows written after the checkpoint (they will be played again)."""
        if not path.is_file():
            return
        lines = path.read_text().splitlines(keepends=True)
        write_text(path, "".join(lines[: 1 + rows]))

    def _append_log(self, path: Path, rows: list[dict], columns: list[str]) -> None:
        new = not path.is_file() or path.stat().st_size == 0
        with open(path, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
            if new:
                w.writeheader()
            w.writerows(rows)
            f.flush()
            os.fsync(f.fileno())

    # ---- phases -----------------------------------------------------------------------
    def imitate(self) -> dict:
        """Imitation warm start; returns the behaviour-cloning accuracies.

        ``imitation_episodes`` episodes played by the local greedy expert, then ``dagger_rounds``
        rounds of ``max(2, imitation_episodes // 4)`` episodes played by the cloned policy and
        labelled by the expert (DAgger), behaviour cloning on all labels after each round.
        With ``prune_actions``, each cluster keeps only do-nothing and the actions the expert
        chose at least once.
        """
        t0 = time.perf_counter()
        tasks = [self.task(e, phase=1, mode="expert") for e in range(self.imitation_episodes)]
        per_round = max(2, self.imitation_episodes // 4)
        for r in range(self.dagger_rounds):
            first = self.imitation_episodes + r * per_round
            tasks += [self.task(e, phase=1, mode="dagger") for e in range(first, first + per_round)]
        path = self.out / IMITATION_LOG
        path.unlink(missing_ok=True)
        gen = torch.Generator().manual_seed(episode_seed(self.seed, 0, phase=3))
        clusters, learners = self.agent.decomposition.clusters, self.agent.learners
        data: list[list[dict]] = [[] for _ in clusters]
        acc: dict = {}
        done = 0
        for r in range(self.dagger_rounds + 1):
            batch = tasks[done : done + (self.imitation_episodes if r == 0 else per_round)]
            results = self._collect(batch)
            self._append_log(path, [{"episode": done + j, "mode": t["mode"], **res["stats"]}
                                    for j, (t, res) in enumerate(zip(batch, results))],
                             ["mode", *self.columns])  # fmt: skip
            done += len(batch)
            for i in range(len(clusters)):
                data[i] += [
                    res["trajectories"][i]
                    for res in results
                    if len(res["trajectories"][i]["actions"])
                ]
            if self.prune_actions:
                self.agent.prune([np.unique(np.concatenate([p["actions"] for p in d])).tolist() if d else []
                                  for d in data])  # fmt: skip
            for i, (c, learner) in enumerate(zip(clusters, learners)):
                if not data[i]:
                    continue
                masks = np.concatenate([p["masks"] for p in data[i]])
                if self.agent.kept_actions is not None:  # clone under the pruned masks
                    keep = np.zeros(c.n_actions, dtype=bool)
                    keep[self.agent.kept_actions[i]] = True
                    masks = masks & keep
                scores = np.where(masks, np.concatenate([p["scores"] for p in data[i]]), np.inf)
                acc[c.name] = learner.behaviour_clone(
                    np.concatenate([p["obs"] for p in data[i]]),
                    masks,
                    np.concatenate([p["actions"] for p in data[i]]),
                    gen,
                    targets=soft_labels(scores, learner.config.bc_temperature),
                )
        self.timings_["imitation_s"] += time.perf_counter() - t0
        return {"accuracy": acc, "labels": {c.name: int(sum(len(p["actions"]) for p in d))
                                            for c, d in zip(clusters, data)},
                "kept_actions": self.agent.kept_actions}  # fmt: skip

    def fit(self, episodes: int) -> Trainer:
        """Train until ``episodes`` PPO episodes have been played in total; returns self."""
        from tqdm.auto import tqdm

        torch.set_num_threads(1)
        has_ckpt = any((self.out / "checkpoints").glob("ep*"))
        if self.resume and has_ckpt:
            self._restore()
        elif has_ckpt or (self.out / LOG_FILE).exists():
            raise UserError(
                f"{self.out} already holds a training run; pass --resume or choose another --out"
            )
        info = {**self.run_info, "seed": self.seed, "scenarios": self.scenarios, "episodes": int(episodes),
                "episodes_per_update": self.episodes_per_update, "checkpoint_every": self.checkpoint_every,
                "imitation_episodes": self.imitation_episodes, "dagger_rounds": self.dagger_rounds,
                "prune_actions": self.prune_actions, "max_start": self.max_start,
                "workers": self.workers, "agent": self.agent.metadata()}  # fmt: skip
        try:
            if self.episodes_done_ == 0 and self.updates_done_ == 0:
                if self.imitation_episodes > 0:
                    info["imitation"] = self.imitate()
                self._checkpoint()
            bar = tqdm(
                total=episodes,
                initial=min(self.episodes_done_, episodes),
                disable=not self.progress,
                desc="training",
                unit="episode",
            )
            last_ckpt = self.episodes_done_ // self.checkpoint_every
            while self.episodes_done_ < episodes:
                n = min(self.episodes_per_update, episodes - self.episodes_done_)
                first = self.episodes_done_
                t0 = time.perf_counter()
                results = self._collect([self.task(e) for e in range(first, first + n)])
                t1 = time.perf_counter()
                for r in results:
                    for learner, t in zip(self.agent.learners, r["trajectories"]):
                        learner.add_trajectory(**t, last_value=0.0)
                for learner in self.agent.learners:
                    learner.update(update_generator(self.seed, self.updates_done_))
                self.updates_done_ += 1
                self.timings_["collect_s"] += t1 - t0
                self.timings_["update_s"] += time.perf_counter() - t1
                self._append_log(
                    self.out / LOG_FILE,
                    [{"episode": first + j, **r["stats"]} for j, r in enumerate(results)],
                    self.columns,
                )
                self.episodes_done_ += n
                bar.update(n)
                survived = np.mean(
                    [r["stats"]["survived_steps"] / r["stats"]["max_steps"] for r in results]
                )
                bar.set_postfix(survived=f"{survived:.0%}")
                if (
                    self.episodes_done_ // self.checkpoint_every > last_ckpt
                    or self.episodes_done_ >= episodes
                ):
                    last_ckpt = self.episodes_done_ // self.checkpoint_every
                    self._checkpoint()
            bar.close()
        finally:
            if self._pool is not None:
                self._pool.shutdown()
                self._pool = None
        final = self.out / "final"
        tmp = self.out / ".final.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        self.agent.save(tmp)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        info["timings"] = self.timings_
        write_json(self.out / RUN_FILE, info)
        return self


def latest_checkpoint(out_dir) -> Path | None:
    """The newest ``checkpoints/ep*`` folder of a training output, or None."""
    ckpts = sorted(
        p for p in (Path(out_dir) / "checkpoints").glob("ep*") if (p / META_FILE).is_file()
    )
    return ckpts[-1] if ckpts else None
