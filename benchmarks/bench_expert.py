"""Decision cost of the greedy expert, one process on one core.

    python -m benchmarks.bench_expert --action-set idf.json [--env l2rpn_idf_2023]
        [--thermal-limit-scale 1.0] [--budget 100] [--states 12] [--danger 0.95]

Do-nothing with safe reconnection is played on the env's scenarios until ``--states`` danger
states (max rho >= ``--danger``) are met; at each, the expert (`baselines.GreedyExpert` over
the reduced set, ``--budget`` simulations at most) decides once, and one ``obs.simulate`` of
do-nothing is timed as the baseline measured in the same run (median of 5). Printed per state and in
total: ms per decision, simulations per decision, and the ratio decision time / (simulations
x one simulation): the search's overhead beyond its simulations (1.0 = none). The
"under 1 s per decision on one core" target of the 118-bus expert is read off the first
column; the ratio is what stays comparable on a loaded machine.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np


def main(argv=None) -> int:
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    from distributed_grid2op.actions.file import load_action_file
    from distributed_grid2op.baselines import GreedyExpert
    from distributed_grid2op.envs import make_env, n_scenarios, quiet_grid2op
    from distributed_grid2op.loop import Controller, Turn

    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_expert")
    p.add_argument("--env", default="l2rpn_idf_2023")
    p.add_argument("--action-set", required=True)
    p.add_argument("--thermal-limit-scale", type=float, default=1.0)
    p.add_argument("--budget", type=int, default=100)
    p.add_argument("--states", type=int, default=12)
    p.add_argument("--danger", type=float, default=0.95)
    args = p.parse_args(argv)
    with quiet_grid2op():
        env = make_env(args.env, thermal_limit_scale=args.thermal_limit_scale)
    af = load_action_file(args.action_set, env)
    expert = GreedyExpert(env.action_space, env, danger=args.danger, action_file=af,
                          budget=args.budget)  # fmt: skip
    rules = Controller(env, danger=np.inf, reconnect="safe")
    rows = []
    for scenario in range(n_scenarios(env)):
        with quiet_grid2op():
            obs = env.reset(seed=scenario, options={"time serie id": scenario})
        rules.reset()
        done = False
        while not done and len(rows) < args.states:
            if float(np.max(obs.rho)) >= args.danger:
                times = []
                for _ in range(5):
                    t0 = time.perf_counter()
                    obs.simulate(env.action_space({}))
                    times.append((time.perf_counter() - t0) * 1e3)
                sim_ms = float(np.median(times))
                before = expert.n_simulations_
                t0 = time.perf_counter()
                expert.decide(obs, Turn())
                ms = (time.perf_counter() - t0) * 1e3
                n = expert.n_simulations_ - before
                rows.append((ms, n, sim_ms))
                print(f"state {len(rows):2d}: {ms:7.1f} ms, {n:3d} simulations, "
                      f"ratio {ms / (n * sim_ms):.2f}", flush=True)  # fmt: skip
            obs, _, done, _ = env.step(rules.decide(obs).action)
        if len(rows) >= args.states:
            break
    if not rows:
        print("no danger state met")
        return 1
    ms, n, sim = (np.asarray(c, dtype=float) for c in zip(*rows))
    print(f"{args.env} x{args.thermal_limit_scale}, {len(af)} actions, budget {args.budget}: "
          f"{ms.mean():.0f} ms per decision (max {ms.max():.0f}), {n.mean():.1f} simulations, "
          f"{sim.mean():.2f} ms per simulation, overhead ratio {np.mean(ms / (n * sim)):.2f}, "
          f"load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
