"""Reduce the unitary topologies of a grid to the few that relieve overloads (``actions.json``).

Three steps, all seeded:

1. **Candidates** per controllable substation (`controllable_substations`), enumerated
   directly as two-bus splits (`two_bus_splits`): the first element stays on bus 1 (the
   bus-1/bus-2 mirror is the same topology), each bus keeps at least one line and at least
   ``min_per_bus`` elements (no element alone on a bus). A substation with more valid splits
   than ``max_candidates`` gets a seeded sample of them, so a 17-element substation (65 505
   grid2op topologies) costs ``max_candidates``, never the full list.
2. **Stressed states**: do-nothing with safe reconnection (`loop.Controller`'s rule, the one
   every agent plays) is played on seeded (scenario, start offset) episodes; ``states`` steps
   are kept (at least ``min_gap`` steps apart within a scenario): first the moment of each
   danger period (max rho >= ``rho_threshold``) when an operator has to act, its first
   overloaded step (`danger_moments`), the most severe periods first; then the highest max
   rho steps (the file flags each state ``stressed`` or not). A state is
   the recipe ``(scenario, seed, offset, step, reconnections)``: workers replay it
   (observations do not pickle), playing the recorded reconnections.
3. **Scoring**: every candidate is simulated on every state with
   `distributed_grid2op.scoring.simulated_max_rho`; relief = do-nothing max rho - candidate max
   rho, both capped at ``FAILED_RHO`` = 2 (a failed simulation counts as 2).

Ranking rule (recorded in the file, details in `rank_candidates`): a candidate is kept only
if it relieves at least one state by ``min_relief``; a greedy coverage pass first keeps, state
after state, the best remedy of each stressed state (facility location: the largest gain in
the sum over states of the best kept relief), then the room left goes to the candidates that
relieve the most states (most often), then by mean relief (best), then by enumeration order;
at most ``per_substation`` per substation and ``max_actions`` in all. The file lists them by
substation, best first.

Tasks go through the `Executor`: one task per episode for the state search and one per
(state, chunk of candidates) for the scoring. The driver writes ``<out>.partial.json``
atomically as results arrive; ``resume=True`` continues from it.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np

from distributed_grid2op import grid
from distributed_grid2op.actions.file import grid_summary, write_action_file
from distributed_grid2op.errors import UserError

#: candidates scored per task (one state): ~1 s on case14, ~2 s on the 118-bus grid
CHUNK = 256
#: enumerate all splits when a substation has at most this many elements, else sample
ENUMERATE_MAX_ELEMENTS = 21
PARTIAL_FORMAT = "actions-partial-2"
#: the safe-reconnection level of the do-nothing episodes that find the stressed states
RECONNECT_LEVEL = 0.9
#: max rho counted for a failed simulation (and the cap of every max rho) in the relief
FAILED_RHO = 2.0
RANKING = (
    "relief = do-nothing max rho - candidate max rho, both capped at 2 (a failed simulation "
    "counts as 2); keep candidates relieving >= min_relief on at least one state; first a "
    "greedy coverage pass (largest gain in the sum over states of the best kept relief), then "
    "by the number of states relieved by >= min_relief, then mean relief, then enumeration "
    "order; at most per_substation per substation and max_actions overall"
)


# ---- candidates -----------------------------------------------------------------------------
def line_positions(env, sub_id: int) -> np.ndarray:
    """Positions, within the substation's elements, of the line ends at ``sub_id``."""
    cls = type(env)
    pos = [cls.line_or_to_sub_pos[i] for i in np.flatnonzero(cls.line_or_to_subid == sub_id)]
    pos += [cls.line_ex_to_sub_pos[i] for i in np.flatnonzero(cls.line_ex_to_subid == sub_id)]
    return np.asarray(sorted(int(p) for p in pos), dtype=np.int64)


def count_two_bus_splits(n_el: int, line_pos, min_per_bus: int = 2) -> int:
    """Number of valid two-bus splits (see `two_bus_splits`) without listing them."""
    if n_el - 1 <= ENUMERATE_MAX_ELEMENTS:
        return int(len(_all_splits(n_el, line_pos, min_per_bus)))
    return -1  # too many to count exactly here; sampled


def _valid(bits: np.ndarray, line_pos: np.ndarray, min_per_bus: int) -> np.ndarray:
    """Rows of ``bits`` (1 = bus 2, element 0 first) that are valid splits."""
    n_el = bits.shape[1]
    on2 = bits.sum(axis=1)
    lines2 = bits[:, line_pos].sum(axis=1) if line_pos.size else np.zeros(len(bits), int)
    return (
        (on2 >= min_per_bus)
        & (n_el - on2 >= min_per_bus)
        & (lines2 >= 1)
        & (line_pos.size - lines2 >= 1)
    )


def _all_splits(n_el: int, line_pos, min_per_bus: int) -> np.ndarray:
    line_pos = np.asarray(line_pos, dtype=np.int64)
    if n_el < 2:
        return np.zeros((0, n_el), dtype=np.int8)
    codes = np.arange(1, 2 ** (n_el - 1), dtype=np.int64)
    bits = np.zeros((codes.size, n_el), dtype=np.int8)
    bits[:, 1:] = (codes[:, None] >> np.arange(n_el - 1)) & 1
    return bits[_valid(bits, line_pos, min_per_bus)]


def two_bus_splits(
    n_el: int,
    line_pos,
    *,
    min_per_bus: int = 2,
    max_candidates: int | None = None,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Valid two-bus set-bus vectors (values 1/2) of a substation, shape ``(k, n_el)``.

    Valid: element 0 on bus 1 (mirror symmetry removed), something on bus 2, each bus with at
    least one line end and at least ``min_per_bus`` elements. With ``max_candidates`` and more
    valid splits than that, a sample drawn with ``rng`` (kept in enumeration order).
    """
    line_pos = np.asarray(line_pos, dtype=np.int64)
    rng = rng if rng is not None else np.random.default_rng(0)
    if n_el - 1 <= ENUMERATE_MAX_ELEMENTS:
        bits = _all_splits(n_el, line_pos, min_per_bus)
        if max_candidates is not None and len(bits) > max_candidates:
            keep = np.sort(rng.choice(len(bits), size=int(max_candidates), replace=False))
            bits = bits[keep]
        return (bits + 1).astype(np.int64)
    # huge substation: rejection-sample distinct valid splits (never enumerate 2^(n-1))
    target = int(max_candidates or 2000)
    seen: dict[bytes, np.ndarray] = {}
    for _ in range(200):
        draw = rng.integers(0, 2, size=(4 * target, n_el), dtype=np.int8)
        draw[:, 0] = 0
        for row in draw[_valid(draw, line_pos, min_per_bus)]:
            seen.setdefault(row.tobytes(), row)
            if len(seen) >= target:
                break
        if len(seen) >= target:
            break
    rows = sorted(seen.values(), key=lambda r: r[::-1].tobytes())
    return (np.asarray(rows, dtype=np.int64).reshape(-1, n_el) + 1).astype(np.int64)


def substation_candidates(
    env, subs, *, max_candidates: int, seed: int, min_per_bus: int = 2
) -> tuple[list[np.ndarray], dict]:
    """Candidate vectors of each substation in ``subs`` and their counts (valid, kept)."""
    vectors, counts = [], {}
    for s in subs:
        pos = line_positions(env, s)
        n_el = int(env.sub_info[s])
        rng = np.random.default_rng([int(seed), int(s)])
        vec = two_bus_splits(
            n_el, pos, min_per_bus=min_per_bus, max_candidates=max_candidates, rng=rng
        )
        vectors.append(vec)
        counts[int(s)] = {"valid": count_two_bus_splits(n_el, pos, min_per_bus), "kept": len(vec)}
    return vectors, counts


# ---- states -------------------------------------------------------------------------------
def _play(env, scenario: int, seed: int, offset: int, steps: int, record: bool, replay=None):
    """Do-nothing with safe reconnection from ``offset`` for ``steps`` steps.

    Returns ``(obs, rhos, reconnections)``: the observation after ``steps`` steps (None if the
    episode ended before), with ``record`` the max rho of every observation reached (step 0 =
    start), and the ``[step, line]`` reconnections played. With ``replay`` (such a list) those
    reconnections are played instead of deciding again, so that a replayed state does not
    depend on simulations giving the same near ties (safe reconnection compares simulated
    max rho, often equal to 1e-3) in another worker.
    """
    from distributed_grid2op.envs import quiet_grid2op
    from distributed_grid2op.loop import Controller

    rules = Controller(env, danger=np.inf, reconnect="safe", safe_level=RECONNECT_LEVEL)
    planned = None if replay is None else {int(t): int(line) for t, line in replay}
    played = []
    with quiet_grid2op():
        options = {"time serie id": int(scenario)}
        if int(offset) >= 1:
            options["init ts"] = int(offset)
        obs = env.reset(seed=int(seed), options=options)
        rhos = [float(np.max(obs.rho))] if record else []
        for t in range(int(steps)):
            if planned is None:
                decision = rules.decide(obs).decision
                line = decision.action_id if decision.agent == "reconnect" else -1
            else:
                line = planned.get(t, -1)
            action = env.action_space({"set_line_status": [(line, 1)]} if line >= 0 else {})
            if line >= 0:
                played.append([t, int(line)])
            obs, _, done, _ = env.step(action)
            if done:
                return None, rhos, played
            if record:
                rhos.append(float(np.max(obs.rho)))
    return obs, rhos, played


def _episode_task(ctx, task, shared):
    """Worker: play one episode, return its offset and the max rho of every step.

    Each episode (and each replay, `_state_obs`) plays on an env of its own: on grids with an
    opponent (l2rpn_idf_2023) an env that played other episodes before was seen to replay a
    state differently, so a state must not depend on what a worker did before."""
    from distributed_grid2op.envs import quiet_grid2op

    scenario, seed, fraction, horizon = task
    env = shared["spec"].make()
    try:
        with quiet_grid2op():
            env.reset(seed=int(seed), options={"time serie id": int(scenario)})
        length = int(env.chronics_handler.max_timestep())
        length = length if length > 0 else int(horizon) + 1
        room = length - int(horizon) - 1  # start offsets leaving a whole horizon to play
        offset = int(fraction * (room if room > 0 else (length - 1) // 2))  # short scenario
        steps = max(0, min(int(horizon), length - offset - 1))
        _, rhos, played = _play(env, scenario, seed, offset, steps, record=True)
    finally:
        env.close()
    return {"offset": offset, "rhos": np.asarray(rhos, dtype=np.float64), "reconnections": played}


def danger_moments(rhos, threshold: float) -> list[tuple[float, int]]:
    """``(peak, step)`` per danger period (a run of steps with max rho >= ``threshold``): the
    step an operator has to act at, the period's first overloaded step (max rho >= 1) or, if
    none, its first step; ``peak`` is the period's highest max rho. Acting at the peak is
    often too late (lines have tripped, the grid is splitting), so these are the states a
    remedy is scored on first."""
    rhos = np.asarray(rhos, dtype=float)
    out, t = [], 0
    while t < rhos.size:
        if not (np.isfinite(rhos[t]) and rhos[t] >= threshold):
            t += 1
            continue
        end = t
        while end + 1 < rhos.size and np.isfinite(rhos[end + 1]) and rhos[end + 1] >= threshold:
            end += 1
        period = rhos[t : end + 1]
        over = np.flatnonzero(period >= 1.0)
        out.append((float(period.max()), int(t + (over[0] if over.size else 0))))
        t = end + 1
    return out


def select_states(episodes: list[dict], n: int, threshold: float, min_gap: int) -> list[dict]:
    """``n`` states, at least ``min_gap`` time steps apart within one scenario (two episodes of
    a scenario may reach the same moment): first the `danger_moments` of every episode, the
    most severe periods first; then, to fill, the highest-max-rho steps; ties in order."""
    rows = [
        (0, -peak, k, t)
        for k, ep in enumerate(episodes)
        for peak, t in danger_moments(ep["rhos"], threshold)
    ]
    rows += [
        (1, -float(r), k, t)
        for k, ep in enumerate(episodes)
        for t, r in enumerate(ep["rhos"])
        if np.isfinite(r)
    ]
    rows.sort()
    chosen: list[tuple[int, int, float]] = []
    for _, _, k, t in rows:
        if len(chosen) >= n:
            break
        when = (episodes[k]["scenario"], episodes[k]["offset"] + t)  # the same moment twice
        if any(
            when[0] == w2[0] and abs(when[1] - w2[1]) < min_gap
            for w2 in (
                (episodes[k2]["scenario"], episodes[k2]["offset"] + t2) for k2, t2, _ in chosen
            )
        ):
            continue
        chosen.append((k, t, float(episodes[k]["rhos"][t])))
    states = []
    for k, t, rho in sorted(chosen, key=lambda c: (c[0], c[1])):
        ep = episodes[k]
        states.append(
            {
                "scenario": int(ep["scenario"]),
                "seed": int(ep["seed"]),
                "offset": int(ep["offset"]),
                "step": int(t),
                "max_rho": round(float(rho), 6),
                "stressed": bool(rho >= threshold),
                "reconnections": [
                    [int(a), int(b)] for a, b in ep.get("reconnections", []) if a < t
                ],
            }
        )
    return states


def _state_obs(ctx, spec, state: dict):
    """Worker: the observation of ``state``, replayed once and cached for the next tasks."""
    key = ("actions.state", spec.key(), json.dumps(state, sort_keys=True))
    cached = ctx.cache.get("actions.state")
    if cached is not None and cached[0] == key:
        return cached[1]
    if cached is not None:
        cached[2].close()
        del ctx.cache["actions.state"]
    env = spec.make()  # an env of its own (see `_episode_task`), kept for obs.simulate
    obs, _, _ = _play(env, state["scenario"], state["seed"], state["offset"], state["step"],
                      False, replay=state["reconnections"])  # fmt: skip
    if obs is None or abs(float(np.max(obs.rho)) - state["max_rho"]) > 1e-5:
        env.close()
        raise RuntimeError(f"state {state} did not replay identically")
    ctx.cache["actions.state"] = (key, obs, env)
    return obs


def _score_task(ctx, task, shared):
    """Worker: do-nothing and candidate max rho of candidates [start, stop) on one state."""
    from distributed_grid2op.envs import quiet_grid2op
    from distributed_grid2op.scoring import simulated_max_rho

    j, start, stop = task
    spec = shared["spec"]
    obs = _state_obs(ctx, spec, shared["states"][j])
    space = ctx.env(spec).action_space
    subs, vecs = shared["cand_sub"], shared["cand_vec"]
    out = np.empty(stop - start, dtype=np.float64)
    with quiet_grid2op():
        base = simulated_max_rho(obs, space({}))
        for i in range(start, stop):
            act = space({"set_bus": {"substations_id": [(int(subs[i]), vecs[i].tolist())]}})
            out[i - start] = simulated_max_rho(obs, act)
    return {"base": base, "scores": out}


# ---- ranking ------------------------------------------------------------------------------
def rank_candidates(
    base: np.ndarray,
    scores: np.ndarray,
    cand_sub: np.ndarray,
    *,
    per_substation: int,
    max_actions: int,
    min_relief: float,
) -> tuple[list[int], dict]:
    """Kept candidate indices (by substation, best first) and per-candidate statistics.

    Two passes under the caps (``per_substation``, ``max_actions``):

    1. **coverage**: greedily add the candidate with the largest gain in
       ``sum over states of the best relief any kept candidate gives that state`` (a
       facility-location objective: each stressed state keeps its best remedy, not only the
       remedies that help on average); ties by the frequency rank below;
    2. **frequency**: fill the remaining room with the candidates relieving the most states
       by ``min_relief``, then the best mean relief (alternatives for when the best one is in
       cooldown or the state is new).

    Only candidates relieving at least one state by ``min_relief`` are kept.
    """
    base = np.minimum(np.asarray(base, dtype=float), FAILED_RHO)  # inf (failed) -> FAILED_RHO
    relief = base[:, None] - np.minimum(scores, FAILED_RHO)  # (states, candidates)
    n_cand = scores.shape[1]
    relieved = (relief >= min_relief).sum(axis=0)
    mean = relief.mean(axis=0) if len(relief) else np.zeros(n_cand)
    best = relief.max(axis=0) if len(relief) else np.zeros(n_cand)
    order = np.lexsort((np.arange(n_cand), -np.round(mean, 9), -relieved))
    freq_rank = np.empty(n_cand, dtype=np.int64)
    freq_rank[order] = np.arange(n_cand)
    eligible = relieved >= 1
    subs, sub_of = np.unique(np.asarray(cand_sub, dtype=np.int64), return_inverse=True)
    per_sub = np.zeros(len(subs), dtype=np.int64)  # kept so far per substation
    picked: list[int] = []

    def room(c) -> np.ndarray:
        return per_sub[sub_of[c]] < per_substation

    def take(c: int) -> None:
        per_sub[sub_of[c]] += 1
        picked.append(int(c))
        eligible[c] = False

    gain_of = np.where(relief >= min_relief, relief, 0.0)  # (states, candidates)
    covered = np.zeros(len(relief))  # best relief of each state so far
    while len(picked) < max_actions and len(relief):
        gain = np.maximum(gain_of - covered[:, None], 0.0).sum(axis=0)
        ok = eligible & (gain > 1e-9) & room(np.arange(n_cand))
        if not ok.any():
            break
        cands = np.flatnonzero(ok)
        c = int(cands[np.lexsort((freq_rank[cands], -np.round(gain[cands], 9)))[0]])
        take(c)
        covered = np.maximum(covered, gain_of[:, c])
    for c in order:
        if len(picked) >= max_actions:
            break
        if eligible[c] and room(c):
            take(int(c))
    rank = {c: r for r, c in enumerate(picked)}
    picked.sort(key=lambda c: (int(cand_sub[c]), rank[c]))
    stats = {"relieved": relieved, "mean": mean, "best": best, "pass_rank": rank}
    return picked, stats


# ---- driver -------------------------------------------------------------------------------
def _partial_path(out: Path) -> Path:
    return out.with_name(out.name + ".partial.json")


def _load_partial(path: Path, config: dict) -> dict | None:
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: unreadable partial results ({exc}); delete it") from exc
    if not isinstance(doc, dict) or doc.get("format") != PARTIAL_FORMAT:
        raise UserError(f"{path}: not a partial action-reduction file; delete it")
    if doc.get("config") != config:
        raise UserError(
            f"{path}: partial results of other options; rerun with the same options or "
            "without --resume"
        )
    return doc


def reduce_actions(
    env_name: str,
    out,
    *,
    thermal_limit_scale: float = 1.0,
    states: int = 8,
    episodes: int | None = None,
    horizon: int = 288,
    rho_threshold: float = 0.9,
    min_gap: int = 12,
    per_substation: int = 10,
    max_actions: int = 300,
    max_candidates: int = 2000,
    min_elements: int = 4,
    min_relief: float = 0.01,
    seed: int = 0,
    workers: int = 1,
    executor=None,
    resume: bool = False,
    progress: bool = True,
    stop_after: int | None = None,
) -> Path | None:
    """Write ``actions.json`` to ``out`` (see the module doc); returns its path.

    ``stop_after`` stops after that many scoring tasks, leaving only the partial file (tests
    use it to interrupt a run); it then returns None.
    """
    from tqdm import tqdm

    from distributed_grid2op.envs import EnvSpec, env_metadata, n_scenarios, resolve_env
    from distributed_grid2op.execution import Executor
    from distributed_grid2op.io import write_json
    from distributed_grid2op.seeding import child_seeds

    t0 = time.perf_counter()
    out = Path(out)
    if out.is_dir():
        raise UserError(f"--out {out} is a folder; give a file name such as {out}/actions.json")
    resolve_env(env_name)  # a one-line UserError for an unknown env before anything else
    spec = EnvSpec(name=str(env_name), thermal_limit_scale=float(thermal_limit_scale))
    env = spec.make()
    try:
        subs = grid.controllable_substations(env, min_elements=int(min_elements))
        vectors, counts = substation_candidates(
            env, subs, max_candidates=int(max_candidates), seed=int(seed)
        )
        meta = env_metadata(env, spec)
        gsum = grid_summary(env)
        n_sc = n_scenarios(env)
    finally:
        env.close()
    cand_sub = np.concatenate([np.full(len(v), s) for s, v in zip(subs, vectors)]).astype(int)
    cand_vec = [row for v in vectors for row in v]
    n_cand = len(cand_vec)
    n_episodes = int(episodes) if episodes else max(4, int(states))
    config = {
        "env": str(env_name),
        "thermal_limit_scale": float(thermal_limit_scale),
        "grid": gsum,
        "states": int(states),
        "episodes": n_episodes,
        "horizon": int(horizon),
        "rho_threshold": float(rho_threshold),
        "min_gap": int(min_gap),
        "per_substation": int(per_substation),
        "max_actions": int(max_actions),
        "max_candidates": int(max_candidates),
        "min_elements": int(min_elements),
        "min_relief": float(min_relief),
        "seed": int(seed),
        "n_candidates": n_cand,
    }
    partial_path = _partial_path(out)
    partial = _load_partial(partial_path, config) if resume else None
    timings: dict = {"workers": int(getattr(executor, "workers", workers))}

    own = executor is None
    ex = Executor(int(workers)) if own else executor
    try:
        # -- stressed states ---------------------------------------------------------------
        t1 = time.perf_counter()
        if partial is not None:
            chosen = partial["states"]
        else:
            rng = np.random.default_rng([int(seed), 1])
            perm = rng.permutation(n_sc)
            fractions = rng.random(n_episodes)
            ep_seeds = child_seeds(int(seed), n_episodes)
            tasks = [
                (int(perm[k % n_sc]), ep_seeds[k], float(fractions[k]), int(horizon))
                for k in range(n_episodes)
            ]
            shared = {"spec": spec}
            episodes_out = []
            bar = tqdm(total=len(tasks), desc="states", disable=not progress, leave=False)
            for task, res in zip(tasks, ex.map(_episode_task, tasks, shared)):
                episodes_out.append(
                    {
                        "scenario": task[0],
                        "seed": task[1],
                        "offset": res["offset"],
                        "rhos": res["rhos"],
                        "reconnections": res["reconnections"],
                    }
                )
                bar.update(1)
            bar.close()
            chosen = select_states(episodes_out, int(states), float(rho_threshold), int(min_gap))
            if not chosen:
                raise UserError(f"{env_name}: no state could be played (every episode ended)")
            partial = {"format": PARTIAL_FORMAT, "config": config, "states": chosen, "done": {}}
            write_json(partial_path, partial)
        timings["states_s"] = round(time.perf_counter() - t1, 3)

        # -- scoring ------------------------------------------------------------------------
        t2 = time.perf_counter()
        n_states = len(chosen)
        base = np.full(n_states, np.inf)
        scores = np.full((n_states, n_cand), np.inf)
        done = partial["done"]
        for key, rec in done.items():
            j, start = (int(x) for x in key.split(":"))
            base[j] = float(rec["base"])
            scores[j, start : start + len(rec["scores"])] = np.asarray(rec["scores"], dtype=float)
        tasks = [
            (j, a, min(a + CHUNK, n_cand))
            for j in range(n_states)
            for a in range(0, n_cand, CHUNK)
            if f"{j}:{a}" not in done
        ]
        shared = {"spec": spec, "states": chosen, "cand_sub": cand_sub, "cand_vec": cand_vec}
        bar = tqdm(
            total=n_states * max(1, math.ceil(n_cand / CHUNK)),
            initial=len(done),
            desc="scoring",
            unit="task",
            disable=not progress,
            leave=False,
        )
        last_write, n_new = time.monotonic(), 0
        try:
            for (j, a, b), res in ex.imap(_score_task, tasks, shared):
                base[j] = res["base"]
                scores[j, a:b] = res["scores"]
                done[f"{j}:{a}"] = {"base": float(res["base"]), "scores": res["scores"].tolist()}
                bar.update(1)
                n_new += 1
                if stop_after is not None and n_new >= stop_after:
                    write_json(partial_path, partial)
                    bar.close()
                    return None
                if time.monotonic() - last_write > 5.0:
                    write_json(partial_path, partial)
                    last_write = time.monotonic()
        except BaseException:  # interrupted or a worker lost: keep every finished task
            if n_new:
                write_json(partial_path, partial)
            raise
        bar.close()
        timings["scoring_s"] = round(time.perf_counter() - t2, 3)
    finally:
        if own:
            ex.close()

    picked, stats = rank_candidates(
        base,
        scores,
        cand_sub,
        per_substation=int(per_substation),
        max_actions=int(max_actions),
        min_relief=float(min_relief),
    )
    actions = [
        {
            "substation": int(cand_sub[c]),
            "set_bus": cand_vec[c].tolist(),
            "score": {
                "relieved": int(stats["relieved"][c]),
                "mean_relief": round(float(stats["mean"][c]), 6),
                "best_relief": round(float(stats["best"][c]), 6),
            },
        }
        for c in picked
    ]
    scoring = {
        "env": str(env_name),
        "thermal_limit_scale": float(thermal_limit_scale),
        "backend": spec.backend,
        "grid2op_version": meta.get("grid2op_version"),
        "seed": int(seed),
        "method": "two-bus splits scored by simulated max rho on stressed do-nothing states",
        "ranking": RANKING,
        "params": {
            k: config[k]
            for k in (
                "episodes",
                "horizon",
                "rho_threshold",
                "min_gap",
                "per_substation",
                "max_actions",
                "max_candidates",
                "min_elements",
                "min_relief",
            )
        },
        "states": [
            {**s, "do_nothing_max_rho": round(float(base[j]), 6)} for j, s in enumerate(chosen)
        ],
        "candidates": {
            "total": n_cand,
            "simulations": int(n_cand * n_states),
            "per_substation": {str(s): counts[s] for s in subs},
        },
    }
    timings["total_s"] = round(time.perf_counter() - t0, 3)
    path = write_action_file(
        out, env_name=str(env_name), grid=gsum, scoring=scoring, actions=actions, timings=timings
    )
    partial_path.unlink(missing_ok=True)
    return path


def main(argv=None) -> int:
    """``python -m distributed_grid2op.actions``: reduce a grid's unitary topologies to
    ``actions.json`` (topologies that relieve overloads on stressed states)."""
    from distributed_grid2op import cli

    p = cli.ArgumentParser(prog="python -m distributed_grid2op.actions", description=main.__doc__)
    p.add_argument("--env", required=True, help="bundled test env name or env folder path")
    p.add_argument("--out", required=True, help="output file (actions.json)")
    p.add_argument("--thermal-limit-scale", type=cli.positive_float, default=1.0)
    p.add_argument("--states", type=cli.positive_int, default=8, help="stressed states (8)")
    p.add_argument(
        "--episodes",
        type=cli.positive_int,
        default=None,
        help="do-nothing episodes searched for states (default max(4, states))",
    )
    p.add_argument("--horizon", type=cli.positive_int, default=288, help="steps per episode")
    p.add_argument(
        "--rho-threshold",
        type=cli.positive_float,
        default=0.9,
        help="a state is stressed at this max rho (highest states kept first)",
    )
    p.add_argument("--per-substation", type=cli.positive_int, default=10)
    p.add_argument("--max-actions", type=cli.positive_int, default=300)
    p.add_argument(
        "--max-candidates",
        type=cli.positive_int,
        default=2000,
        help="sampled candidates per substation when it has more (2000)",
    )
    p.add_argument(
        "--min-relief",
        type=float,
        default=0.01,
        help="max rho decrease that counts as relieving a state (0.01)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue from <out>.partial.json")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    cli.add_executor_arguments(p)
    args = p.parse_args(argv)
    with cli.executor_from_args(args) as ex:
        path = reduce_actions(
            args.env,
            args.out,
            thermal_limit_scale=args.thermal_limit_scale,
            states=args.states,
            episodes=args.episodes,
            horizon=args.horizon,
            rho_threshold=args.rho_threshold,
            per_substation=args.per_substation,
            max_actions=args.max_actions,
            max_candidates=args.max_candidates,
            min_relief=args.min_relief,
            seed=args.seed,
            executor=ex,
            resume=args.resume,
            progress=not args.no_progress,
        )
    doc = json.loads(Path(path).read_text(encoding="utf-8"))
    print(
        f"wrote {len(doc['actions'])} actions ({doc['scoring']['candidates']['total']} candidates, "
        f"{len(doc['scoring']['states'])} states, {doc['timings']['total_s']:.1f} s) to {path}"
    )
    return 0
