"""Topology facts and actions of a grid2op env, shared by collection, agents and evaluation."""

from __future__ import annotations

import numpy as np


def controllable_substations(env, min_elements: int = 4) -> list[int]:
    """Substations with at least ``min_elements`` elements (thesis: more than 3)."""
    return [int(s) for s in np.flatnonzero(np.asarray(env.sub_info) >= min_elements)]


_UNITARY_CACHE: dict[tuple[type, int], tuple] = {}


def unitary_topologies(env, sub_id: int) -> list:
    """All unitary set-bus topology actions of one substation (grid2op's enumeration).

    Cached per action-space class, so every env of the same grid shares one list.
    """
    if not 0 <= int(sub_id) < env.n_sub:
        raise ValueError(f"substation {sub_id} out of range [0, {env.n_sub})")
    key = (type(env.action_space), int(sub_id))
    if key not in _UNITARY_CACHE:
        space = env.action_space
        _UNITARY_CACHE[key] = tuple(space.get_all_unitary_topologies_set(space, sub_id=int(sub_id)))
    return list(_UNITARY_CACHE[key])


def substation_topology(action, sub_id: int, env) -> np.ndarray:
    """The set-bus vector an action sets on one substation's elements, shape (sub_info[sub],)."""
    start = int(np.sum(env.sub_info[:sub_id]))
    return np.asarray(action.set_bus[start : start + int(env.sub_info[sub_id])], dtype=np.int64)


def line_endpoints(env) -> tuple[np.ndarray, np.ndarray]:
    """Origin and extremity substation of every line, two int arrays of shape (n_line,)."""
    return np.asarray(env.line_or_to_subid, dtype=int), np.asarray(env.line_ex_to_subid, dtype=int)


def operator_areas(env) -> np.ndarray | None:
    """The operator's area of every substation (an int array, areas numbered in the order of
    their names) when the env's rules define areas (the 118-bus envs' ``RulesByArea``:
    ``legal_action.substations_id_by_area``), else None. grid2op has no public getter for
    them, so this reads the env's game rules (the one place that does). Reference only: the
    factorization reports agreement with it; no method sees it."""
    by_area = getattr(getattr(env, "_game_rules", None), "legal_action", None)
    by_area = getattr(by_area, "substations_id_by_area", None)
    if not by_area:
        return None
    area = -np.ones(int(env.n_sub), int)
    for a, (_, subs) in enumerate(sorted(by_area.items(), key=lambda kv: str(kv[0]))):
        area[[int(x) for x in subs]] = a
    return None if np.any(area < 0) else area


def lines_of_substation(env, sub_id: int) -> np.ndarray:
    """Indices of the lines with an end at ``sub_id``."""
    orig, ext = line_endpoints(env)
    return np.flatnonzero((orig == sub_id) | (ext == sub_id))


def substation_graph(env):
    """networkx Graph: substations as nodes, one edge per pair joined by a line (weight = count)."""
    import networkx as nx

    g = nx.Graph()
    g.add_nodes_from(range(env.n_sub))
    for a, b in zip(*line_endpoints(env)):
        w = g.get_edge_data(int(a), int(b), {"weight": 0})["weight"]
        g.add_edge(int(a), int(b), weight=w + 1)
    return g


def reconnectable_lines(obs, exclude=()) -> np.ndarray:
    """Disconnected lines that may legally be reconnected now (no cooldown, not in maintenance),
    but those in ``exclude``."""
    ok = (~obs.line_status) & (obs.time_before_cooldown_line == 0)
    maint = getattr(obs, "time_next_maintenance", None)
    duration = getattr(obs, "duration_next_maintenance", None)
    if maint is not None and duration is not None:
        ok &= ~((maint == 0) & (duration > 0))
    lines = np.flatnonzero(ok)
    return lines[~np.isin(lines, np.asarray(list(exclude), dtype=np.int64))]


def reconnect_action(action_space, obs, exclude=()):
    """Reconnect the first legally reconnectable line but those in ``exclude``, or ``None`` if
    there is none."""
    lines = reconnectable_lines(obs, exclude)
    if lines.size == 0:
        return None
    return action_space({"set_line_status": [(int(lines[0]), 1)]})


def safe_reconnect_action(action_space, obs, danger: float = 0.95, exclude=()):
    """The safest legal line reconnection, or ``None`` when none is safe.

    Every legally reconnectable line (`reconnectable_lines`) but those in ``exclude`` is
    simulated
    (`distributed_grid2op.scoring.simulated_max_rho`); the one with the lowest simulated max
    rho is returned if it does not make the max loading worse than do-nothing, or if it keeps
    it below ``danger``. A reconnection whose simulation fails is never returned. Costs one
    simulation per reconnectable line plus one for do-nothing (none when no line is
    reconnectable).
    """
    from distributed_grid2op.scoring import TIE, simulated_max_rho

    lines = reconnectable_lines(obs, exclude)
    if lines.size == 0:
        return None
    best, best_rho = None, float("inf")
    for line in lines:
        action = action_space({"set_line_status": [(int(line), 1)]})
        rho = simulated_max_rho(obs, action)
        if rho < best_rho - TIE:
            best, best_rho = action, rho
    if best is None or not np.isfinite(best_rho):
        return None
    if best_rho < float(danger):
        return best
    baseline = simulated_max_rho(obs, action_space({}))
    return best if best_rho <= baseline + TIE else None


def split_substations(env, obs) -> np.ndarray:
    """Substations with at least one element on a bus other than 1 (off their reference
    topology)."""
    topo = np.asarray(obs.topo_vect)
    sub = np.repeat(np.arange(env.n_sub), np.asarray(env.sub_info))
    return np.unique(sub[topo >= 2])


def revert_actions(env, obs) -> list[tuple[object, int]]:
    """``(action, substation)`` returning each split substation not in cooldown to its
    reference topology: its elements on bus 2 or more set back to bus 1, the others left as
    they are (a disconnected element stays disconnected)."""
    subs = split_substations(env, obs)
    free = subs[np.asarray(obs.time_before_cooldown_sub)[subs] == 0]
    out = []
    for s in free:
        cur = np.asarray(obs.sub_topology(int(s)))
        vec = np.where(cur >= 2, 1, 0).astype(int).tolist()  # 0: element left as it is
        out.append((env.action_space({"set_bus": {"substations_id": [(int(s), vec)]}}), int(s)))
    return out


def revert_action(env, obs, level: float):
    """``(action, substation)``: the `revert_actions` candidate with the lowest simulated max
    rho, if that stays below ``level``; ``None`` otherwise (one simulation per candidate)."""
    from distributed_grid2op.scoring import TIE, simulated_max_rho

    best, best_rho = None, float("inf")
    for action, sub in revert_actions(env, obs):
        rho = simulated_max_rho(obs, action)
        if rho < best_rho - TIE:
            best, best_rho = (action, sub), rho
    return best if best is not None and best_rho < float(level) else None
