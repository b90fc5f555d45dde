"""Executor backends: throughput of Ray actors vs local worker processes, same tasks, same run.

    python -m benchmarks.bench_executor [--workers 1,2] [--repeat 2]

Three representative task kinds, each through `ctx.env` / the shared input like the real
stages: *collect* (short random-topology episodes of l2rpn_case14_sandbox, one per seed),
*mi* (Mixed-KSG of one target column against every input column of a shared data matrix, one
task per target column) and *evaluate* (a full do-nothing episode of case14, at most 300
steps). Every worker is warmed up first (its env built, the MI kernel loaded), so the figures
are the steady state; Ray's fixed start-up cost (``ray.init`` + actor creation + the first env
in an actor) is printed apart. Throughput is tasks/s (best of ``--repeat``); the ratio is
Ray / processes at the same number of workers, both measured in this run.
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np

from distributed_grid2op.envs import EnvSpec
from distributed_grid2op.execution import Executor, available_cpus

SPEC = EnvSpec("l2rpn_case14_sandbox")


# ---- task functions ----------------------------------------------------------------------------
def warm(ctx, task, shared):
    """Build the env and load the MI kernel; the sleep makes every worker take one."""
    from clustering.mutual_info import mixed_ksg

    ctx.env(SPEC)
    rng = np.random.default_rng(0)
    mixed_ksg(rng.normal(size=50), rng.normal(size=50), 3)
    time.sleep(0.5)
    return task


def collect(ctx, seed, shared):
    """A short episode under random set-bus actions (the collection stage's task)."""
    env = ctx.env(SPEC)
    env.seed(seed)
    obs = env.reset(options={"time serie id": seed % 3})
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(shared["steps"]):
        sub = int(rng.integers(env.n_sub))
        bus = rng.integers(1, 3, int(env.sub_info[sub]))
        act = env.action_space({"set_bus": {"substations_id": [(sub, bus)]}})
        obs, _, done, _ = env.step(act)
        rows.append(obs.rho.copy())
        if done:
            break
    return np.array(rows)


def mi_column(ctx, j, shared):
    """Mixed-KSG of target column ``j`` against every input column (the MI stage's task)."""
    from clustering.mutual_info import mixed_ksg

    targets, inputs, k = shared["targets"], shared["inputs"], shared["k"]
    return np.array([mixed_ksg(targets[:, j], inputs[:, i], k) for i in range(inputs.shape[1])])


def evaluate(ctx, scenario, shared):
    """A do-nothing episode of at most ``max_steps`` (the evaluation stage's task)."""
    env = ctx.env(SPEC)
    env.seed(scenario)
    obs = env.reset(options={"time serie id": scenario % 3})
    total, steps = 0.0, 0
    for steps in range(1, shared["max_steps"] + 1):  # noqa: B007 - steps is the result
        obs, reward, done, _ = env.step(env.action_space({}))
        total += float(reward)
        if done:
            break
    return steps, total


def _mi_data(n: int, cols: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    inputs = rng.integers(0, 10, (n, cols)).astype(float)
    noise = rng.normal(size=(n, cols))
    targets = 0.05 * inputs[:, ::-1] + 0.3 * noise
    targets[rng.random((n, cols)) < 0.1] = 0.0
    return {"targets": targets, "inputs": inputs, "k": 5}


def _kinds(args) -> dict:
    return {
        "collect": (collect, list(range(args.episodes)), {"steps": args.steps}),
        "mi": (mi_column, list(range(args.mi_cols)), _mi_data(args.mi_samples, args.mi_cols)),
        "evaluate": (evaluate, list(range(args.eval_episodes)), {"max_steps": 300}),
    }


def _timed(ex: Executor, fn, tasks, shared) -> tuple[float, list]:
    t0 = time.perf_counter()
    out = ex.map(fn, tasks, shared)
    return time.perf_counter() - t0, out


def _same(a, b) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.array_equal(np.asarray(a), np.asarray(b))
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_executor", description=__doc__.splitlines()[0]
    )
    p.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    p.add_argument("--repeat", type=int, default=2, help="timed runs per case (best kept)")
    p.add_argument("--episodes", type=int, default=16, help="collect: episodes")
    p.add_argument("--steps", type=int, default=50, help="collect: steps per episode")
    p.add_argument("--mi-samples", type=int, default=5000, help="mi: rows of the data matrix")
    p.add_argument("--mi-cols", type=int, default=8, help="mi: target and input columns")
    p.add_argument("--eval-episodes", type=int, default=6, help="evaluate: episodes")
    args = p.parse_args(argv)
    counts = [int(w) for w in args.workers.split(",")]
    kinds = _kinds(args)

    import ray

    from distributed_grid2op.execution_ray import init_ray

    print(
        f"python {platform.python_version()}, ray {ray.__version__}, numpy {np.__version__}; "
        f"{available_cpus()} CPUs; l2rpn_case14_sandbox (lightsim2grid)"
    )
    was_up = ray.is_initialized()
    t0 = time.perf_counter()
    init_ray(None, max(counts))
    t_init = time.perf_counter() - t0
    startup, rates, overhead = {}, {}, {}
    for workers in counts:
        with Executor(workers, "processes") as proc, Executor(workers, "ray") as on_ray:
            t0 = time.perf_counter()
            on_ray.map(_noop, range(workers))
            t_actors = time.perf_counter() - t0
            t0 = time.perf_counter()
            on_ray.map(warm, range(workers))
            startup[workers] = (t_actors, time.perf_counter() - t0 - 0.5)  # less its sleep
            proc.map(warm, range(workers))
            best: dict = {}
            for _ in range(args.repeat):  # interleaved, so that a change of load hits both
                for name, (fn, tasks, shared) in kinds.items():
                    t_proc, out_proc = _timed(proc, fn, tasks, shared)
                    t_ray, out_ray = _timed(on_ray, fn, tasks, shared)
                    assert _same(out_proc, out_ray), f"{name}: results differ"
                    for key, t in (("processes", t_proc), ("ray", t_ray)):
                        best[key, name] = min(best.get((key, name), float("inf")), t)
            for key in ("processes", "ray"):
                rates[key, workers] = {n: len(kinds[n][1]) / best[key, n] for n in kinds}
            n_noop = 200  # the backends' own cost per task: empty tasks
            overhead[workers] = tuple(
                min(_timed(ex, _noop, range(n_noop), None)[0] for _ in range(args.repeat)) / n_noop
                for ex in (proc, on_ray)
            )
    if not was_up:
        ray.shutdown()

    print(f"ray start-up: ray.init {t_init:.1f} s (local, {max(counts)} CPUs)", end="")
    for workers, (t_actors, t_warm) in startup.items():
        print(f"; {workers} actors {t_actors:.1f} s + first env {t_warm:.1f} s", end="")
    print()
    header = f"{'task kind':<10}{'workers':>8}{'processes/s':>13}{'ray/s':>9}{'ray/proc':>10}"
    print(header)
    table = []
    for name in kinds:
        for workers in counts:
            proc, on_ray = rates["processes", workers][name], rates["ray", workers][name]
            print(f"{name:<10}{workers:>8}{proc:>13.2f}{on_ray:>9.2f}{on_ray / proc:>10.2f}")
            table.append({"kind": name, "workers": workers, "processes": proc, "ray": on_ray})
    for workers, (t_proc, t_ray) in overhead.items():
        print(
            f"empty tasks, {workers} workers: processes {1e3 * t_proc:.2f} ms/task, "
            f"ray {1e3 * t_ray:.2f} ms/task"
        )
    print("results identical on both backends: yes")
    return {"ray_init_s": t_init, "startup": startup, "rows": table, "overhead": overhead}


def _noop(ctx, task, shared):
    return task


if __name__ == "__main__":
    main()
