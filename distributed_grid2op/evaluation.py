"""Evaluate agents and baselines on the same scenarios with the same seeds; metrics as CSV.

Why not grid2op's ``Runner``: it names episode folders after the chronic (two episodes of
one chronic overwrite each other), NaN-pads its arrays, and cannot record what our agents
decided nor how long each decision took. So each episode is the one decision loop
(`loop.DecisionLoop`, the same as in training) run by a task of the execution layer
(`execution.Executor`: its env made from a picklable `EnvSpec` in the worker), which
returns the episode's arrays; the driver writes one
``episodes/<run>/ep<k>_<scenario>_seed<s>.npz`` (atomic; its name is unique per run and
episode, so nothing is overwritten and an interrupted run resumes by skipping the episodes
already on disk).

Outputs in ``out``:

- ``run_config.json``: env, thermal limit scale, seed, scenarios, episode plan, versions.
- ``step_metrics.csv``: one row per (run, episode, step) - max rho, rho of every line,
  overloaded lines (rho > 1), losses (sum gen_p - sum load_p, MW), the acting agent and its
  action id, reward, line status changes, illegal/ambiguous flags, game over; the operating
  cost of the step (`cost.step_costs` from the observation before it to the one after it):
  ``cost_<term>`` for each term of `cost.TERMS` (redispatch in currency, or MWh when the grid
  does not price it; ``cost_curtailment`` is the curtailed energy in MWh), ``total_cost``
  (weighted by `cost.DEFAULT_WEIGHTS`), ``redispatched_mwh`` (`cost.redispatched_mwh`), and
  per storage unit ``k`` its charge ``storage_charge_mwh_<k>`` and power ``storage_power_mw_<k>``
  (MW, > 0 charging) after the step (NaN on the game-over step).
- ``daily_summary.csv``: one row per (run, episode, day), with the day's ``total_cost``,
  ``redispatched_mwh`` and ``curtailed_mwh``.
- ``episode_summary.csv``: one row per (run, episode), with the episode's ``total_cost``,
  ``cost_per_step`` (over the survived steps: an episode cut short costs less in total),
  ``redispatched_mwh`` and ``curtailed_mwh``.
- ``run_summary.csv``: one row per run (see `summarize_runs`); with ``l2rpn_score`` also
  ``l2rpn_2023_score``, grid2op's own L2RPN 2023 score (`l2rpn_score.l2rpn_2023_score`, on a
  copy of the env folder kept in ``l2rpn_2023/``), per episode in ``l2rpn_score.csv``.

Step ``t`` (1-based) is the t-th ``env.step``; its row holds the observation after it.
An episode has ``max_steps`` steps; ``survived_steps`` counts the steps completed without
game over (the game-over step does not count), ``survived_fraction = survived_steps /
max_steps``. Decision times are wall clock, so they are the only non-reproducible numbers
and appear only in ``episode_summary.csv``, ``run_summary.csv`` and the ``.npz`` files.

Score (L2RPN-2020 style, survival as the cost): per episode with ``T`` steps, agent
survival ``s`` and reference survival ``r`` on the same scenario and seed::

    score = 100 * (s - r) / (T - r)   if s >= r and T > r     (reference 0, full survival 100)
    score = 0                         if s >= r and T == r
    score = -100 * (r - s) / r        if s < r                (survive nothing -100)

``score`` uses do-nothing as the reference, ``score_vs_reconnect`` the reconnect baseline;
a run's score is the mean over its episodes (NaN when the reference was not run).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from distributed_grid2op import cli, cost, pretrained
from distributed_grid2op.baselines import BASELINES, DANGER, OPTIONAL_BASELINES, make_baseline
from distributed_grid2op.baselines import REVERT as EXPERT_REVERT
from distributed_grid2op.config import Config, option
from distributed_grid2op.cost import TERMS
from distributed_grid2op.envs import EnvSpec, env_metadata, quiet_grid2op
from distributed_grid2op.errors import UserError
from distributed_grid2op.execution import LOCAL, Executor, default_workers
from distributed_grid2op.io import atomic_path, ensure_writable_dir, write_json
from distributed_grid2op.loop import DEFAULT_RECONNECT, RECONNECT_RULES, DecisionLoop, Step, play
from distributed_grid2op.seeding import child_seeds
from distributed_grid2op.splits import SPLITS, scenario_names, split_scenarios

FORMAT = 1
OVERFLOW = 1.0
EPISODES_DIR = "episodes"
STEP_COLUMNS = [
    "run", "episode", "scenario", "scenario_name", "seed", "max_steps", "step", "day",
    "datetime", "max_rho", "n_overloaded", "losses_mw", "agent", "action_id", "substation",
    "reward", "line_status_changes", "illegal", "ambiguous", "game_over",
    *(f"cost_{t}" for t in TERMS), "total_cost", "redispatched_mwh",
]  # fmt: skip
DAILY_COLUMNS = [
    "run", "episode", "scenario", "scenario_name", "seed", "day", "steps", "max_max_rho",
    "mean_max_rho", "danger_steps", "overload_steps", "decisions", "actions",
    "losses_mean_mw", "losses_mwh", "total_cost", "redispatched_mwh", "curtailed_mwh",
]  # fmt: skip
EPISODE_COLUMNS = [
    "run", "episode", "scenario", "scenario_name", "seed", "max_steps", "survived_steps",
    "survived_fraction", "completed", "safe_steps", "total_reward", "decisions", "actions",
    "illegal_actions", "game_over_cause", "total_cost", "cost_per_step", "redispatched_mwh",
    "curtailed_mwh", "simulations_per_decision", "decision_ms_mean", "decision_ms_per_decision",
]  # fmt: skip
RUN_COLUMNS = [
    "run", "episodes", "survived_steps_mean", "survived_steps_std", "survived_fraction_mean",
    "survived_fraction_std", "completed_fraction", "safe_steps_mean", "total_reward_mean",
    "decisions_mean", "actions_mean", "illegal_actions", "score", "score_vs_reconnect",
    "total_cost_mean", "cost_per_step_mean", "redispatched_mwh_mean", "curtailed_mwh_mean",
    "simulations_per_decision", "decision_ms_mean", "decision_ms_per_decision", "game_over_causes",
]  # fmt: skip
#: episode cost columns the run summary averages (NaN for tables made before them)
COST_COLUMNS = ("total_cost", "cost_per_step", "redispatched_mwh", "curtailed_mwh")
TIMING_COLUMNS = ("decision_ms_mean", "decision_ms_per_decision")


@dataclass(frozen=True)
class RunSpec:
    """One thing to evaluate: a baseline by name or a trained agent's directory."""

    name: str
    kind: str  # "baseline" or "agent"
    source: str  # baseline name or checkpoint directory
    top_k: int | None = None  # agents: simulation check at decision time (None: as saved)


@dataclass(frozen=True)
class EpisodeTask:
    """Everything a worker needs to play one episode of one run (picklable)."""

    run: RunSpec
    env_spec: EnvSpec
    episode: int
    scenario: int
    scenario_name: str
    seed: int
    path: str
    max_steps: int | None = None
    rules: Rules = field(default_factory=lambda: Rules())


@dataclass(frozen=True)
class Rules:
    """Settings every run of an evaluation shares (None: baselines' default, agents as saved).

    ``action_set``: the content (JSON text) of a reduced ``actions.json`` for the expert; it
    travels as a value, so workers on other machines need no access to the driver's files.
    """

    danger: float | None = None
    reconnect: str | None = None
    action_set: str | None = None
    expert_budget: int | None = None
    expert_revert: float | None = EXPERT_REVERT


# ---------------------------------------------------------------------------- plan


def plan_episodes(
    env, split: str = "all", episodes: int | None = None, seed: int = 0
) -> list[dict]:
    """The (episode, scenario, seed) list every run plays: the split's scenarios, cycled.

    Episode ``k`` plays scenario ``ids[k % len(ids)]`` with seed ``child_seeds(seed, n)[k]``.
    """
    ids = split_scenarios(env, split)
    names = scenario_names(env)
    n = len(ids) if episodes is None else int(episodes)
    if n <= 0:
        raise UserError(f"--episodes must be positive, got {n}")
    seeds = child_seeds(seed, n)
    return [
        {
            "episode": k,
            "scenario": ids[k % len(ids)],
            "scenario_name": names[ids[k % len(ids)]],
            "seed": seeds[k],
        }
        for k in range(n)
    ]


def default_split(env) -> str:
    """``test`` for env folders that carry a ``splits.json`` (generated scenarios), else ``all``."""
    return "test" if (Path(env.get_path_env()) / "splits.json").is_file() else "all"


def run_specs(baselines=(), agents=(), top_k=(None,)) -> list[RunSpec]:
    """Validate baseline names and agent directories (or ``pretrained:NAME``, run name
    ``pretrained-NAME``) into unique run names; with ``top_k`` values, each agent runs once
    per value, named ``<dir>-top<k>``."""
    runs: list[RunSpec] = []
    known = BASELINES + OPTIONAL_BASELINES
    for name in baselines:
        if name not in known:
            raise UserError(f"unknown baseline {name!r}; choose from {', '.join(known)}")
        if all(r.name != name for r in runs):
            runs.append(RunSpec(name, "baseline", name))
    for path in agents:
        p = Path(pretrained.resolve(path))
        if not p.is_dir():
            raise UserError(f"agent directory {path} does not exist")
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", p.resolve().name) or "agent"
        if str(path).startswith(pretrained.PREFIX):
            stem = f"pretrained-{stem}"
        for k in top_k:
            base = stem if k is None else f"{stem}-top{int(k)}"
            name, i = base, 2
            while any(r.name == name for r in runs):
                name, i = f"{base}-{i}", i + 1
            runs.append(RunSpec(name, "agent", str(p.resolve()), None if k is None else int(k)))
    if not runs:
        raise UserError("nothing to evaluate: give --agents and/or --baselines")
    return runs


# ---------------------------------------------------------------------------- worker


def _agent(ctx, run: RunSpec, spec: EnvSpec, rules: Rules, files: dict | None):
    """One agent per run per worker (loading a checkpoint can take seconds); every episode
    resets it. ``files``: a trained agent's files (bytes), sent by the driver."""
    digest = None
    if files is not None:
        digest = hashlib.sha1(b"".join(files[k] for k in sorted(files))).hexdigest()
    key = ("eval-agent", run, spec.key(), rules, digest)
    if key not in ctx.cache:
        ctx.cache[key] = make_agent(run, ctx.env(spec), rules, files)
    return ctx.cache[key]


def make_agent(run: RunSpec, env, rules: Rules | float | None = None, files: dict | None = None):
    """A fresh agent for ``run``: a baseline, or a trained agent from its folder (``files``:
    its files as bytes, from `agents.hierarchical.read_agent_files`; default: read the folder).

    ``rules``: the settings of every run (`Rules`; a float: the danger threshold)."""
    if not isinstance(rules, Rules):
        rules = Rules(danger=rules)
    if run.kind == "baseline":
        action_file = None
        if rules.action_set is not None:
            from distributed_grid2op.actions.file import parse_action_file

            action_file = parse_action_file(json.loads(rules.action_set), env, "--action-set")
        return make_baseline(
            run.source,
            env,
            danger=DANGER if rules.danger is None else rules.danger,
            reconnect=rules.reconnect or DEFAULT_RECONNECT,
            action_file=action_file,
            budget=rules.expert_budget,
            revert=rules.expert_revert,
        )
    from distributed_grid2op.agents.hierarchical import agent_from_files, read_agent_files

    if files is None:
        files, _ = read_agent_files(run.source)
    agent = agent_from_files(files, env, source=run.source)
    if run.top_k is not None:
        agent.top_k = run.top_k
    agent.set_rules(danger=rules.danger, reconnect=rules.reconnect)
    return agent


def _fatal(exceptions) -> list:
    from grid2op.Exceptions import AmbiguousAction, IllegalAction

    return [e for e in exceptions if not isinstance(e, IllegalAction | AmbiguousAction)]


def _timestamp(obs) -> dt.datetime:
    return dt.datetime(
        int(obs.year), int(obs.month), int(obs.day), int(obs.hour_of_day), int(obs.minute_of_hour)
    )


ROW_KEYS = ("rho", "line_status", "topo", "reward", "illegal", "ambiguous", "agent", "action_id",
            "substation", "simulations", "decision_ms", "losses_mw", "minutes", "datetime",
            "cost_terms", "redispatched_mwh", "storage_charge", "storage_power")  # fmt: skip


def play_episode(ctx, task: EpisodeTask, shared=None) -> dict:
    """Play one episode through the decision loop; its arrays (a task of the executor).

    Arrays (``T`` = steps played, ``L`` = lines): ``rho``/``line_status`` (T, L) after each
    step (NaN / False on the game-over step), ``topo`` (T, n_elements), ``rho0``/
    ``line_status0``/``topo0`` before the first step, and per step ``reward``, ``illegal``,
    ``ambiguous``, ``agent``, ``action_id``, ``substation``, ``decision_ms``, ``losses_mw``,
    ``minutes`` (since the start), ``datetime``, ``cost_terms`` (T, len(cost.TERMS)),
    ``redispatched_mwh``, ``storage_charge``/``storage_power`` (T, n_storage; NaN on the
    game-over step); ``meta`` (JSON). A trained agent's continuous agents act every step.
    """
    with quiet_grid2op():
        env = ctx.env(task.env_spec)
        files = (shared or {}).get("agents", {}).get(task.run.name)
        agent = _agent(ctx, task.run, task.env_spec, task.rules, files)
        seed_agent = getattr(agent, "seed", None)
        if callable(seed_agent):  # BaseAgent.seed seeds the agent's action space
            seed_agent(int(task.seed))
        rows: dict[str, list] = {k: [] for k in ROW_KEYS}
        state = {"cause": "", "last": None}
        step_delta = dt.timedelta(seconds=float(env.delta_time_seconds))

        def record(step: Step) -> None:
            obs, info = step.obs, step.info
            fatal = _fatal(info.get("exception") or []) if step.done else []
            if fatal:
                state["cause"] = type(fatal[0]).__name__
                rows["rho"].append(np.full(env.n_line, np.nan, np.float32))
                rows["line_status"].append(np.zeros(env.n_line, bool))
                rows["topo"].append(np.full(env.dim_topo, -1, np.int8))
                rows["losses_mw"].append(np.nan)
                rows["cost_terms"].append(np.full(len(TERMS), np.nan))
                rows["redispatched_mwh"].append(np.nan)
                rows["storage_charge"].append(np.full(env.n_storage, np.nan))
                rows["storage_power"].append(np.full(env.n_storage, np.nan))
            else:
                rows["rho"].append(obs.rho.astype(np.float32))
                rows["line_status"].append(obs.line_status.copy())
                rows["topo"].append(obs.topo_vect.astype(np.int8))
                rows["losses_mw"].append(float(np.sum(obs.gen_p) - np.sum(obs.load_p)))
                terms = cost.step_costs(step.obs_before, obs)
                rows["cost_terms"].append(np.array([terms[t] for t in TERMS]))
                rows["redispatched_mwh"].append(cost.redispatched_mwh(step.obs_before, obs))
                rows["storage_charge"].append(np.asarray(obs.storage_charge, dtype=float))
                rows["storage_power"].append(np.asarray(obs.storage_power, dtype=float))
            # a game-over observation carries no date: one step after the previous one
            stamp = state["last"] + step_delta if fatal else _timestamp(obs)
            state["last"] = stamp
            rows["minutes"].append(int((stamp - start).total_seconds() // 60))
            rows["datetime"].append(stamp.isoformat(sep=" ", timespec="minutes"))
            rows["reward"].append(step.reward)
            rows["illegal"].append(bool(info.get("is_illegal", False)))
            rows["ambiguous"].append(bool(info.get("is_ambiguous", False)))
            d = step.decision
            rows["agent"].append(str(d.agent))
            rows["action_id"].append(int(d.action_id))
            rows["substation"].append(int(d.substation))
            rows["simulations"].append(int(d.simulations))
            rows["decision_ms"].append(step.ms)

        loop = DecisionLoop(env, agent.controller, observer=record,
                            every_step=agent.every_step(deterministic=True))  # fmt: skip
        options = {"time serie id": int(task.scenario)}
        if task.max_steps:
            options["max step"] = int(task.max_steps)
        obs = loop.reset(seed=int(task.seed), options=options)
        agent.reset(obs)
        max_steps = int(obs.max_step)
        start = state["last"] = _timestamp(obs)
        init = (obs.rho.astype(np.float32), obs.line_status.copy(), obs.topo_vect.astype(np.int8))
        play(loop, agent, deterministic=True)
        steps = len(rows["reward"])
        survived = steps - 1 if state["cause"] else steps
    arrays = {k: np.asarray(v) for k, v in rows.items()}
    for k, width in (("cost_terms", len(TERMS)), ("storage_charge", env.n_storage),
                     ("storage_power", env.n_storage)):  # fmt: skip
        arrays[k] = arrays[k].astype(float).reshape(len(rows[k]), width)
    arrays["agent"] = np.asarray(rows["agent"], dtype=str)
    arrays["datetime"] = np.asarray(rows["datetime"], dtype=str)
    arrays["rho0"], arrays["line_status0"], arrays["topo0"] = init
    meta = {
        "run": task.run.name, "episode": task.episode, "scenario": task.scenario,
        "scenario_name": task.scenario_name, "seed": task.seed, "max_steps": max_steps,
        "survived_steps": survived, "game_over_cause": state["cause"], "start": start.isoformat(),
    }  # fmt: skip
    arrays["meta"] = np.asarray(json.dumps(meta))
    return arrays


def write_episode(path: str | Path, arrays: dict) -> Path:
    """Write one episode's arrays (atomically): ``.npz``, compressed."""
    with atomic_path(path, suffix=".npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)
    return Path(path)


def load_episode(path: str | Path) -> dict:
    """The arrays of one episode file, with ``meta`` decoded to a dict."""
    with np.load(path, allow_pickle=False) as data:
        out = {k: data[k] for k in data.files}
    out["meta"] = json.loads(str(out["meta"]))
    return out


# ---------------------------------------------------------------------------- metrics


def episode_steps(ep: dict, n_line: int | None = None) -> pd.DataFrame:
    """``step_metrics`` rows of one episode (see module docstring for the columns)."""
    m = ep["meta"]
    rho = np.asarray(ep["rho"], dtype=float)
    steps = rho.shape[0]
    prev = (
        np.vstack([ep["line_status0"][None, :], ep["line_status"][:-1]])
        if steps
        else ep["line_status"]
    )
    changes = np.sum(ep["line_status"] != prev, axis=1)
    game_over = np.zeros(steps, dtype=bool)
    if m["game_over_cause"]:
        game_over[-1] = True
        changes[-1] = 0
    max_rho = np.max(rho, axis=1) if rho.shape[1] else np.full(steps, np.nan)  # NaN on game over
    overloaded = np.sum(rho > OVERFLOW, axis=1)
    day = np.asarray(ep["minutes"], dtype=int) // 1440
    df = pd.DataFrame(
        {
            "run": m["run"],
            "episode": m["episode"],
            "scenario": m["scenario"],
            "scenario_name": m["scenario_name"],
            "seed": m["seed"],
            "max_steps": m["max_steps"],
            "step": np.arange(1, steps + 1),
            "day": day,
            "datetime": ep["datetime"],
            "max_rho": max_rho,
            "n_overloaded": overloaded,
            "losses_mw": ep["losses_mw"],
            "agent": ep["agent"],
            "action_id": ep["action_id"],
            "substation": ep["substation"],
            "reward": ep["reward"],
            "line_status_changes": changes,
            "illegal": ep["illegal"].astype(int),
            "ambiguous": ep["ambiguous"].astype(int),
            "game_over": game_over.astype(int),
        }  # fmt: skip
    )
    terms = _array(ep, "cost_terms", (steps, len(TERMS)))
    for j, t in enumerate(TERMS):
        df[f"cost_{t}"] = terms[:, j]
    df["total_cost"] = terms @ np.array([cost.DEFAULT_WEIGHTS[t] for t in TERMS])
    df["redispatched_mwh"] = _array(ep, "redispatched_mwh", (steps,))
    n_line = rho.shape[1] if n_line is None else n_line
    rho_cols = pd.DataFrame(rho, columns=[f"rho_{i}" for i in range(n_line)])
    charge, power = ep.get("storage_charge"), ep.get("storage_power")
    n_sto = 0 if charge is None else charge.shape[1]
    storage = pd.DataFrame(
        {**{f"storage_charge_mwh_{k}": charge[:, k] for k in range(n_sto)},
         **{f"storage_power_mw_{k}": power[:, k] for k in range(n_sto)}}, index=df.index,
    )  # fmt: skip
    return pd.concat([df, rho_cols, storage], axis=1)


def _array(ep: dict, key: str, shape: tuple) -> np.ndarray:
    """``ep[key]`` as floats, or NaN of ``shape`` for episodes written before it existed."""
    return np.asarray(ep[key], dtype=float) if key in ep else np.full(shape, np.nan)


def daily_summary(
    steps: pd.DataFrame, danger: float = DANGER, step_minutes: float = 5.0
) -> pd.DataFrame:
    """Per (run, episode, day): max and mean of max rho, danger/overload steps, actions, losses.

    ``danger_steps``: steps with max rho >= ``danger``; ``overload_steps``: with a line
    above rho 1; ``decisions``: steps where an agent decided; ``actions``: decisions with an
    action (``action_id >= 0``); ``losses_mwh``: losses integrated over ``step_minutes``.
    """
    keys = ["run", "episode", "scenario", "scenario_name", "seed", "day"]
    s = steps.assign(
        _danger=(steps["max_rho"] >= danger).astype(int),
        _over=(steps["n_overloaded"] > 0).astype(int),
        _dec=(steps["agent"].fillna("").astype(str) != "").astype(int),
        _act=(steps["action_id"] >= 0).astype(int),
        _cost=steps["total_cost"],
        _curtailed=steps["cost_curtailment"],
    )
    g = s.groupby(keys, sort=False)
    out = pd.DataFrame(
        {
            "steps": g["step"].count(),
            "max_max_rho": g["max_rho"].max(),
            "mean_max_rho": g["max_rho"].mean(),
            "danger_steps": g["_danger"].sum(),
            "overload_steps": g["_over"].sum(),
            "decisions": g["_dec"].sum(),
            "actions": g["_act"].sum(),
            "losses_mean_mw": g["losses_mw"].mean(),
            "losses_mwh": g["losses_mw"].sum() * step_minutes / 60.0,
            "total_cost": g["_cost"].sum(),
            "redispatched_mwh": g["redispatched_mwh"].sum(),
            "curtailed_mwh": g["_curtailed"].sum(),
        }
    ).reset_index()
    return out[DAILY_COLUMNS]


def episode_summary(ep: dict, danger: float = DANGER) -> dict:
    """Survival, safety and cost of one episode (one ``episode_summary.csv`` row)."""
    m = ep["meta"]
    survived = int(m["survived_steps"])
    rho = np.asarray(ep["rho"], dtype=float)[:survived]
    in_danger = np.flatnonzero(np.max(rho, axis=1) >= danger) if survived else np.array([], int)
    decided = np.asarray(ep["agent"]) != ""
    ms = np.asarray(ep["decision_ms"], dtype=float)
    terms = _array(ep, "cost_terms", (len(decided), len(TERMS)))[:survived]
    total = float(np.sum(terms @ np.array([cost.DEFAULT_WEIGHTS[t] for t in TERMS])))
    return {
        "run": m["run"], "episode": m["episode"], "scenario": m["scenario"],
        "scenario_name": m["scenario_name"], "seed": m["seed"], "max_steps": m["max_steps"],
        "survived_steps": survived, "survived_fraction": survived / m["max_steps"],
        "completed": int(survived == m["max_steps"]),
        "safe_steps": int(in_danger[0]) if in_danger.size else survived,
        "total_reward": float(np.sum(ep["reward"])), "decisions": int(decided.sum()),
        "actions": int(np.sum(np.asarray(ep["action_id"]) >= 0)),
        "illegal_actions": int(np.sum(ep["illegal"])), "game_over_cause": m["game_over_cause"],
        "total_cost": total, "cost_per_step": total / survived if survived else float("nan"),
        "redispatched_mwh": float(np.sum(_array(ep, "redispatched_mwh", (len(decided),))[:survived])),
        "curtailed_mwh": float(np.sum(terms[:, TERMS.index("curtailment")])),
        "simulations_per_decision": (
            float(np.sum(ep["simulations"])) / max(1, int(decided.sum())) if "simulations" in ep
            else float("nan")
        ),
        "decision_ms_mean": float(ms.mean()) if ms.size else float("nan"),
        "decision_ms_per_decision": float(ms[decided].mean()) if decided.any() else float("nan"),
    }  # fmt: skip


def l2rpn_score(survived, reference, max_steps) -> np.ndarray:
    """Per-episode L2RPN-2020-style score (formula in the module docstring), in [-100, 100]."""
    s, r, t = (np.asarray(x, dtype=float) for x in (survived, reference, max_steps))
    with np.errstate(divide="ignore", invalid="ignore"):
        up = np.where(t > r, 100.0 * (s - r) / (t - r), 0.0)
        down = np.where(r > 0, -100.0 * (r - s) / r, 0.0)
    return np.where(s >= r, up, down)


def _score(episodes: pd.DataFrame, run: str, reference: str) -> float:
    ref = episodes[episodes["run"] == reference].set_index("episode")["survived_steps"]
    mine = episodes[episodes["run"] == run].set_index("episode")
    if ref.empty or not mine.index.isin(ref.index).all():
        return float("nan")
    return float(
        np.mean(l2rpn_score(mine["survived_steps"], ref.loc[mine.index], mine["max_steps"]))
    )


def summarize_runs(episodes: pd.DataFrame) -> pd.DataFrame:
    """One row per run: means and (population) stds over episodes, scores, game-over causes."""
    rows = []
    for run, e in episodes.groupby("run", sort=False):
        causes = e.loc[e["game_over_cause"].fillna("") != "", "game_over_cause"].value_counts()
        rows.append(
            {
                "run": run,
                "episodes": len(e),
                "survived_steps_mean": e["survived_steps"].mean(),
                "survived_steps_std": e["survived_steps"].std(ddof=0),
                "survived_fraction_mean": e["survived_fraction"].mean(),
                "survived_fraction_std": e["survived_fraction"].std(ddof=0),
                "completed_fraction": e["completed"].mean(),
                "safe_steps_mean": e["safe_steps"].mean(),
                "total_reward_mean": e["total_reward"].mean(),
                "decisions_mean": e["decisions"].mean(),
                "actions_mean": e["actions"].mean(),
                "illegal_actions": int(e["illegal_actions"].sum()),
                "score": _score(episodes, run, "do-nothing"),
                "score_vs_reconnect": _score(episodes, run, "reconnect"),
                **{f"{c}_mean": e[c].mean() if c in e else float("nan") for c in COST_COLUMNS},
                "simulations_per_decision": _weighted_ms(
                    e, "simulations_per_decision", "decisions"
                ),
                "decision_ms_mean": _weighted_ms(e, "decision_ms_mean", "survived_steps"),
                "decision_ms_per_decision": _weighted_ms(
                    e, "decision_ms_per_decision", "decisions"
                ),
                "game_over_causes": ";".join(f"{k}:{v}" for k, v in sorted(causes.items())),
            }  # fmt: skip
        )
    return pd.DataFrame(rows, columns=RUN_COLUMNS)


def _weighted_ms(e: pd.DataFrame, col: str, weight: str) -> float:
    w = e[weight].to_numpy(float) + (1.0 if weight == "survived_steps" else 0.0)
    v = e[col].to_numpy(float)
    ok = np.isfinite(v) & (w > 0)
    return float(np.sum(v[ok] * w[ok]) / np.sum(w[ok])) if ok.any() else float("nan")


# ---------------------------------------------------------------------------- driver


@dataclass
class EvaluationResult:
    """The tables written to ``out`` (pandas DataFrames)."""

    out: Path
    steps: pd.DataFrame
    daily: pd.DataFrame
    episodes: pd.DataFrame
    runs: pd.DataFrame
    l2rpn: pd.DataFrame | None = None  # grid2op's L2RPN 2023 score per (run, scenario)


def _write_csv(df: pd.DataFrame, path: Path) -> None:
    with atomic_path(path, suffix=".csv") as tmp:
        df.to_csv(tmp, index=False, float_format="%.6g")


def _check_config(path: Path, config: dict) -> None:
    if not path.is_file():
        return
    try:
        old = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(
            f"{path}: malformed ({exc.msg}); remove it or choose another --out"
        ) from exc
    keys = ("env", "thermal_limit_scale", "seed", "scenarios", "plan", "max_steps", "danger",
            "reconnect", "expert_budget", "expert_revert", "action_set")  # fmt: skip
    diff = [k for k in keys if old.get(k) != config.get(k)]
    if diff:
        raise UserError(
            f"{path.parent} holds an evaluation with other settings ({', '.join(diff)}); "
            "choose another --out or rerun with the same options to resume"
        )


def evaluate(
    runs: list[RunSpec],
    env_spec: EnvSpec,
    out: str | Path,
    *,
    scenarios: str | None = None,
    episodes: int | None = None,
    seed: int = 0,
    max_steps: int | None = None,
    danger: float | None = None,
    workers: int | None = 1,
    progress: bool = True,
    executor: Executor | None = None,
    reconnect: str | None = None,
    action_set: str | Path | None = None,
    expert_budget: int | None = None,
    expert_revert: float | None = EXPERT_REVERT,
    l2rpn_score: bool = False,
) -> EvaluationResult:
    """Play every run on the same (scenario, seed) plan and write the CSVs to ``out``.

    ``danger``: the threshold of every run (None: ``DANGER`` for baselines, each trained
    agent's own); the summaries count danger steps at it (``DANGER`` if None).
    ``reconnect``: the reconnection rule of every run (None: ``DEFAULT_RECONNECT`` for baselines, each
    agent's own). ``action_set``: a reduced ``actions.json`` for the expert;
    ``expert_budget``: its simulations per decision (None: every candidate);
    ``expert_revert``: its revert level (`baselines.GreedyExpert`; None: never). ``workers``
    (None: the CPUs, capped by the episodes) or an ``executor`` of the execution layer.
    Episodes already on disk (same settings, see ``run_config.json``) are reused, so an
    interrupted evaluation resumes where it stopped. ``l2rpn_score``: also grid2op's L2RPN
    2023 score of every run (`score_l2rpn_2023`; `UserError` where it does not apply).
    """
    import grid2op

    out = ensure_writable_dir(out)
    with quiet_grid2op():
        # the driver's own context: forked workers start with this env and these agents
        env = LOCAL.env(env_spec)
        if l2rpn_score:
            from distributed_grid2op.l2rpn_score import check_applies

            check_applies(env, env_spec.name)
        split = scenarios or default_split(env)
        plan = plan_episodes(env, split, episodes, seed)
        rules = Rules(danger, reconnect, _action_text(action_set, env), expert_budget,
                      expert_revert)  # fmt: skip
        agent_files = {}
        for run in runs:  # fail fast (exit 2) on a bad checkpoint, before any worker starts
            if run.kind == "agent":
                from distributed_grid2op.agents.hierarchical import read_agent_files

                agent_files[run.name], _ = read_agent_files(run.source)
            _agent(LOCAL, run, env_spec, rules, agent_files.get(run.name))
        n_line, meta = int(env.n_line), env_metadata(env, env_spec)
    threshold = DANGER if danger is None else float(danger)
    config = {
        "format": FORMAT, "env": env_spec.name, "env_path": meta.get("env_path"),
        "backend": env_spec.backend, "thermal_limit_scale": env_spec.thermal_limit_scale,
        "seed": int(seed), "scenarios": split, "episodes": len(plan), "max_steps": max_steps,
        "danger": danger, "reconnect": reconnect, "expert_budget": expert_budget,
        "expert_revert": expert_revert, "action_set": None if rules.action_set is None else json.loads(rules.action_set).get("scoring"),
        "runs": [asdict(r) for r in runs], "plan": plan,
        "grid2op_version": grid2op.__version__,
    }  # fmt: skip
    _check_config(out / "run_config.json", config)
    write_json(out / "run_config.json", config)

    tasks = []
    for run in runs:
        for p in plan:
            path = (
                out
                / EPISODES_DIR
                / run.name
                / f"ep{p['episode']:04d}_{p['scenario_name']}_seed{p['seed']}.npz"
            )
            tasks.append(EpisodeTask(run, env_spec, p["episode"], p["scenario"], p["scenario_name"], p["seed"],
                                     str(path), max_steps, rules))  # fmt: skip
    todo = [t for t in tasks if not Path(t.path).is_file()]
    shared = {"agents": agent_files}
    if executor is None:
        with Executor(min(workers or default_workers(len(todo)), max(1, len(todo)))) as ex:
            _play_all(todo, ex, progress, shared)
    else:
        _play_all(todo, executor, progress, shared)

    loaded = [load_episode(t.path) for t in tasks]
    steps = pd.concat([episode_steps(ep, n_line) for ep in loaded], ignore_index=True)
    daily = daily_summary(steps, threshold)
    ep_table = pd.DataFrame(
        [episode_summary(ep, threshold) for ep in loaded], columns=EPISODE_COLUMNS
    )
    summary = summarize_runs(ep_table)
    _write_csv(steps, out / "step_metrics.csv")
    _write_csv(daily, out / "daily_summary.csv")
    _write_csv(ep_table, out / "episode_summary.csv")
    l2rpn = None
    if l2rpn_score:
        workers = getattr(executor, "workers", None) or workers or 1
        l2rpn = score_l2rpn_2023(runs, env_spec, plan, rules, agent_files, out, max_steps,
                                 workers)  # fmt: skip
        summary = summary.merge(
            l2rpn.groupby("run", sort=False)["score"].mean().rename("l2rpn_2023_score"),
            left_on="run", right_index=True, how="left",
        )  # fmt: skip
        _write_csv(l2rpn, out / "l2rpn_score.csv")
    _write_csv(summary, out / "run_summary.csv")
    return EvaluationResult(out, steps, daily, ep_table, summary, l2rpn)


L2RPN_COLUMNS = ["run", "scenario_name", "seed", "max_steps", "survived_steps", "score",
                 "operational", "assistant", "renewables"]  # fmt: skip


def score_l2rpn_2023(runs, env_spec, plan, rules, agent_files, out, max_steps, workers=1):
    """Grid2op's L2RPN 2023 score of every run on the plan's scenarios (each scenario once,
    with the seed of its first episode), at the evaluation's settings; one row per (run,
    scenario) (`L2RPN_COLUMNS`). The env copy with grid2op's references stays in
    ``out/l2rpn_2023`` (a rerun with the same settings reuses it)."""
    from functools import partial

    from distributed_grid2op.l2rpn_score import l2rpn_2023_score

    first = {}
    for p in plan:
        first.setdefault(p["scenario"], p["seed"])
    agents = {r.name: partial(make_agent, r, rules=rules, files=agent_files.get(r.name))
              for r in runs}  # fmt: skip
    scores = l2rpn_2023_score(env_spec, agents, scenarios=list(first), seeds=list(first.values()),
                              max_step=max_steps, workers=workers,
                              work_dir=Path(out) / "l2rpn_2023")  # fmt: skip
    rows = [
        {"run": name, "scenario_name": sc, "seed": r["seeds"][i], "max_steps": r["max_steps"][i],
         "survived_steps": r["survived_steps"][i],
         **{c: r["episodes"][c][i] for c in ("score", "operational", "assistant", "renewables")}}
        for name, r in scores.items() for i, sc in enumerate(r["scenario_names"])
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=L2RPN_COLUMNS)


def _action_text(path, env) -> str | None:
    """The content of a reduced action file, checked against ``env`` (None: no file)."""
    if path is None:
        return None
    from distributed_grid2op.actions.file import load_action_file

    return json.dumps(load_action_file(path, env).to_dict(), sort_keys=True)


def _play_all(tasks: list[EpisodeTask], executor: Executor, progress: bool, shared=None) -> None:
    """Play the episodes on the executor; the driver writes each one as it completes."""
    from tqdm import tqdm

    with tqdm(
        total=len(tasks), desc="episodes", unit="ep", disable=not progress or not tasks
    ) as bar:
        for task, arrays in executor.imap(play_episode, tasks, shared):
            write_episode(task.path, arrays)
            bar.update()


def format_summary(runs: pd.DataFrame) -> str:
    """The run summary as a fixed-width text table (what the CLI prints)."""
    cols = {
        "run": "run", "episodes": "eps", "survived_fraction_mean": "survived",
        "survived_fraction_std": "+-", "completed_fraction": "completed",
        "safe_steps_mean": "safe_steps", "decisions_mean": "decisions",
        "simulations_per_decision": "sims/decision", "decision_ms_per_decision": "ms/decision",
        "score": "score",
        "score_vs_reconnect": "score_vs_rc", "l2rpn_2023_score": "l2rpn2023",
        "game_over_causes": "game_overs",
    }  # fmt: skip
    t = runs[[c for c in cols if c in runs]].rename(columns=cols)
    return t.to_string(index=False, float_format=lambda v: f"{v:.3f}", na_rep="-")


# ---------------------------------------------------------------------------- config / API


def baseline_list(text: str) -> list[str]:
    """``do-nothing,expert`` -> a list of known baseline names (``none``: no baseline)."""
    names = [n.strip() for n in str(text).split(",") if n.strip() and n.strip() != "none"]
    known = BASELINES + OPTIONAL_BASELINES
    unknown = [n for n in names if n not in known]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown baseline(s) {', '.join(unknown)}; choose from {', '.join(known)}"
        )
    return names


def top_k_list(text: str) -> list[int]:
    """``0,3`` -> ``[0, 3]`` (integers >= 0, duplicates dropped)."""
    try:
        values = [int(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        values = [-1]
    if not values or min(values) < 0:
        raise argparse.ArgumentTypeError(f"must be comma-separated integers >= 0, got {text!r}")
    return list(dict.fromkeys(values))


@dataclass
class EvaluateConfig(Config):
    """Every setting of ``python -m distributed_grid2op.evaluate`` (and of `run_evaluation`)."""

    agents: list = option([], "trained agent folders, or pretrained:NAME for a shipped agent "
                          "(pretrained:case14)", nargs="*", metavar="DIR")  # fmt: skip
    baselines: list = option(list(BASELINES), "comma-separated subset of "
                             f"{','.join(BASELINES + OPTIONAL_BASELINES)}, or 'none'",
                             parse=baseline_list)  # fmt: skip
    env: str = option("l2rpn_case14_sandbox", "bundled env name or env folder path")
    thermal_limit_scale: float = option(1.0, "multiply thermal limits (0.85 = the stressed "
                                        "case14 protocol)", parse=cli.positive_float,
                                        metavar="X")  # fmt: skip
    scenarios: str | None = option(None, "scenario split (default: test if the env folder has "
                                   "splits.json, else all)", choices=SPLITS)  # fmt: skip
    episodes: int | None = option(None, "episodes (default: one per scenario)",
                                  parse=cli.positive_int)  # fmt: skip
    max_steps: int | None = option(None, "cut episodes to this many steps", parse=cli.positive_int)
    out: str = option("runs/evaluation", "output folder", results=False)
    seed: int = option(0, "seed of the episode seeds", parse=int)
    danger: float | None = option(None, f"danger threshold of every run (default: {DANGER} for "
                                  "baselines, trained agents their own)",
                                  parse=cli.danger_threshold)  # fmt: skip
    top_k: list | None = option(None, "comma-separated K values: each agent also runs with a "
                                "simulation check of its K most probable actions (0 = the "
                                "policy alone; default: as saved)", parse=top_k_list)  # fmt: skip
    reconnect: str | None = option(None, "reconnection rule of every run: hold (safe, lines "
                                   "that tripped on overload left out), safe (simulated "
                                   "first), first or none (default: hold for baselines, "
                                   "trained agents their own)",
                                   choices=RECONNECT_RULES)  # fmt: skip
    action_set: str | None = option(None, "a reduced action set (actions.json) for the expert")
    expert_budget: int | None = option(None, "the expert's simulations per decision, nearest "
                                       "the overloads first (default: every candidate)",
                                       parse=cli.positive_int)  # fmt: skip
    expert_revert: float | None = option(EXPERT_REVERT, "below this max rho the expert brings "
                                         "split substations back to their reference topology "
                                         "when the simulation keeps max rho below it ('none': "
                                         "never)", parse=cli.optional_level)  # fmt: skip
    backend: str = option("lightsim", "power-flow backend", choices=("lightsim", "pandapower"))
    l2rpn_score: bool = option(False, "also grid2op's L2RPN 2023 score of every run "
                               "(l2rpn_idf_2023 and scenario folders generated from it; at "
                               "the --thermal-limit-scale given): l2rpn_score.csv and an "
                               "l2rpn_2023_score column in run_summary.csv")  # fmt: skip
    workers: int | None = option(None, "parallel workers", cli=False, results=False)
    ray: str | None = option(None, "Ray address", cli=False, results=False)
    progress: bool = option(True, "progress bar", results=False)

    def validate(self):
        for key in ("baselines", "top_k"):
            value = getattr(self, key)
            if isinstance(value, str):
                setattr(self, key, (baseline_list if key == "baselines" else top_k_list)(value))
        self.agents = [str(a) for a in self.agents]
        return self

    def n_tasks(self) -> int:
        """Episodes to play in total (an upper bound when ``episodes`` is not set)."""
        runs = len(self.baselines) + len(self.agents) * len(self.top_k or [None])
        return max(1, runs) * (self.episodes or 1_000_000)


def run_evaluation(config: EvaluateConfig, *, executor: Executor | None = None) -> EvaluationResult:
    """Evaluate what ``config`` describes (the Python face of the ``evaluate`` command)."""
    runs = run_specs(config.baselines, config.agents, config.top_k or (None,))
    spec = EnvSpec(config.env, backend=config.backend,
                   thermal_limit_scale=config.thermal_limit_scale)  # fmt: skip
    own = executor is None
    if own:
        from distributed_grid2op.execution import executor_for

        executor = executor_for(config.workers, config.ray, config.n_tasks())
    try:
        return evaluate(runs, spec, config.out, scenarios=config.scenarios,
                        episodes=config.episodes, seed=config.seed, max_steps=config.max_steps,
                        danger=config.danger, executor=executor, progress=config.progress,
                        reconnect=config.reconnect, action_set=config.action_set,
                        expert_budget=config.expert_budget,
                        expert_revert=config.expert_revert,
                        l2rpn_score=config.l2rpn_score)  # fmt: skip
    finally:
        if own:
            executor.close()
