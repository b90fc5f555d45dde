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

Continuous agents (an agent with redispatch, curtailment or storage actions, see
`agents.hierarchical`) learn off-policy from every step: each episode returns, per continuous
agent, its transitions (features before the step, its action in [-1, 1]^d, the reward
``agent.unit_reward`` = `cost.transition_reward`, features after, done = game over); after
each round they go into the agent's replay buffer and it makes one update per new
transition, drawn from a torch Generator of ``(seed, update)``. The replay buffers are part
of each checkpoint (``replay.pt``), so resuming is exact on that path too.

Output folder: ``train_log.csv`` (one row per episode), ``imitation_log.csv``,
``checkpoints/epNNNNNN/`` (agent + trainer state, written atomically), ``final/``, ``run.json``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch

from distributed_grid2op.checkpoints import META_FILE, latest_checkpoint
from distributed_grid2op.envs import EnvSpec
from distributed_grid2op.errors import UserError
from distributed_grid2op.execution import Executor, torch_threads
from distributed_grid2op.io import (
    atomic_dir,
    ensure_writable_dir,
    write_bytes,
    write_json,
    write_text,
)
from distributed_grid2op.loop import DecisionLoop, Step

LOG_FILE, IMITATION_LOG, STATE_FILE, RUN_FILE, REPLAY_FILE = (
    "train_log.csv",
    "imitation_log.csv",
    "trainer.json",
    "run.json",
    "replay.pt",
)
BASE_COLUMNS = ["episode", "scenario", "seed", "start", "survived_steps", "max_steps", "safe_steps",
                "total_reward", "decisions", "reconnections"]  # fmt: skip
TRAJECTORY_KEYS = ("obs", "masks", "actions", "logps", "values", "rewards")
#: a continuous agent's transitions (`SACLearner.record`'s arguments)
TRANSITION_KEYS = ("obs", "actions", "rewards", "next_obs", "dones")


def episode_seed(seed: int, episode: int, phase: int = 0) -> int:
    """Independent reproducible seed of one episode (phase 0: PPO, 1: imitation)."""
    return int(
        np.random.SeedSequence([int(seed), int(phase), int(episode)]).generate_state(1)[0] >> 1
    )


def update_generator(seed: int, update: int, phase: int = 2) -> torch.Generator:
    """Minibatch shuffling of PPO update number ``update`` (phase 2), or the replay draws and
    noise of the continuous agents' updates of round ``update`` (phase 4): resume needs no
    RNG state."""
    return torch.Generator().manual_seed(
        int(np.random.SeedSequence([int(seed), int(phase), int(update)]).generate_state(1)[0])
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
    agent, env, *, scenario: int, seed: int, start: int = 0, mode: str = "policy"
) -> dict:
    """Play one episode through the decision loop; its statistics and, per cluster, what the
    learners need.

    ``mode="policy"``: sample the clusters' policies (numpy Generator seeded by ``seed``);
    the trajectory of a cluster holds its decisions with the env rewards summed from each
    decision to its next one (the AEC convention). ``mode="expert"``: the local greedy expert
    decides and its labels are recorded for behaviour cloning, with the simulated max rho of
    every candidate (``scores``, for soft labels); ``mode="dagger"``: the policy acts and the
    expert's labels and scores are recorded (DAgger).

    With continuous agents, they act at every step (sampling, noise from a torch Generator
    seeded by ``seed``) and the result holds their transitions (``"units"``, one dict of
    `TRANSITION_KEYS` arrays per continuous agent) and ``stats["unit_reward"]``, the sum of
    their rewards.
    """
    rng = np.random.default_rng(seed)
    clusters = agent.decomposition.clusters
    trajs = [{k: [] for k in TRAJECTORY_KEYS} for _ in clusters]
    scores: list[list[np.ndarray]] = [[] for _ in clusters]  # expert's simulated max rho
    tally = {"safe_steps": None, "total": 0.0, "reconnections": 0, "unit_reward": 0.0, "turns": 0}
    unit_clusters = [clusters[i] for i in agent.unit_clusters]
    units = [{k: [] for k in TRANSITION_KEYS} for _ in unit_clusters]

    def observe(step: Step) -> None:
        if tally["safe_steps"] is None and float(np.max(step.obs_before.rho)) >= agent.danger:
            tally["safe_steps"] = loop.steps - 1
        tally["total"] += step.reward
        tally["reconnections"] += step.decision.agent == "reconnect"
        for t in trajs:
            if t["rewards"]:
                t["rewards"][-1] += step.reward
        if step.units is not None:
            game_over = step.done and loop.terminated
            r = agent.unit_reward(step.obs_before, step.obs, game_over)
            tally["unit_reward"] += r
            vect = step.obs.to_vect()
            for c, u, x, a in zip(unit_clusters, units, step.units["features"],
                                  step.units["actions"]):  # fmt: skip
                for k, v in zip(TRANSITION_KEYS, (x, a, r, c.unit_features(vect, step.obs),
                                                  float(game_over))):  # fmt: skip
                    u[k].append(v)

    every = agent.every_step(deterministic=False, rng=torch.Generator().manual_seed(int(seed)))
    loop = DecisionLoop(env, agent.controller, observer=observe, every_step=every)
    options = {"time serie id": int(scenario)}
    if start:
        options["init ts"] = int(start)
    loop.reset(seed=seed, options=options)
    max_steps = int(env.max_episode_duration()) - int(start)
    loop.advance()
    while not loop.done:
        obs, turn = loop.obs, loop.pending
        action, d = agent.decide(obs, turn, deterministic=False, rng=rng)
        tally["turns"] += 1
        if d.proposals is not None:  # a grid turn: every cluster's proposal is a decision
            if mode in ("expert", "dagger"):
                labels, grid_scores, _ = agent.grid_expert(obs)
                for p in d.proposals:
                    p["action"], p["logp"] = labels[p["cluster"]], 0.0
                    scores[p["cluster"]].append(grid_scores[p["cluster"]])
                if mode == "expert":
                    acting = [p for p in d.proposals if p["action"] != 0]
                    action = agent.action_space({})
                    if acting:
                        c = acting[0]["cluster"]
                        action = clusters[c].action_set.to_grid2op(acting[0]["action"], obs)
                        d.action_id, d.cluster, d.agent = acting[0]["action"], c, clusters[c].name
                        d.substation = int(clusters[c].action_substation[acting[0]["action"]])
            for p in d.proposals:
                for k, v in zip(TRAJECTORY_KEYS, (p["features"], p["mask"], p["action"], p["logp"],
                                                  p["value"], 0.0)):  # fmt: skip
                    trajs[p["cluster"]][k].append(v)
            loop.apply(action, d)
            loop.advance()
            continue
        i, a, logp = d.cluster, d.action_id, d.logp
        if mode in ("expert", "dagger"):  # dagger: the policy acts, the expert labels
            sc = agent.expert_scores(obs, i, turn.substation)
            a, logp = agent.expert_choice(obs, i, turn.substation, sc), 0.0
            scores[i].append(sc)
            if mode == "expert":
                action = clusters[i].action_set.to_grid2op(a, obs)
                d.action_id = a
        for k, v in zip(TRAJECTORY_KEYS, (d.features, d.mask, a, logp, d.value, 0.0)):
            trajs[i][k].append(v)
        loop.apply(action, d)
        loop.advance()
    steps, safe = loop.steps, tally["safe_steps"]
    stats = {
        "scenario": int(scenario), "seed": int(seed), "start": int(start),
        "survived_steps": steps - int(loop.terminated), "max_steps": max_steps,
        "safe_steps": steps if safe is None else safe, "total_reward": round(tally["total"], 6),
        "decisions": tally["turns"],
        "reconnections": int(tally["reconnections"]),
    }  # fmt: skip
    for c, t in zip(clusters, trajs):
        stats[f"reward_{c.name}"] = round(float(sum(t["rewards"])), 6)
        stats[f"decisions_{c.name}"] = len(t["actions"])
    if unit_clusters:
        stats["unit_reward"] = round(tally["unit_reward"], 6)
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
    transitions = []
    for c, u in zip(unit_clusters, units):
        widths = {"obs": c.n_unit_features, "next_obs": c.n_unit_features, "actions": c.units.n}
        transitions.append({k: np.asarray(u[k], dtype=np.float32).reshape(
            (len(u[k]), widths[k]) if k in widths else (len(u[k]),)) for k in TRANSITION_KEYS})  # fmt: skip
    return {"stats": stats, "trajectories": arrays, "units": transitions}


def _episode_task(ctx, task: dict, shared: dict) -> dict:
    """Worker side: one episode with the agent of ``shared`` (made once per worker)."""
    spec, meta = shared["spec"], shared["meta"]
    structure = {k: v for k, v in meta.items() if k != "kept_actions"}  # pruning comes per call
    digest = hashlib.sha1(json.dumps(structure, sort_keys=True).encode()).hexdigest()
    key = ("agent", spec.key(), digest)
    env = ctx.env(spec)
    if key not in ctx.cache:
        ctx.cache[key] = shared["cls"].from_metadata(meta, env)
    agent = ctx.cache[key]
    agent.prune(shared["kept_actions"]).load_policy_states(shared["weights"])
    return run_episode(agent, env, **task)


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
        workers: workers collecting episodes (1: in this process).
        executor: an `execution.Executor` to collect with (default: one of ``workers``).
        resume: continue from the latest checkpoint in ``out_dir``.
        progress: show a tqdm bar.
        resume_check: the options that change results (`TrainConfig.result_options`): saved
            with every checkpoint; ``--resume`` refuses to continue when one differs.
    """

    def __init__(
        self,
        agent,
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
        executor: Executor | None = None,
        resume_check: dict | None = None,
    ):
        workers = executor.workers if executor is not None else int(workers)
        if workers > 1 and spec is None:
            raise UserError("workers need an EnvSpec to make their envs")
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
        self.resume_check = json.loads(json.dumps(resume_check or {}, default=str))
        self.episodes_done_, self.updates_done_ = 0, 0
        self.columns = BASE_COLUMNS + [
            f"{p}_{c}" for c in agent.decomposition.names for p in ("reward", "decisions")
        ]
        if agent.unit_learners:
            self.columns.append("unit_reward")
        self._executor, self._own_executor = executor, executor is None
        self.timings_ = {"collect_s": 0.0, "update_s": 0.0, "imitation_s": 0.0}

    # ---- schedule ---------------------------------------------------------------------
    def task(self, episode: int, phase: int = 0, mode: str = "policy") -> dict:
        s = episode_seed(self.seed, episode, phase)
        rng = np.random.default_rng(s)
        scenario = self.scenarios[int(rng.integers(len(self.scenarios)))]
        start = int(rng.integers(self.max_start + 1)) if self.max_start > 0 else 0
        return {"scenario": scenario, "seed": s, "start": start, "mode": mode}

    def _collect(self, tasks: list[dict]) -> list[dict]:
        """Play the episodes of ``tasks``: here, or on the executor's workers (each with its
        own env and agent copy, given the current weights); results in task order."""
        if self.workers <= 1:
            return [run_episode(self.agent, self.agent.env, **t) for t in tasks]
        if self._executor is None:
            self._executor = Executor(self.workers)
        shared = {"cls": type(self.agent), "spec": self.spec, "meta": self.agent.metadata(),
                  "weights": self.agent.policy_states(), "kept_actions": self.agent.kept_actions}  # fmt: skip
        return self._executor.map(_episode_task, tasks, shared)

    # ---- persistence ------------------------------------------------------------------
    def _checkpoint(self) -> Path:
        final = self.out / "checkpoints" / f"ep{self.episodes_done_:06d}"
        with atomic_dir(final) as tmp:
            self.agent.save(tmp)
            write_json(
                tmp / STATE_FILE,
                {
                    "episodes_done": self.episodes_done_,
                    "updates_done": self.updates_done_,
                    "seed": self.seed,
                    "scenarios": self.scenarios,
                    "options": self.resume_check,
                },
            )
            if self.agent.unit_learners:
                buffer = io.BytesIO()
                torch.save([lr.replay_state() for lr in self.agent.unit_learners], buffer)
                write_bytes(tmp / REPLAY_FILE, buffer.getvalue())
        return final

    def _restore(self) -> None:
        ckpt = latest_checkpoint(self.out, STATE_FILE)
        if ckpt is None:
            raise UserError(f"--resume: no checkpoint in {self.out / 'checkpoints'}")
        try:
            state = json.loads((ckpt / STATE_FILE).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise UserError(f"{ckpt / STATE_FILE}: unreadable trainer state ({exc})") from exc
        if state["seed"] != self.seed or state["scenarios"] != self.scenarios:
            raise UserError(
                f"--resume: {ckpt} was made with seed {state['seed']} on scenarios "
                f"{state['scenarios']}; rerun with the same options"
            )
        saved = state.get("options", {})
        differ = sorted(k for k in set(saved) | set(self.resume_check)
                        if saved.get(k) != self.resume_check.get(k))  # fmt: skip
        if differ:
            what = ", ".join(f"--{k.replace('_', '-')} {saved.get(k)!r} -> "
                             f"{self.resume_check.get(k)!r}" for k in differ)  # fmt: skip
            raise UserError(
                f"--resume: options differ from the run being resumed ({what}); rerun with the "
                "same options or choose another --out"
            )
        self.agent.restore(ckpt)
        if self.agent.unit_learners:
            try:
                replays = torch.load(ckpt / REPLAY_FILE, weights_only=False)
                for learner, replay in zip(self.agent.unit_learners, replays, strict=True):
                    learner.load_replay_state(replay)
            except (OSError, RuntimeError, ValueError, KeyError, EOFError) as exc:
                raise UserError(f"{ckpt / REPLAY_FILE}: unreadable replay buffers ({exc})") from exc
        self.episodes_done_, self.updates_done_ = (
            int(state["episodes_done"]),
            int(state["updates_done"]),
        )
        self._truncate_log(self.out / LOG_FILE, self.episodes_done_)

    def _truncate_log(self, path: Path, rows: int) -> None:
        """Drop log rows written after the checkpoint (they will be played again)."""
        if not path.is_file():
            return
        lines = path.read_text(encoding="utf-8").splitlines()
        write_text(path, "".join(line + "\n" for line in lines[: 1 + rows]))

    def _append_log(self, path: Path, rows: list[dict], columns: list[str]) -> None:
        new = not path.is_file() or path.stat().st_size == 0
        with open(path, "a", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
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
        if not self.agent.learners:
            raise UserError("imitation needs topology actions (the expert chooses topologies)")
        if not all(getattr(lr, "supports_imitation", False) for lr in self.agent.learners):
            raise UserError(f"learner {self.agent.learner_name!r} does not support imitation")
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

    def _update_units(self, results: list[dict]) -> None:
        """Continuous agents: record the round's transitions, then one update per new
        transition (replay draws and noise from the round's generator)."""
        if not self.agent.unit_learners:
            return
        new = 0
        for r in results:
            for learner, t in zip(self.agent.unit_learners, r["units"], strict=True):
                learner.record(**t)
            new += len(r["units"][0]["rewards"])
        gen = update_generator(self.seed, self.updates_done_, phase=4)
        for learner in self.agent.unit_learners:
            for _ in range(new):
                learner.update(gen)

    def fit(self, episodes: int) -> Trainer:
        """Train until ``episodes`` episodes have been played in total; returns self.

        Runs with one torch thread (small networks; the caller's setting is restored)."""
        with torch_threads(1):
            return self._fit(int(episodes))

    def _fit(self, episodes: int) -> Trainer:
        from tqdm.auto import tqdm

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
            total_updates = max(1, math.ceil(episodes / self.episodes_per_update))
            while self.episodes_done_ < episodes:
                n = min(self.episodes_per_update, episodes - self.episodes_done_)
                first = self.episodes_done_
                t0 = time.perf_counter()
                results = self._collect([self.task(e) for e in range(first, first + n)])
                t1 = time.perf_counter()
                for r in results:
                    for learner, t in zip(self.agent.learners, r["trajectories"]):
                        learner.record(**t, last_value=0.0)
                lr_frac = 1.0 - self.updates_done_ / total_updates  # PPOConfig.anneal_lr
                for learner in self.agent.learners:
                    learner.update(update_generator(self.seed, self.updates_done_), lr_frac)
                self._update_units(results)
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
            if self._executor is not None and self._own_executor:
                self._executor.close()
                self._executor = None
        with atomic_dir(self.out / "final") as tmp:
            self.agent.save(tmp)
        info["timings"] = self.timings_
        write_json(self.out / RUN_FILE, info)
        return self


__all__ = ["Trainer", "latest_checkpoint", "run_episode", "soft_labels", "META_FILE"]
