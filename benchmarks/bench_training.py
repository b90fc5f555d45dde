"""Training benchmarks: episode collection with worker processes, and decision time.

``python -m benchmarks.bench_training`` (``--quick`` for a smoke run) on l2rpn_case14_sandbox
with thermal limits x 0.85 (the stressed protocol):

1. collection speed-up: the same PPO episodes played by 1 process, then by ``--workers``
   worker processes (pool start-up reported apart, since a training run pays it once);
2. decision time: per decision (max rho >= 0.9 and a cluster acts) of the hierarchical agent
   (untrained weights cost the same as trained ones, or ``--agent DIR``), next to the greedy
   expert, on the same scenario in the same run: the ratio is what matters on a noisy machine.

``--agents DIR ...`` also evaluates trained agents (greedy, with ``--top-k`` variants) next to
do-nothing and the expert on held-out scenarios (``--split``) and writes ``--out`` CSV.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from distributed_grid2op import cli


def _spec(scale: float):
    from grid2op.Reward import CloseToOverflowReward

    from distributed_grid2op.envs import EnvSpec

    return EnvSpec("l2rpn_case14_sandbox", thermal_limit_scale=scale, reward=CloseToOverflowReward,
                   params={"MAX_SUB_CHANGED": 2, "MAX_LINE_STATUS_CHANGED": 2})  # fmt: skip


def bench_collection(
    spec, episodes: int, workers: int, max_start: int, agent_dir=None
) -> list[dict]:
    """Seconds to collect ``episodes`` episodes with 1 process and with ``workers``.

    Two workloads: ``policy`` (PPO episodes: cheap steps) and ``expert`` (imitation episodes
    labelled by the local greedy expert: ~50 simulations per decision), ``episodes // 4`` of them.
    """
    import tempfile

    from distributed_grid2op.agents import HierarchicalAgent, load_agent
    from distributed_grid2op.training import Trainer

    rows = []
    env = spec.make(0)
    tmp = tempfile.mkdtemp(prefix="bench_training_")
    for mode, n in (("policy", episodes), ("expert", max(2, episodes // 4))):
        for w in sorted({1, workers}):
            agent = load_agent(agent_dir, env) if agent_dir else HierarchicalAgent(env, seed=0)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                trainer = Trainer(agent, tmp, spec=spec, scenarios=[0, 1, 2],
                                  seed=1, workers=w, max_start=max_start, progress=False)  # fmt: skip
                tasks = [trainer.task(e, mode=mode) for e in range(n)]
                t0 = time.perf_counter()
                trainer._collect([{**t, "start": 570} for t in tasks[:w]])  # warm-up: pool start-up
                t1 = time.perf_counter()
                results = trainer._collect(tasks)
                t2 = time.perf_counter()
                if trainer._pool is not None:
                    trainer._pool.shutdown()
            steps = sum(r["stats"]["survived_steps"] for r in results)
            rows.append({"mode": mode, "workers": w, "episodes": n, "steps": steps, "startup_s": t1 - t0,
                         "seconds": t2 - t1, "steps_per_s": steps / (t2 - t1)})  # fmt: skip
    for r in rows:
        base = next(b for b in rows if b["mode"] == r["mode"])
        r["speedup"] = base["seconds"] / r["seconds"]
    env.close()
    Path(tmp).rmdir()
    return rows


def _play(agent, env, scenario: int, max_steps: int | None = None) -> dict:
    """One episode; wall time of each act() and whether it was a decision."""
    obs = env.reset(options={"time serie id": int(scenario)})
    agent.reset(obs)
    times, decided, steps, done, game_over = [], [], 0, False, False
    while not done:
        t0 = time.perf_counter()
        action = agent.act(obs, 0.0, False)
        times.append(time.perf_counter() - t0)
        decided.append(agent.last_decision["agent"] not in ("", "reconnect"))
        obs, _, done, info = env.step(action)
        steps += 1
        game_over = done and bool(info.get("exception"))
        if max_steps is not None and steps >= max_steps:
            break
    times, decided = np.asarray(times), np.asarray(decided)
    return {"survived_steps": steps - int(game_over), "max_steps": int(env.max_episode_duration()),
            "decisions": int(decided.sum()),
            "ms_per_decision": float(times[decided].mean() * 1e3) if decided.any() else float("nan"),
            "ms_per_act": float(times.mean() * 1e3)}  # fmt: skip


def bench_decision_time(spec, agent_dir: str | None, steps: int, top_ks=(0,)) -> list[dict]:
    """ms per decision of the hierarchical agent (each ``top_k``) and of the expert, on the
    same states: the expert plays scenario 0 and every agent decides on each observation it
    meets (only the expert's action is applied)."""
    from distributed_grid2op.agents import HierarchicalAgent, load_agent
    from distributed_grid2op.baselines import make_baseline

    env = spec.make(0)
    agents = {"expert": make_baseline("expert", env)}
    for k in top_ks:
        a = load_agent(agent_dir, env) if agent_dir else HierarchicalAgent(env, seed=0)
        a.top_k = int(k)
        agents[f"hierarchical top-{k}" if k else "hierarchical"] = a
    obs = env.reset(options={"time serie id": 0})
    for a in agents.values():
        a.reset(obs)
        a.act(obs, 0.0, False)  # warm-up (first torch call)
        a.reset(obs)
    times = {n: [] for n in agents}
    for _ in range(steps):
        for name, a in agents.items():
            t0 = time.perf_counter()
            action = a.act(obs, 0.0, False)
            dt = time.perf_counter() - t0
            if a.last_decision["agent"] not in ("", "reconnect"):
                times[name].append(dt)
            if name == "expert":
                expert_action = action
        obs, _, done, _ = env.step(expert_action)
        if done:
            break
    rows = [{"agent": n, "decisions": len(t), "ms_median": float(np.median(t) * 1e3) if t else float("nan"),
             "ms_mean": float(np.mean(t) * 1e3) if t else float("nan")} for n, t in times.items()]  # fmt: skip
    for r in rows:
        r["expert_over_this"] = rows[0]["ms_median"] / r["ms_median"]
    env.close()
    return rows


def evaluate_agents(
    spec, agent_dirs: Sequence[str], split: str, top_ks: Sequence[int]
) -> list[dict]:
    """Survival on the ``split`` scenarios: do-nothing, expert, each agent (greedy, top-k)."""
    from distributed_grid2op.agents import load_agent
    from distributed_grid2op.baselines import make_baseline
    from distributed_grid2op.splits import split_scenarios

    env = spec.make(0)
    scenarios = split_scenarios(env, split)
    runs = [
        ("do-nothing", lambda: make_baseline("do-nothing", env)),
        ("expert", lambda: make_baseline("expert", env)),
    ]
    for d in agent_dirs:
        for k in top_ks:

            def make(d=d, k=k):
                a = load_agent(d, env)
                a.top_k = k
                return a

            runs.append((f"{Path(d).name}" + (f" top-{k}" if k else ""), make))
    rows = []
    for name, make in runs:
        for s in scenarios:
            rows.append({"agent": name, "split": split, "scenario": s, **_play(make(), env, s)})
    env.close()
    return rows


def _print(rows: list[dict], cols: list[str]) -> None:
    print(" ".join(f"{c:>16s}" for c in cols))
    for r in rows:
        print(
            " ".join(
                f"{r[c]:>16.2f}" if isinstance(r[c], float) else f"{r[c]!s:>16s}" for c in cols
            )
        )


def main(argv: Sequence[str] | None = None) -> int:
    p = cli.ArgumentParser(
        prog="python -m benchmarks.bench_training", description=__doc__.splitlines()[0]
    )
    p.add_argument("--quick", action="store_true", help="smoke run (few episodes and steps)")
    p.add_argument("--workers", type=cli.positive_int, default=2)
    p.add_argument(
        "--episodes", type=cli.positive_int, default=16, help="episodes collected per setting"
    )
    p.add_argument("--scale", type=cli.positive_float, default=0.85, help="thermal limit scale")
    p.add_argument("--agent", default=None, help="trained agent for the decision-time part")
    p.add_argument("--agents", nargs="*", default=[], help="trained agents to evaluate on --split")
    p.add_argument("--split", default="val,test", help="held-out split(s), comma-separated")
    p.add_argument("--top-k", default="0,10", help="top-k variants evaluated for each agent")
    p.add_argument("--out", default=None, help="CSV of the evaluation rows")
    args = p.parse_args(argv)
    import torch

    from distributed_grid2op.envs import quiet_grid2op

    torch.set_num_threads(1)  # tiny networks: intra-op threads only contend (as in training)
    spec = _spec(args.scale)
    episodes = 2 if args.quick else args.episodes
    with quiet_grid2op():
        print(
            f"# collection: {episodes} PPO episodes (random starts in [0, 300]), {args.agent or 'untrained policy'}"
        )
        _print(bench_collection(spec, episodes, args.workers, max_start=300, agent_dir=args.agent),
               ["mode", "workers", "episodes", "steps", "startup_s", "seconds", "steps_per_s", "speedup"])  # fmt: skip
        print(
            "\n# decision time on the same states (the expert plays scenario 0; agents decide in parallel)"
        )
        top_ks = [int(k) for k in args.top_k.split(",")]
        _print(bench_decision_time(spec, args.agent, 60 if args.quick else 575, top_ks),
               ["agent", "decisions", "ms_median", "ms_mean", "expert_over_this"])  # fmt: skip
        if args.agents:
            import pandas as pd

            rows = [r for split in args.split.split(",")
                    for r in evaluate_agents(spec, args.agents, split.strip(), top_ks)]  # fmt: skip
            df = pd.DataFrame(rows)
            df["survived_frac"] = df.survived_steps / df.max_steps
            print(f"\n# held-out survival ({args.split}), thermal limits x {args.scale}")
            print(df.to_string(index=False, float_format=lambda x: f"{x:.3f}"))
            summary = df.groupby("agent", sort=False).agg(
                survived_steps=("survived_steps", "sum"), max_steps=("max_steps", "sum"),
                decisions=("decisions", "sum"), ms_per_decision=("ms_per_decision", "mean"))  # fmt: skip
            summary["survived_frac"] = summary.survived_steps / summary.max_steps
            print(summary.to_string(float_format=lambda x: f"{x:.3f}"))
            if args.out:
                from distributed_grid2op.io import atomic_path

                with atomic_path(args.out) as tmp:
                    df.to_csv(tmp, index=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(cli.run(main))
