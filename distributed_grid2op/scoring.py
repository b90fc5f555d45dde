"""The one way to score an action by simulation: ``obs.simulate`` and the resulting max rho.

Every user of simulation (the greedy expert, the top-k check of trained agents, the labels of
imitation, safe reconnection, action-set reduction) ranks actions with `simulated_max_rho`,
so they agree on what a failed simulation means: an illegal, ambiguous or diverging action,
or one that ends the game, scores ``inf`` (ranked last, never chosen over do-nothing).
"""

from __future__ import annotations

import numpy as np

FAILED = float("inf")
#: two scores closer than this are a tie (the first candidate wins: deterministic)
TIE = 1e-9


def simulated_max_rho(observation, action) -> float:
    """Max line loading after ``action`` according to ``observation.simulate``; ``inf`` if the
    simulation fails (illegal, ambiguous, diverging, game over)."""
    sim_obs, _, sim_done, info = observation.simulate(action)
    if sim_done or info.get("exception") or info.get("is_illegal") or info.get("is_ambiguous"):
        return FAILED
    rho = np.asarray(sim_obs.rho, dtype=float)
    if rho.size == 0 or not np.all(np.isfinite(rho)):
        return FAILED
    return float(np.max(rho))


def score_actions(observation, actions, indices=None) -> np.ndarray:
    """`simulated_max_rho` of ``actions[i]`` for ``i`` in ``indices`` (default: all);
    ``inf`` for the actions not simulated. Shape ``(len(actions),)``."""
    scores = np.full(len(actions), FAILED)
    for i in range(len(actions)) if indices is None else indices:
        scores[int(i)] = simulated_max_rho(observation, actions[int(i)])
    return scores


def best_index(scores: np.ndarray, default: int = 0, tie: float = TIE) -> int:
    """Index of the lowest score (the first within ``tie``), ``default`` if every one failed."""
    scores = np.asarray(scores, dtype=float)
    if scores.size == 0:
        return int(default)
    best = float(np.min(scores))
    if not np.isfinite(best):
        return int(default)
    return int(np.flatnonzero(scores <= best + tie)[0])
