"""Collection throughput: ours vs a bare env.step + reset loop vs the thesis route.

On the same episodes (same chronics, env seeds and agent draws) of case14 substations:

- ``baseline``: one process, ``env.reset`` + ``env.step`` with the random unitary topology,
  nothing recorded (the floor any collector pays), with grid2op's default chronics and with
  the chronics cached in memory as our workers do (`MultifolderWithCache`);
- ``ours``: `clustering.power_grid.collect` with 1 worker and with ``--workers`` workers;
- ``thesis route``: grid2op ``Runner`` with the same agent saving episodes (with the thesis'
  patches), then reading observations and actions back into (s, a, s'); and the public
  1.12 alternative ``path_save=None, add_detailed_output=True`` (episodes kept in memory).

Prints transitions per second and ratios against the baseline measured in the same run.
``python -m benchmarks.bench_collect [--episodes 40] [--workers 2]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

ENV = "l2rpn_case14_sandbox"
SUBS = (4, 5)


def _baseline(env, subs, n_episodes, seed, n_scen):
    from clustering.power_grid.collect import episode_seeds
    from distributed_grid2op.grid import unitary_topologies

    count = 0
    t0 = time.perf_counter()
    for s in subs:
        tops = unitary_topologies(env, s)
        for ep in range(n_episodes):
            env_seed, agent_seed = episode_seeds(seed, s, ep)
            env.reset(seed=env_seed, options={"time serie id": ep % n_scen})
            rng = np.random.default_rng(agent_seed)
            done = False
            while not done:
                _, _, done, _ = env.step(tops[int(rng.integers(len(tops)))])
                count += 1
    return count, time.perf_counter() - t0


def _agent(env, sub):
    from grid2op.Agent import BaseAgent

    from distributed_grid2op.grid import unitary_topologies

    tops = unitary_topologies(env, sub)

    class TopologyRandomAgent(BaseAgent):
        """The thesis' explorative agent, drawing as our collector does."""

        def seed(self, seed):
            self.rng = np.random.default_rng(int(seed))
            return (seed,)

        def act(self, observation, reward, done=False):
            return tops[int(self.rng.integers(len(tops)))]

    return TopologyRandomAgent(env.action_space)


def _thesis_route(env, subs, n_episodes, seed, n_scen, save: bool):
    """Runner (+ patches) then read back; returns (transitions, seconds, rho datasets)."""
    from grid2op.Runner import Runner

    import patches
    from clustering.power_grid.collect import episode_seeds

    rho = slice(*_rho_slice(env))
    count, datasets = 0, {}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp, patches.applied():
        for s in subs:
            seeds = [episode_seeds(seed, s, ep) for ep in range(n_episodes)]
            runner = Runner(
                **env.get_params_for_runner(), agentClass=None, agentInstance=_agent(env, s)
            )
            path = str(Path(tmp) / f"sub{s}") if save else None
            res = runner.run(
                nb_episode=n_episodes,  # episode i plays chronic i mod n_scen, as ours
                env_seeds=[a for a, _ in seeds],
                agent_seeds=[b for _, b in seeds],
                path_save=path,
                add_detailed_output=not save,
            )
            states = []
            if save:
                for name in sorted(p.name for p in Path(path).iterdir() if p.is_dir()):
                    ep = patches.read_episode(path, name)
                    states.append((int(name.rsplit("_", 1)[1]), ep.observations[:, rho]))
            else:
                for i, r in enumerate(res):
                    obs = np.asarray(r[5].observations.collection)
                    obs = obs[~np.isnan(obs).all(axis=1)]
                    states.append((i, obs[:, rho]))
            states.sort(key=lambda x: x[0])
            datasets[s] = np.concatenate([o[1:] for _, o in states])
            count += len(datasets[s])
    return count, time.perf_counter() - t0, datasets


def _rho_slice(env):
    start = 0
    for attr, size in zip(env.observation_space.attr_list_vect, env.observation_space.shape):
        if attr == "rho":
            return start, start + int(size)
        start += int(size)
    raise RuntimeError("no rho in the observation vector")


def main(argv=None) -> dict:
    """Run the benchmark; print a table; return the measured figures."""
    from clustering.power_grid.collect import CollectSettings, collect
    from distributed_grid2op.envs import EnvSpec, make_env, n_scenarios, quiet_grid2op

    p = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_collect", description=__doc__.split("\n\n")[0]
    )
    p.add_argument(
        "--episodes", type=int, default=100, help="episodes per substation (default 100)"
    )
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seed", type=int, default=29)
    args = p.parse_args(argv)

    with quiet_grid2op():
        env = make_env(ENV)
        n_scen = n_scenarios(env)
        base_n, base_t = _baseline(env, SUBS, args.episodes, args.seed, n_scen)
        settings = CollectSettings(
            spec=EnvSpec(ENV),
            substations=SUBS,
            n_episodes=args.episodes,
            n_samples=10**9,
            mode="thesis",
            seed=args.seed,
        )
        rows = {"baseline env.step + reset (1 process)": (base_n, base_t)}
        from clustering.power_grid.collect import _make_cached

        cached = _make_cached(EnvSpec(ENV))
        rows["same, chronics cached in memory (1 process)"] = _baseline(
            cached, SUBS, args.episodes, args.seed, n_scen
        )
        cached.close()
        ours = {}
        from clustering.power_grid.collect import _worker_env

        _worker_env(settings.spec)  # made once here; fork workers inherit it (steady state)
        for w in (1, args.workers):
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.perf_counter()
                data = collect(settings, tmp, workers=w, progress=False)
                dt = time.perf_counter() - t0
            ours[w] = data
            rows[f"ours, {w} worker(s)"] = (
                sum(len(d) for d in data.values()),
                dt,
            )
        thesis_n, thesis_t, thesis_data = _thesis_route(
            env, SUBS, args.episodes, args.seed, n_scen, save=True
        )
        rows["thesis route: Runner + patches, save, read back"] = (thesis_n, thesis_t)
        mem_n, mem_t, _ = _thesis_route(env, SUBS, args.episodes, args.seed, n_scen, save=False)
        rows["Runner, path_save=None + add_detailed_output (1.12)"] = (mem_n, mem_t)
    same = all(np.array_equal(thesis_data[s], ours[1][s].next_state) for s in SUBS)

    base_rate = base_n / base_t
    print(f"{args.episodes} episodes x substations {SUBS} of {ENV}; identical datasets: {same}")
    print(f"{'route':58s} {'transitions':>11s} {'seconds':>8s} {'per s':>8s} {'x baseline':>10s}")
    out = {}
    for name, (n, t) in rows.items():
        rate = n / t
        out[name] = {
            "transitions": n,
            "seconds": round(t, 2),
            "rate": round(rate, 1),
            "ratio": round(rate / base_rate, 3),
        }
        print(f"{name:58s} {n:11d} {t:8.2f} {rate:8.0f} {rate / base_rate:10.2f}")
    w1 = rows["ours, 1 worker(s)"]
    wn = rows[f"ours, {args.workers} worker(s)"]
    speedup = (wn[0] / wn[1]) / (w1[0] / w1[1])
    print(
        f"speed-up {args.workers} workers vs 1: {speedup:.2f}; identical datasets thesis route vs ours: {same}"
    )
    out["speedup"] = round(speedup, 2)
    out["identical"] = bool(same)
    return out


if __name__ == "__main__":
    main()
