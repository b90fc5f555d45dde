"""Per-worker throughput of every stage on the 118-bus grid (``l2rpn_idf_2023``, bundled).

    python -m benchmarks.bench_118 [--action-set FILE] [--quick] [--json OUT.json]

One process, one core (what one worker, local process or Ray actor, does); ~1-2 min on a
loaded 2-core machine. Stages:

1. collection: transitions/s through `clustering.power_grid.collect` (serial executor, the
   worker's env already made), thesis mode and simulate mode, a small budget on two
   substations;
2. MI: Mixed-KSG pairs/s (`clustering.mutual_info.mixed_ksg`, k = N/20 as in the pipeline)
   on random (line loading, action) data of N = 1000 and N = 50 000 rows;
3. evaluation: env steps/s of do-nothing; decisions/s of the greedy expert with a reduced
   action set (``--action-set``, an ``actions.json`` of l2rpn_idf_2023) and budget 100;
4. training: `distributed_grid2op.training.run_episode` of the hierarchical agent (one
   cluster per operator area, the action set's actions) in mode ``expert`` (imitation
   episodes labelled by the cluster-local expert) and ``policy`` (PPO episodes) on short
   episodes (150 steps from the scenario start): steps/s, decisions,
   and the episodes/hour of 2016-step episodes it implies.

Without ``--action-set`` a reduced set is made first (``python -m distributed_grid2op.actions
--env l2rpn_idf_2023 --states 4``, ~3 min on 2 cores). The figures feed the Ray projection in
``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ENV = "l2rpn_idf_2023"
DEFAULT_ACTIONS = "/tmp/act_m/l2rpn_idf_2023_1.0.json"


def _load() -> str:
    try:
        return " ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:  # pragma: no cover
        return "?"


def area_factorization(env):
    """The operator's areas of the 118-bus grid as a factorization (a line joins the area of
    its origin substation)."""
    from distributed_grid2op.factorization_file import parse_factorization
    from distributed_grid2op.grid import line_endpoints

    areas = env._game_rules.legal_action.substations_id_by_area
    area_of = {int(s): i for i, subs in enumerate(areas.values()) for s in subs}
    origin, _ = line_endpoints(env)
    clusters = [
        {
            "substations": sorted(s for s, a in area_of.items() if a == i),
            "lines": [int(li) for li in range(env.n_line) if area_of[int(origin[li])] == i],
        }
        for i in range(len(areas))
    ]
    doc = {"format": 1, "env": ENV, "method": "operator-areas", "params": {}, "clusters": clusters}
    return parse_factorization(doc, n_sub=int(env.n_sub), n_line=int(env.n_line))


def bench_collection(samples: int) -> list[dict]:
    from clustering.power_grid.collect import CollectSettings, collect
    from distributed_grid2op.envs import EnvSpec
    from distributed_grid2op.execution import Executor

    spec = EnvSpec(ENV)
    rows = []
    subs = (16, 68)  # two controllable substations of the 58
    with Executor(1) as ex, tempfile.TemporaryDirectory() as tmp:
        warm = CollectSettings(spec=spec, substations=(subs[0],), n_episodes=1, n_samples=1)
        t0 = time.perf_counter()  # a worker's first task: imports done, its env made
        collect(warm, Path(tmp) / "warm", executor=ex, progress=False, n_scenarios=2)
        rows.append({"stage": "worker start (make the env + 1 sample)",
                     "seconds": round(time.perf_counter() - t0, 2)})  # fmt: skip
        for mode in ("thesis", "simulate"):
            settings = CollectSettings(
                spec=spec, substations=subs, n_episodes=200, n_samples=samples, mode=mode,
                seed=1, max_steps=None if mode == "thesis" else 100, episodes_per_shard=2,
            )  # fmt: skip
            t0 = time.perf_counter()
            data = collect(settings, Path(tmp) / mode, executor=ex, progress=False, n_scenarios=2)
            dt = time.perf_counter() - t0
            n = sum(len(d) for d in data.values())
            rows.append({"stage": f"collect {mode}", "samples": n, "seconds": round(dt, 2),
                         "per_s": round(n / dt, 1)})  # fmt: skip
    return rows


def bench_mi(sizes=((1000, 5), (50_000, 2))) -> list[dict]:
    from clustering.mutual_info import mixed_ksg

    rng = np.random.default_rng(0)
    rows = []
    mixed_ksg(rng.normal(size=200), rng.normal(size=200), k=10)  # load the numba kernel
    for n, repeat in sizes:
        k = max(1, n // 20)
        pairs = {}
        # action codes of one substation: its distinct topologies seen (the 118-bus grid's
        # substations: 46 of 58 have <= 64 unitary topologies, one has 65 505)
        for codes in (10, 1000) if n < 10_000 else (10, 100, 1000, 10_000):
            a = rng.integers(0, codes, n).astype(float)
            t = np.where(rng.random(n) < 0.1, 0.0, a / codes + 0.3 * rng.normal(size=n))
            pairs[f"rho vs action ({codes} codes)"] = (t, a)
        x = rng.normal(size=n)
        pairs["continuous"] = (x, x + rng.normal(size=n))
        for name, (u, v) in pairs.items():
            times = []
            for _ in range(repeat):
                t0 = time.perf_counter()
                mixed_ksg(u, v, k=k)
                times.append(time.perf_counter() - t0)
            best = min(times)
            rows.append({"stage": f"MI {name}", "N": n, "k": k, "seconds": round(best, 4),
                         "per_s": round(1 / best, 2)})  # fmt: skip
    return rows


def bench_evaluation(action_set: str, steps: int, decisions: int) -> list[dict]:
    from distributed_grid2op.actions.file import load_action_file
    from distributed_grid2op.baselines import GreedyExpert
    from distributed_grid2op.envs import make_env, quiet_grid2op

    rows = []
    with quiet_grid2op():
        env = make_env(ENV, seed=0)
        env.reset(seed=0, options={"time serie id": 0})
        dn = env.action_space({})
        t0, n = time.perf_counter(), 0
        for _ in range(steps):
            _, _, done, _ = env.step(dn)
            n += 1
            if done:
                env.reset(seed=0, options={"time serie id": 1})
        dt = time.perf_counter() - t0
        rows.append({"stage": "env step (do-nothing)", "steps": n, "seconds": round(dt, 2),
                     "per_s": round(n / dt, 1)})  # fmt: skip

        af = load_action_file(action_set, env)
        expert = GreedyExpert(env.action_space, env, action_file=af, budget=100)
        made, spent, sims, played = 0, 0.0, 0, 0
        t_all = time.perf_counter()
        for scenario in (0, 1):
            obs = env.reset(seed=scenario, options={"time serie id": scenario})
            expert.reset(obs)
            done = False
            while not done and made < decisions:
                before = expert.n_simulations_
                t0 = time.perf_counter()
                action = expert.act(obs)
                dt = time.perf_counter() - t0
                if expert.n_simulations_ - before > 1:  # a search, not a reconnection check
                    made, spent, sims = made + 1, spent + dt, sims + expert.n_simulations_ - before
                obs, _, done, _ = env.step(action)
                played += 1
            if made >= decisions:
                break
        wall = time.perf_counter() - t_all
        rows.append({"stage": "expert decision (budget 100)", "decisions": made,
                     "simulations": sims, "seconds": round(spent, 2),
                     "per_s": round(made / spent, 2) if spent else None,
                     "steps_played": played, "wall_s": round(wall, 1)})  # fmt: skip
    return rows


def bench_training(action_set: str, episodes: int, length: int) -> list[dict]:
    from grid2op.Reward import CloseToOverflowReward

    from distributed_grid2op.actions.file import load_action_file
    from distributed_grid2op.agents import HierarchicalAgent
    from distributed_grid2op.envs import EnvSpec, quiet_grid2op
    from distributed_grid2op.training import run_episode

    with quiet_grid2op(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        probe = EnvSpec(ENV).make()
        fact = area_factorization(probe)
        af = load_action_file(action_set, probe)
        n = len(fact.clusters)
        spec = EnvSpec(ENV, reward=CloseToOverflowReward,
                       params={"MAX_SUB_CHANGED": n, "MAX_LINE_STATUS_CHANGED": n})  # fmt: skip
        env = spec.make(0)
        agent = HierarchicalAgent(env, fact, seed=0, spec=spec, action_file=af)
        env.set_max_iter(length)  # episodes from the scenario's start, cut to ``length`` steps
        rows = []
        for mode in ("expert", "policy"):  # imitation (and DAgger: same labels), then PPO
            steps, decisions, spent = 0, 0, 0.0
            for e in range(episodes):
                t0 = time.perf_counter()
                out = run_episode(agent, env, scenario=e % 2, seed=e, start=0, mode=mode)
                spent += time.perf_counter() - t0
                steps += int(out["stats"]["survived_steps"])
                decisions += int(out["stats"]["decisions"])
            per_step = spent / max(1, steps)
            rows.append({"stage": f"training episode ({mode})", "episodes": episodes,
                         "steps": steps, "decisions": decisions, "seconds": round(spent, 2),
                         "per_s": round(steps / spent, 1),
                         "episodes_per_hour_2016": round(3600 / (per_step * 2016), 1),
                         "decisions_per_step": round(decisions / max(1, steps), 4)})  # fmt: skip
    return rows


# ---- projection ------------------------------------------------------------------------------
RAY_TASK_S = 0.0013  # Ray's cost per task (docs/benchmarks.md: 0.8-1.3 ms, one actor call)
RAY_START_S = 7.0  # a local ray.init (joining a running cluster is faster)
SUBS, LINES, SAMPLES, PERMUTATIONS = 58, 186, 50_000, 5
SHARD_SAMPLES = 500  # transitions per collection task (a shard of a few episodes), assumed


def _codes_per_substation() -> list[float]:
    """Expected distinct actions among 50 000 uniform draws of each controllable substation's
    unitary topologies (the MI cost of a pair grows with the action column's distinct values)."""
    from distributed_grid2op.envs import make_env, quiet_grid2op
    from distributed_grid2op.grid import controllable_substations

    with quiet_grid2op():
        env = make_env(ENV)
    out = []
    for s in controllable_substations(env):
        n = int(env.sub_info[s])
        t = 2 ** (n - 1) - 1  # set-bus splits of n elements, up to symmetry (an upper bound)
        out.append(t * (1 - np.exp(-SAMPLES / t)))
    return out


def _mi_pair_seconds(rows: list[dict], codes: float) -> float:
    """Seconds of one N = 50 000 pair with ``codes`` distinct actions (log-interpolated)."""
    pts = sorted((int(r["stage"].split("(")[1].split()[0]), r["seconds"]) for r in rows
                 if r["stage"].startswith("MI rho vs action") and r.get("N") == SAMPLES)  # fmt: skip
    xs, ys = np.log([c for c, _ in pts]), [t for _, t in pts]
    return float(np.interp(np.log(max(codes, 1.0)), xs, ys))


def projection(rows: list[dict], workers=(16, 64), episodes_per_update: int = 16) -> list[dict]:
    """Wall time of the thesis-scale 118-bus factorization and of a 118-bus training run on
    ``workers`` cores, from the per-worker throughputs in ``rows`` (see docs/benchmarks.md)."""
    import math

    rate = {r["stage"]: r for r in rows}
    start = rate["worker start (make the env + 1 sample)"]["seconds"] + RAY_START_S
    total = SUBS * SAMPLES
    out = []
    pair_s = [_mi_pair_seconds(rows, c) for c in _codes_per_substation()]
    for mode in ("thesis", "simulate"):
        per_s = rate[f"collect {mode}"]["per_s"]
        for w in workers:
            tasks = total / SHARD_SAMPLES
            collect = (total / per_s + tasks * RAY_TASK_S) / w
            # MI + 5-permutation null, and again without terminal transitions (the default
            # terminal comparison): per substation one call of 186 pairs and one of 930,
            # each call a barrier (rounds of w pairs)
            mi = 0.0
            for t in pair_s:
                for pairs in (LINES, LINES * PERMUTATIONS):
                    mi += 2 * math.ceil(pairs / w) * (t + RAY_TASK_S)
            out.append({"run": f"factorization ({mode} collection)", "cores": w,
                        "start_s": round(start), "collect_s": round(collect),
                        "mi_s": round(mi), "total_min": round((start + collect + mi) / 60, 1)})  # fmt: skip
    expert = 2016 / rate["training episode (expert)"]["per_s"]
    policy = 2016 / rate["training episode (policy)"]["per_s"]
    for w in workers:
        imitation = math.ceil(120 / w) * expert  # all at once
        dagger = 3 * math.ceil(30 / w) * expert  # 3 rounds of 120 // 4 episodes
        ppo = math.ceil(100 / episodes_per_update) * math.ceil(episodes_per_update / w) * policy
        out.append({"run": "training (120 imitation + 90 DAgger + 100 PPO, 2016 steps)",
                    "cores": w, "start_s": round(start),
                    "imitation_s": round(imitation), "dagger_s": round(dagger),
                    "ppo_s": round(ppo),
                    "total_min": round((start + imitation + dagger + ppo) / 60, 1)})  # fmt: skip
    return out


def ensure_action_set(path: str | None) -> str:
    if path and Path(path).is_file():
        return path
    if Path(DEFAULT_ACTIONS).is_file():
        return DEFAULT_ACTIONS
    import subprocess
    import sys

    out = Path(tempfile.mkdtemp(prefix="bench118_")) / "actions.json"
    subprocess.run([sys.executable, "-m", "distributed_grid2op.actions", "--env", ENV,
                    "--states", "4", "--out", str(out)], check=True)  # fmt: skip
    return str(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_118", description=__doc__.split("\n")[0]
    )
    p.add_argument(
        "--action-set", help=f"reduced actions.json of {ENV} (default {DEFAULT_ACTIONS})"
    )
    p.add_argument("--quick", action="store_true", help="smaller budgets (a smoke run)")
    p.add_argument("--json", help="also write the rows to this JSON file")
    p.add_argument("--stages", default="collect,mi,evaluate,train")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)  # as in every worker (process or Ray actor)
    stages = set(args.stages.split(","))
    q = args.quick
    action_set = ensure_action_set(args.action_set)
    print(f"# {ENV}, one process; Python {platform.python_version()}, {os.cpu_count()} CPUs, "
          f"load {_load()}; action set {action_set}", flush=True)  # fmt: skip
    rows = []
    for name, fn in (
        ("collect", lambda: bench_collection(100 if q else 400)),
        ("mi", lambda: bench_mi(((1000, 3), (50_000, 1 if q else 2)))),
        ("evaluate", lambda: bench_evaluation(action_set, 200 if q else 575, 4 if q else 12)),
        ("train", lambda: bench_training(action_set, 2 if q else 4, 60 if q else 150)),
    ):
        if name not in stages:
            continue
        t0 = time.perf_counter()
        out = fn()
        for r in out:
            print(json.dumps(r), flush=True)
        print(f"# {name}: {time.perf_counter() - t0:.1f} s wall, load {_load()}", flush=True)
        rows += out
    if stages >= {"collect", "mi", "train"}:
        print("# projection (see docs/benchmarks.md for the assumptions)", flush=True)
        for r in projection(rows):
            print(json.dumps(r), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
