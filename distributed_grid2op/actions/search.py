"""A budgeted greedy search over a reduced action set, usable on 118-bus grids.

`greedy_search` simulates the candidates on the substations nearest the overloaded lines
first and stops at a per-decision budget of simulations, so a decision costs
``budget`` x ``obs.simulate`` whatever the size of the set.
"""

from __future__ import annotations

import numpy as np

from distributed_grid2op.grid import line_endpoints
from distributed_grid2op.scoring import TIE, simulated_max_rho

_HOPS: dict[tuple, np.ndarray] = {}


def substation_hops(env) -> np.ndarray:
    """Hop distance between every pair of substations along lines, ``(n_sub, n_sub)`` ints
    (``n_sub`` where unreachable). Cached per grid."""
    orig, ext = line_endpoints(env)
    key = (int(env.n_sub), orig.tobytes(), ext.tobytes())
    if key not in _HOPS:
        n = int(env.n_sub)
        adj = [[] for _ in range(n)]
        for a, b in zip(orig, ext):
            adj[int(a)].append(int(b))
            adj[int(b)].append(int(a))
        hops = np.full((n, n), n, dtype=np.int64)
        for src in range(n):
            hops[src, src] = 0
            frontier = [src]
            while frontier:
                nxt = []
                for u in frontier:
                    for v in adj[u]:
                        if hops[src, v] == n:
                            hops[src, v] = hops[src, u] + 1
                            nxt.append(v)
                frontier = nxt
        _HOPS[key] = hops
    return _HOPS[key]


def search_order(obs, candidate_subs, env, danger: float = 0.95, n_lines: int = 3) -> np.ndarray:
    """Candidate indices in the order `greedy_search` simulates them.

    The focus substations are the ends of the overloaded lines (``rho >= danger``, most loaded
    first; the ``n_lines`` most loaded lines when none is). Candidates are taken by hop
    distance from the focus (0: a focus substation, 1: its neighbours, ...); within one
    distance, by rank within their substation (the file lists each substation's best first),
    then by how loaded the line their substation is near is; candidates on a substation in
    cooldown are left out (they are illegal now).
    """
    subs = np.asarray(candidate_subs, dtype=np.int64)
    if subs.size == 0:
        return np.zeros(0, dtype=np.int64)
    rho = np.asarray(obs.rho, dtype=float)
    lines = np.argsort(-rho, kind="stable")
    hot = lines[rho[lines] >= danger]
    if hot.size == 0:
        hot = lines[: max(1, int(n_lines))]
    orig, ext = line_endpoints(env)
    focus: list[int] = []
    for line in hot:
        for s in (int(orig[line]), int(ext[line])):
            if s not in focus:
                focus.append(s)
    hops = substation_hops(env)[focus]  # (n_focus, n_sub)
    dist = hops.min(axis=0)  # hop distance of every substation to the focus
    nearest = hops.argmin(axis=0)  # which focus substation (earlier = more loaded line)
    rank = np.zeros(subs.size, dtype=np.int64)
    seen: dict[int, int] = {}
    for i, s in enumerate(subs):
        rank[i] = seen.get(int(s), 0)
        seen[int(s)] = rank[i] + 1
    cooldown = getattr(obs, "time_before_cooldown_sub", None)
    ok = np.ones(subs.size, dtype=bool)
    if cooldown is not None:
        ok = np.asarray(cooldown)[subs] == 0
    order = np.lexsort((np.arange(subs.size), nearest[subs], rank, dist[subs]))
    return order[ok[order]]


def greedy_search(
    obs,
    candidates,
    candidate_subs,
    env,
    budget: int = 100,
    danger: float = 0.95,
    stop_below: float | None = None,
) -> tuple[int, int]:
    """The best candidate by simulated max rho that beats do-nothing, within a budget.

    Args:
        obs: the current observation (only ``obs.simulate`` is called: nothing is stepped).
        candidates: grid2op actions (a reduced set, e.g. `ActionFile.to_grid2op`).
        candidate_subs: the substation of every candidate (same length).
        env: the env (grid facts only).
        budget: at most this many simulations per decision, do-nothing's included.
        danger: lines at or above this rho are the overloads to relieve.
        stop_below: stop early once a candidate's simulated max rho is below this.

    Returns:
        ``(index, n_simulations)``: the candidate index, or -1 when none simulated beats
        do-nothing (by more than `distributed_grid2op.scoring.TIE`).
    """
    budget = int(budget)
    if budget < 1 or len(candidates) == 0:
        return -1, 0
    if len(candidates) != len(candidate_subs):
        raise ValueError("candidates and candidate_subs differ in length")
    best_rho = simulated_max_rho(obs, env.action_space({}))
    n_sim, best = 1, -1
    for i in search_order(obs, candidate_subs, env, danger=danger):
        if n_sim >= budget:
            break
        rho = simulated_max_rho(obs, candidates[int(i)])
        n_sim += 1
        if rho < best_rho - TIE:
            best, best_rho = int(i), rho
            if stop_below is not None and rho < stop_below:
                break
    return best, n_sim
