"""Evaluation throughput (worker processes vs one process) and decision time per baseline.

``python -m benchmarks.bench_evaluation [--quick]``. Every figure is printed next to a
reference measured in the same run (the machine is shared and noisy): throughput as a
ratio to one process, decision times as a ratio to one ``env.step``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

ENV = "l2rpn_case14_sandbox"
SCALE = 0.85


def _throughput(workers: int, episodes: int, max_steps: int, out: Path) -> tuple[float, int]:
    from distributed_grid2op.envs import EnvSpec
    from distributed_grid2op.evaluation import evaluate, run_specs

    spec = EnvSpec(ENV, thermal_limit_scale=SCALE)
    t0 = time.perf_counter()
    res = evaluate(
        run_specs(["reconnect", "expert"]), spec, out, episodes=episodes, max_steps=max_steps,
        workers=workers, progress=False,
    )  # fmt: skip
    return time.perf_counter() - t0, len(res.steps)


def _decision_times(max_steps: int) -> dict[str, tuple[float, float, int]]:
    """Per baseline: (ms per act, ms per decision, decisions) on scenario 0, plus env.step ms."""
    from distributed_grid2op.baselines import BASELINES, make_baseline
    from distributed_grid2op.envs import make_env, quiet_grid2op

    out = {}
    with quiet_grid2op():
        env = make_env(ENV, thermal_limit_scale=SCALE)
        step_ms = []
        for name in BASELINES:
            agent = make_baseline(name, env)
            obs = env.reset(seed=0, options={"time serie id": 0, "max step": max_steps})
            agent.reset(obs)
            reward, done, acts, decided = 0.0, False, [], []
            while not done:
                t0 = time.perf_counter()
                action = agent.act(obs, reward, done)
                t1 = time.perf_counter()
                obs, reward, done, _ = env.step(action)
                step_ms.append((time.perf_counter() - t1) * 1e3)
                acts.append((t1 - t0) * 1e3)
                decided.append(agent.last_decision["agent"] != "")
            acts, decided = np.asarray(acts), np.asarray(decided)
            per_decision = float(acts[decided].mean()) if decided.any() else float("nan")
            out[name] = (float(acts.mean()), per_decision, int(decided.sum()))
        out["env.step"] = (float(np.median(step_ms)), float("nan"), len(step_ms))
        env.close()
    return out


def main(argv=None) -> int:
    """Print the evaluation benchmark table."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_evaluation", description=__doc__)
    p.add_argument("--quick", action="store_true", help="fewer steps (a smoke run)")
    args = p.parse_args(argv)
    episodes, max_steps = (2, 40) if args.quick else (4, 150)
    print(f"# evaluation on {ENV}, thermal limits x {SCALE}; runs reconnect + expert")
    with tempfile.TemporaryDirectory() as tmp:
        t1, n1 = _throughput(1, episodes, max_steps, Path(tmp) / "w1")
        t2, n2 = _throughput(2, episodes, max_steps, Path(tmp) / "w2")
    assert n1 == n2
    print(
        f"{'workers':>8s} {'episodes':>8s} {'steps':>6s} {'seconds':>8s} {'steps/s':>8s} {'speed-up':>8s}"
    )
    print(f"{1:8d} {2 * episodes:8d} {n1:6d} {t1:8.1f} {n1 / t1:8.1f} {1.0:8.2f}")
    print(f"{2:8d} {2 * episodes:8d} {n2:6d} {t2:8.1f} {n2 / t2:8.1f} {t1 / t2:8.2f}")
    times = _decision_times(max_steps if args.quick else 300)
    step = times["env.step"][0]
    print(
        f"\n# decision time per baseline (scenario 0, one process); env.step median {step:.2f} ms"
    )
    print(
        f"{'baseline':>11s} {'ms/act':>8s} {'ms/decision':>11s} {'decisions':>9s} {'decision/step':>13s}"
    )
    for name, (per_act, per_decision, n) in times.items():
        if name == "env.step":
            continue
        print(f"{name:>11s} {per_act:8.2f} {per_decision:11.1f} {n:9d} {per_decision / step:13.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
