"""Sensitivity-mode collection throughput vs the cost of ``obs.simulate`` (118-bus grid).

    python -m benchmarks.bench_sensitivity [--samples N] [--json OUT.json]

One process, one core (one worker), ``l2rpn_idf_2023`` bundled, two controllable
substations. Measured in the same run:

1. baseline: ``obs.simulate`` calls/s of random unitary topologies of those substations from
   do-nothing states (the floor of any simulation-based collection);
2. ``clustering.power_grid.collect`` in simulate mode (1 action per state) and in
   sensitivity mode (a do-nothing reference + 8 actions per state, the 118-bus default):
   samples/s, simulate calls/s, and both as a ratio of the baseline's calls/s.

A sample in sensitivity mode costs 1 + 1/8 simulate calls plus 1/8 of an env step and of
the episode starts, so its samples/s approach the simulate calls/s (ratio near 0.85-0.9).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ENV = "l2rpn_idf_2023"
SUBS = (16, 68)


def bench_simulate(n_calls: int, seed: int = 0) -> dict:
    """obs.simulate calls/s of random unitary topologies of `SUBS` from do-nothing states."""
    from clustering.power_grid.collect import _worker_env
    from distributed_grid2op.envs import EnvSpec, quiet_grid2op
    from distributed_grid2op.grid import unitary_topologies

    env = _worker_env(EnvSpec(ENV))
    rng = np.random.default_rng(seed)
    topo = {s: unitary_topologies(env, s) for s in SUBS}
    with quiet_grid2op():
        obs = env.reset(seed=seed, options={"time serie id": 0})
        states = []
        for _ in range(16):  # do-nothing states, made outside the timing
            states.append(obs)
            obs, _, done, _ = env.step(env.action_space({}))
            if done:
                break
        t0 = time.perf_counter()
        for i in range(n_calls):
            sub = SUBS[i % len(SUBS)]
            states[i % len(states)].simulate(topo[sub][int(rng.integers(len(topo[sub])))])
        dt = time.perf_counter() - t0
    return {"stage": "obs.simulate (baseline)", "calls": n_calls, "seconds": round(dt, 2),
            "calls_per_s": round(n_calls / dt, 1)}  # fmt: skip


def bench_collect(samples: int) -> list[dict]:
    from clustering.power_grid.collect import CollectSettings, collect
    from distributed_grid2op.envs import EnvSpec
    from distributed_grid2op.execution import Executor

    rows = []
    with Executor(1) as ex, tempfile.TemporaryDirectory() as tmp:
        for mode, per_state in (("simulate", 1), ("sensitivity", 8)):
            settings = CollectSettings(
                spec=EnvSpec(ENV), substations=SUBS, n_episodes=200, n_samples=samples,
                mode=mode, seed=1, actions_per_state=per_state,
            )  # fmt: skip
            t0 = time.perf_counter()
            data = collect(settings, Path(tmp) / mode, executor=ex, progress=False, n_scenarios=2)
            dt = time.perf_counter() - t0
            n = sum(len(d) for d in data.values())
            calls = n * (1 + (1 / per_state if mode == "sensitivity" else 0))
            rows.append({"stage": f"collect {mode} ({per_state}/state)", "samples": n,
                         "seconds": round(dt, 2), "samples_per_s": round(n / dt, 1),
                         "calls_per_s": round(calls / dt, 1)})  # fmt: skip
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_sensitivity")
    p.add_argument("--samples", type=int, default=400, help="samples per substation and mode")
    p.add_argument("--json", help="also write the rows to this JSON file")
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore")
    from clustering.power_grid.collect import _worker_env
    from distributed_grid2op.envs import EnvSpec, quiet_grid2op

    with quiet_grid2op():
        _worker_env(EnvSpec(ENV))  # the env made once, outside every timing
    base = bench_simulate(max(200, args.samples // 2))
    rows = [base, *bench_collect(args.samples)]
    for r in rows[1:]:
        r["samples_per_s_vs_simulate"] = round(r["samples_per_s"] / base["calls_per_s"], 2)
    for r in rows:
        print(json.dumps(r))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
