"""Figures from evaluation CSVs: ``python -m distributed_grid2op.plots KIND CSV [...]``.

Kinds (CSV is ``step_metrics.csv`` of `distributed_grid2op.evaluation` unless noted):

- ``survival``: survived fraction per episode (scenario/seed), one bar colour per run.
- ``rho``: max-rho envelope over time (median line, min-max band over episodes) per run,
  with the danger (0.9) and overflow (1.0) lines.
- ``actions``: decisions per hour of the episode, stacked by acting agent.
- ``learning``: CSV is a training ``train_log.csv``; survived fraction and total reward per
  episode, smoothed, mean and min-max spread over runs/seeds.
- ``grid``: grid2op's matplotlib plotter at one step (lines coloured by loading),
  substations coloured by cluster of a ``factorization.json``.
- ``replay``: a GIF of one episode (lines coloured by loading, disconnected lines dashed,
  the substation an agent acted on circled in red), from the episode's ``.npz``.
- ``units``: continuous control over time in one episode (``--episode``), one line per run:
  storage state of charge (MWh, each unit), curtailed energy and redispatched energy per
  step (MWh), for the chosen days (``--day 0,2``: those days of the episode; ``--days D``:
  the first D days).

Every figure goes to a file (Agg backend); nothing needs a display.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from distributed_grid2op.cli import ArgumentParser, positive_float, positive_int, run
from distributed_grid2op.errors import UserError

KINDS = ("survival", "rho", "actions", "learning", "grid", "replay", "units")
#: step_metrics columns the ``units`` figure needs (evaluations since continuous control)
UNIT_REQUIRED = ("day", "cost_curtailment", "redispatched_mwh")
DANGER, OVERFLOW = 0.9, 1.0
RHO_CMAP, RHO_MAX = "RdYlGn_r", 1.2  # line colours: green (idle) .. red (rho >= 1.2)
PROG = "python -m distributed_grid2op.plots"


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def read_csv(path: str | Path, required: Sequence[str]) -> pd.DataFrame:
    """Read a CSV and check its columns; `UserError` naming what is missing."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no such CSV file: {path}")
    try:
        df = pd.read_csv(path, keep_default_na=False, na_values=[""])
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not a readable CSV ({exc})") from exc
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise UserError(f"{path}: missing column(s) {', '.join(missing)}")
    return df


def _select_runs(df: pd.DataFrame, runs: str | None) -> pd.DataFrame:
    if not runs:
        return df
    wanted = [r.strip() for r in runs.split(",") if r.strip()]
    unknown = [r for r in wanted if r not in set(df["run"])]
    if unknown:
        raise UserError(
            f"unknown run(s) {', '.join(unknown)}; the CSV has {', '.join(pd.unique(df['run']))}"
        )
    return df[df["run"].isin(wanted)]


def _days(df: pd.DataFrame, days: float | None) -> pd.DataFrame:
    return df if days is None else df[df["step"] <= _steps_per_day(df) * days]


def _steps_per_day(df: pd.DataFrame) -> float:
    """Steps per day from the ``datetime`` column: steps 1 and 2 of one episode of one run
    (episodes start at different dates; 5-minute steps if it cannot tell)."""
    first = df[df["step"] <= 2]
    keys = [k for k in ("run", "episode") if k in first.columns]
    groups = first.groupby(keys, sort=False) if keys else [((), first)]
    for _, g in groups:
        if len(g) < 2:
            continue
        t = pd.to_datetime(g.sort_values("step")["datetime"].iloc[:2], errors="coerce")
        minutes = (t.iloc[1] - t.iloc[0]).total_seconds() / 60 if t.notna().all() else 0
        if minutes > 0:
            return 1440.0 / minutes
    return 288.0


def _save(fig, output: str | Path) -> Path:
    from distributed_grid2op.io import atomic_path

    output = Path(output)
    with atomic_path(output, suffix=output.suffix or ".png") as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format=(output.suffix[1:] or "png"))
    _plt().close(fig)
    return output


STEP_REQUIRED = (
    "run",
    "episode",
    "scenario_name",
    "seed",
    "max_steps",
    "step",
    "max_rho",
    "game_over",
)


def plot_survival(steps: pd.DataFrame, output, *, runs: str | None = None) -> Path:
    """Bars: survived fraction of every episode, grouped by episode, one colour per run."""
    plt = _plt()
    df = _select_runs(steps, runs)
    g = df.groupby(["run", "episode"], sort=False).agg(
        n=("step", "max"), over=("game_over", "max"), max_steps=("max_steps", "first"),
        name=("scenario_name", "first"), seed=("seed", "first"),
    )  # fmt: skip
    g["survived"] = (g["n"] - g["over"]) / g["max_steps"]
    table = g["survived"].unstack("run").reindex(columns=pd.unique(df["run"]))
    labels = [f"{e}: {g.xs(e, level='episode')['name'].iloc[0]}" for e in table.index]
    fig, ax = plt.subplots(figsize=(max(5, 0.9 * len(table) * max(1, table.shape[1]) / 2 + 3), 4))
    width = 0.8 / table.shape[1]
    x = np.arange(len(table))
    for i, r in enumerate(table.columns):
        ax.bar(x + (i - (table.shape[1] - 1) / 2) * width, table[r].to_numpy(), width, label=r)
    ax.set_xticks(x, labels, rotation=30, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("survived fraction of steps")
    ax.set_xlabel("episode: scenario")
    ax.legend(fontsize=8)
    ax.set_title("Survival per episode")
    return _save(fig, output)


def plot_rho(
    steps: pd.DataFrame, output, *, runs: str | None = None, days: float | None = None
) -> Path:
    """Max rho over time: median line and min-max band over episodes, one colour per run."""
    plt = _plt()
    df = _days(_select_runs(steps, runs), days)
    per_day = _steps_per_day(df)
    fig, ax = plt.subplots(figsize=(9, 4))
    for r, d in df.groupby("run", sort=False):
        wide = d.pivot_table(index="step", columns="episode", values="max_rho", aggfunc="first")
        hours = wide.index.to_numpy() * 24.0 / per_day
        vals = wide.to_numpy(dtype=float)
        with np.errstate(all="ignore"):
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                lo, med, hi = np.nanmin(vals, 1), np.nanmedian(vals, 1), np.nanmax(vals, 1)
        (line,) = ax.plot(hours, med, lw=1, label=f"{r} (median)")
        ax.fill_between(hours, lo, hi, color=line.get_color(), alpha=0.2, lw=0)
    ax.axhline(DANGER, color="orange", ls="--", lw=1, label=f"danger {DANGER}")
    ax.axhline(OVERFLOW, color="red", ls="--", lw=1, label=f"overflow {OVERFLOW}")
    ax.set_xlabel("hours since episode start")
    ax.set_ylabel("max rho (band: min-max over episodes)")
    ax.legend(fontsize=8, loc="upper right")
    ax.set_title("Max line loading")
    return _save(fig, output)


def plot_actions(
    steps: pd.DataFrame, output, *, runs: str | None = None, days: float | None = None
) -> Path:
    """Decisions per hour since the episode start, stacked by acting agent, one panel per run."""
    plt = _plt()
    df = _days(_select_runs(steps, runs), days)
    if "agent" not in df.columns:
        raise UserError("the CSV has no 'agent' column (not a step_metrics.csv?)")
    per_hour = _steps_per_day(df) / 24.0
    df = df.assign(
        agent=df["agent"].fillna("").astype(str), hour=((df["step"] - 1) // per_hour).astype(int)
    )
    run_names = list(pd.unique(df["run"]))
    fig, axes = plt.subplots(
        len(run_names), 1, figsize=(9, 2.2 * len(run_names) + 0.8), sharex=True, squeeze=False
    )
    hours = np.arange(int(df["hour"].max()) + 1 if len(df) else 1)
    for ax, r in zip(axes[:, 0], run_names):
        d = df[(df["run"] == r) & (df["agent"] != "")]
        counts = (
            d.groupby(["hour", "agent"])
            .size()
            .unstack("agent", fill_value=0)
            .reindex(hours, fill_value=0)
        )
        bottom = np.zeros(len(hours))
        for a in sorted(counts.columns):
            ax.bar(hours, counts[a].to_numpy(), 1.0, bottom=bottom, label=a)
            bottom += counts[a].to_numpy()
        ax.set_ylabel("decisions / h")
        ax.set_title(f"{r}: {len(d)} decisions", fontsize=9)
        if len(counts.columns):
            ax.legend(fontsize=7, loc="upper right")
    axes[-1, 0].set_xlabel("hours since episode start (summed over episodes)")
    return _save(fig, output)


def plot_units(steps: pd.DataFrame, output, *, runs: str | None = None, episode: int | None = None,
               days: float | None = None, day: list[int] | None = None) -> Path:  # fmt: skip
    """Storage state of charge, curtailed and redispatched energy per step over the hours of
    one episode (default: the first), one colour per run; ``day``: only those days (the
    ``day`` column), else the first ``days`` days (default: all)."""
    missing = [c for c in UNIT_REQUIRED if c not in steps.columns]
    if missing:
        raise UserError(f"the CSV has no {', '.join(missing)} column(s): an evaluation made "
                        "before continuous control? Evaluate again")  # fmt: skip
    plt = _plt()
    df = _select_runs(steps, runs)
    episode = int(df["episode"].min()) if episode is None else int(episode)
    df = df[df["episode"] == episode]
    if df.empty:
        raise UserError(f"no episode {episode} in the CSV")
    if day:
        df = df[df["day"].isin(day)]
        if df.empty:
            raise UserError(f"episode {episode} has no day {', '.join(map(str, day))}")
    else:
        df = _days(df, days)
    per_hour = _steps_per_day(steps) / 24.0
    charge = sorted((c for c in df.columns if c.startswith("storage_charge_mwh_")),
                    key=lambda c: int(c.rsplit("_", 1)[1]))  # fmt: skip
    fig, axes = plt.subplots(3, 1, figsize=(9, 7), sharex=True)
    for r, d in df.groupby("run", sort=False):
        d = d.sort_values("step")
        hours = d["step"].to_numpy() / per_hour
        (line,) = axes[1].plot(hours, d["cost_curtailment"], lw=1, label=r)
        axes[2].plot(hours, d["redispatched_mwh"], lw=1, color=line.get_color(), label=r)
        for k, c in enumerate(charge):
            axes[0].plot(hours, d[c], lw=1, color=line.get_color(), ls=("-", "--", ":", "-.")[k % 4],
                         label=f"{r}: unit {c.rsplit('_', 1)[1]}")  # fmt: skip
    if not charge:
        axes[0].text(0.5, 0.5, "no storage unit", ha="center", va="center",
                     transform=axes[0].transAxes)  # fmt: skip
    axes[0].set_ylabel("storage charge (MWh)")
    axes[1].set_ylabel("curtailed (MWh / step)")
    axes[2].set_ylabel("redispatched (MWh / step)")
    axes[2].set_xlabel("hours since episode start")
    for ax in axes:
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="upper right")
    axes[0].set_title(f"Continuous control, episode {episode}")
    return _save(fig, output)


def _is_group(log: pd.DataFrame, col: str) -> bool:
    """A column that splits the log into several curves (not a per-episode seed)."""
    if col not in log.columns or log[col].nunique() < 2:
        return False
    return bool(log.groupby(col).size().min() > 1)


def plot_learning(
    log: pd.DataFrame,
    output,
    *,
    window: int | None = None,
    hue: str | None = None,
    spread: str | None = None,
) -> Path:
    """Training curves: survived fraction, safe fraction (steps before the first danger) and
    total reward per episode, smoothed by a rolling mean.

    One line per value of ``hue`` (e.g. the variant); within it, the line is the mean over the
    curves of each value of ``spread`` (e.g. the training seed) and the band their min-max.
    Without them: ``spread`` is the ``run`` column if it splits the log into several
    multi-episode curves, else ``seed`` if it does (a per-episode seed does not).
    """
    plt = _plt()
    if spread is None and hue is None:
        spread = next((c for c in ("run", "seed") if _is_group(log, c)), None)
    denom = log["max_steps"].where(log["max_steps"] > 0)
    log = log.assign(survived_fraction=log["survived_steps"] / denom)
    if "safe_steps" in log.columns:
        log = log.assign(safe_fraction=log["safe_steps"] / denom)
    lines = [(None, log)] if hue is None else list(log.groupby(hue, sort=False))
    keys = [k for k in (hue, spread) if k]
    longest = int(log.groupby(keys).size().max()) if keys else len(log)
    window = window or max(1, longest // 20)
    panels = [(c, c.replace("_", " ")) for c in ("survived_fraction", "safe_fraction", "total_reward")
              if c in log.columns]  # fmt: skip
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), squeeze=False)
    for ax, (col, label) in zip(axes[0], panels):
        for name, d in lines:
            parts = [d] if spread is None else [g for _, g in d.groupby(spread)]
            wide = pd.concat(
                [
                    pd.Series(g[col].to_numpy(float)).rolling(window, min_periods=1).mean()
                    for g in parts
                ],
                axis=1,
            )
            x = wide.index.to_numpy() + 1
            tag = "" if name is None else f"{name}: "
            (line,) = ax.plot(x, wide.mean(axis=1), lw=1.5,
                              label=tag + ("mean" if spread else "smoothed"))  # fmt: skip
            if spread:
                ax.fill_between(x, wide.min(axis=1), wide.max(axis=1), color=line.get_color(), alpha=0.2,
                                lw=0, label=f"{tag}min-max over {wide.shape[1]} {spread}s")  # fmt: skip
            elif hue is None:
                ax.plot(
                    x,
                    d[col].to_numpy(float),
                    ".",
                    ms=2,
                    alpha=0.3,
                    color=line.get_color(),
                    label="raw",
                )
        ax.set_xlabel("training episode")
        ax.set_ylabel(label)
        ax.legend(fontsize=7)
    fig.suptitle(f"Learning curves (rolling mean over {window} episodes)")
    return _save(fig, output)


# ---------------------------------------------------------------------------- grid pictures


def _run_config(csv: Path) -> dict:
    path = csv.parent / "run_config.json"
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: malformed ({exc.msg})") from exc


def _env_for(csv: Path, env_name: str | None, scale: float | None):
    from distributed_grid2op.envs import make_env, quiet_grid2op

    cfg = _run_config(csv)
    name = env_name or cfg.get("env")
    if not name:
        raise UserError(f"no run_config.json next to {csv}: pass --env")
    scale = scale if scale is not None else float(cfg.get("thermal_limit_scale", 1.0))
    with quiet_grid2op():
        return make_env(name, thermal_limit_scale=scale)


def _layout(env) -> tuple[np.ndarray, object]:
    """Substation positions (n_sub, 2) from grid2op's plotter (computed if the env has none)."""
    from grid2op.PlotGrid import PlotMatplot
    from matplotlib.colors import Normalize

    from distributed_grid2op.envs import quiet_grid2op

    with quiet_grid2op():
        plotter = PlotMatplot(
            env.observation_space,
            width=1000,
            height=700,
            line_color=RHO_CMAP,
            line_color_norm=Normalize(0.0, RHO_MAX, clip=True),
            line_width=3.0,
        )
    pos = np.asarray([plotter._grid_layout[n] for n in env.name_sub], dtype=float)
    return pos, plotter


def _cluster_colors(n: int):
    plt = _plt()
    cmap = plt.get_cmap("tab10" if n <= 10 else "tab20")
    return [cmap(i % cmap.N) for i in range(n)]


def plot_grid(
    steps: pd.DataFrame,
    csv: Path,
    output,
    *,
    runs: str | None = None,
    episode: int | None = None,
    step: int | None = None,
    factorization: str | None = None,
    env_name: str | None = None,
    scale: float | None = None,
) -> Path:
    """The grid at one step (default: the step with the highest max rho of the episode).

    Lines coloured by rho (grid2op's PlotMatplot); substations ringed by cluster colour.
    """
    from matplotlib.patches import Circle, Patch

    from distributed_grid2op.envs import quiet_grid2op
    from distributed_grid2op.factorization_file import load_factorization

    df = _select_runs(steps, runs.split(",")[0] if runs else None)
    r = df["run"].iloc[0]
    d = df[df["run"] == r]
    ep = int(d["episode"].iloc[0]) if episode is None else int(episode)
    d = d[(d["episode"] == ep) & (d["game_over"] == 0)]
    if d.empty:
        raise UserError(f"run {r} has no episode {ep} with a surviving step")
    row = d.loc[d["max_rho"].idxmax()] if step is None else d[d["step"] == step]
    if isinstance(row, pd.DataFrame):
        if row.empty:
            raise UserError(f"run {r} episode {ep} has no step {step}")
        row = row.iloc[0]
    env = _env_for(csv, env_name, scale)
    fact = load_factorization(factorization, env=env)
    rho_cols = [f"rho_{i}" for i in range(env.n_line)]
    if any(c not in d.columns for c in rho_cols):
        raise UserError(
            f"{csv} has no rho column for each of the {env.n_line} lines of {env_name or 'the env'}"
        )
    pos, plotter = _layout(env)
    with quiet_grid2op():
        obs = env.reset(
            seed=0, options={"time serie id": int(row["scenario"])} if "scenario" in row else None
        )
    obs.rho = row[rho_cols].to_numpy(dtype=np.float32)
    try:  # line status and buses of that step, when the episode file is there
        from distributed_grid2op.evaluation import load_episode

        ep_data = load_episode(_episode_file(csv, r, ep))
        k = int(row["step"]) - 1
        obs.line_status = np.asarray(ep_data["line_status"][k], dtype=bool)
        obs.topo_vect = np.asarray(ep_data["topo"][k], dtype=obs.topo_vect.dtype)
    except UserError:
        pass
    with quiet_grid2op():
        fig = plotter.plot_obs(obs, line_info="rho", load_info=None, gen_info=None)
    ax = fig.axes[0]
    colors = _cluster_colors(len(fact.clusters))
    radius = plotter.settings.sub.radius if hasattr(plotter, "settings") else 15
    for c, cluster in enumerate(fact.clusters):
        for s in cluster.substations:
            ax.add_patch(
                Circle(
                    pos[s],
                    radius * 1.35,
                    facecolor=colors[c],
                    alpha=0.55,
                    edgecolor=colors[c],
                    lw=2,
                    zorder=0,
                )
            )
    handles = [
        Patch(color=colors[c], alpha=0.6, label=f"cluster {c}") for c in range(len(fact.clusters))
    ]
    ax.legend(handles=handles, loc="lower left", fontsize=8)
    ax.set_title(f"{r}, episode {ep}, step {int(row['step'])}: max rho {float(row['max_rho']):.2f}")
    fig.set_size_inches(10, 7)
    env.close()
    return _save(fig, output)


def _episode_file(csv: Path, run_name: str, episode: int) -> Path:
    folder = csv.parent / "episodes" / run_name
    files = sorted(folder.glob(f"ep{episode:04d}_*.npz"))
    if not files:
        raise UserError(f"no replay data for run {run_name} episode {episode} in {folder}")
    return files[0]


def plot_replay(
    steps: pd.DataFrame,
    csv: Path,
    output,
    *,
    runs: str | None = None,
    episode: int | None = None,
    days: float | None = None,
    max_frames: int = 150,
    fps: int = 8,
    env_name: str | None = None,
    scale: float | None = None,
) -> Path:
    """GIF of one episode from its ``.npz``: lines by rho, acting substation circled in red."""
    plt = _plt()
    from matplotlib import animation
    from matplotlib.collections import LineCollection

    from distributed_grid2op.evaluation import load_episode

    df = _select_runs(steps, runs.split(",")[0] if runs else None)
    r = df["run"].iloc[0]
    ep_id = int(df.loc[df["run"] == r, "episode"].iloc[0]) if episode is None else int(episode)
    ep = load_episode(_episode_file(csv, r, ep_id))
    env = _env_for(csv, env_name, scale)
    pos, _ = _layout(env)
    orig, ext = np.asarray(env.line_or_to_subid), np.asarray(env.line_ex_to_subid)
    env.close()
    rho, status = np.asarray(ep["rho"], float), np.asarray(ep["line_status"], bool)
    n = rho.shape[0]
    if days is not None:
        n = min(n, max(1, int(round(days * 1440 / max(1, _minutes_per_step(ep))))))
    frames = np.unique(np.linspace(0, n - 1, min(n, max_frames)).round().astype(int))
    # an action shows on every frame up to the next one drawn, so none is skipped silently
    sub = np.asarray(ep["substation"], int)
    agents = np.asarray(ep["agent"], str)
    fig, ax = plt.subplots(figsize=(7, 5.5))
    cmap, norm = plt.get_cmap(RHO_CMAP), plt.Normalize(0, RHO_MAX)
    segs = np.stack([pos[orig], pos[ext]], axis=1)
    lines = LineCollection(segs, cmap=cmap, norm=norm, linewidths=3)
    ax.add_collection(lines)
    ax.scatter(pos[:, 0], pos[:, 1], s=120, c="lightsteelblue", edgecolors="k", zorder=3)
    ring = ax.scatter([], [], s=500, facecolors="none", edgecolors="red", linewidths=2.5, zorder=4)
    for i, (x, y) in enumerate(pos):
        ax.text(x, y, str(i), ha="center", va="center", fontsize=7, zorder=5)
    fig.colorbar(lines, ax=ax, label="rho")
    ax.set_aspect("equal")
    ax.autoscale()
    ax.margins(0.1)
    ax.axis("off")
    title = ax.set_title("")
    prev = [0]

    def draw(k):
        lo, hi = prev[0], k + 1
        prev[0] = hi
        acted = [(int(s), a) for s, a in zip(sub[lo:hi], agents[lo:hi]) if a]
        lines.set_array(np.nan_to_num(rho[k], nan=0.0))
        lines.set_linestyles(["solid" if s else "dashed" for s in status[k]])
        targets = [s for s, _ in acted if s >= 0]
        ring.set_offsets(pos[targets] if targets else np.empty((0, 2)))
        who = ", ".join(sorted({a for _, a in acted})) or "-"
        mx = np.nanmax(rho[k]) if np.isfinite(rho[k]).any() else float("nan")
        title.set_text(
            f"{r} ep {ep_id} step {k + 1} {ep['datetime'][k]}  max rho {mx:.2f}  acted: {who}"
        )
        return lines, ring, title

    anim = animation.FuncAnimation(fig, draw, frames=list(frames), blit=False)
    from distributed_grid2op.io import atomic_path

    output = Path(output)
    with atomic_path(output, suffix=".gif") as tmp:
        anim.save(str(tmp), writer=animation.PillowWriter(fps=fps))
    plt.close(fig)
    return output


def _minutes_per_step(ep: dict) -> int:
    m = np.asarray(ep["minutes"], int)
    return int(m[1] - m[0]) if m.size > 1 and m[1] > m[0] else 5


# ---------------------------------------------------------------------------- CLI


def build_parser() -> ArgumentParser:
    """The CLI's options."""
    p = ArgumentParser(prog=PROG, description="Figures from evaluation (or training) CSVs.")
    p.add_argument("kind", choices=KINDS)
    p.add_argument("csv", help="step_metrics.csv (train_log.csv for 'learning')")
    p.add_argument(
        "--run", default=None, help="run name(s), comma-separated (default: all / the first)"
    )
    p.add_argument(
        "--days", type=positive_float, default=None, help="only the first D days of each episode"
    )
    p.add_argument(
        "--output",
        default=None,
        help="output file (default: KIND.png / replay.gif next to the CSV)",
    )
    p.add_argument(
        "--episode", type=int, default=None, help="grid/replay: episode number (default: the first)"
    )
    p.add_argument(
        "--step", type=positive_int, default=None, help="grid: step (default: highest max rho)"
    )
    p.add_argument(
        "--factorization", default=None, help="grid: factorization.json (default: thesis case14)"
    )
    p.add_argument("--env", default=None, help="grid/replay: env (default: from run_config.json)")
    p.add_argument(
        "--thermal-limit-scale",
        type=positive_float,
        default=None,
        metavar="X",
        help="grid/replay: override the scale",
    )
    p.add_argument(
        "--window", type=positive_int, default=None, help="learning: smoothing window (episodes)"
    )
    p.add_argument("--max-frames", type=positive_int, default=150, help="replay: frames in the GIF")
    p.add_argument("--day", type=_day_list, default=None,
                   help="units: days of the episode to show, comma-separated (0 = the first)")  # fmt: skip
    return p


def _day_list(text: str) -> list[int]:
    """``0,2`` -> ``[0, 2]`` (integers >= 0)."""
    import argparse

    try:
        values = [int(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 0:
        raise argparse.ArgumentTypeError(f"must be comma-separated integers >= 0, got {text!r}")
    return values


def main(argv: Sequence[str] | None = None) -> int:
    """Draw one figure and print its path."""
    args = build_parser().parse_args(argv)
    csv = Path(args.csv)
    output = args.output or str(
        csv.parent / (f"{args.kind}.gif" if args.kind == "replay" else f"{args.kind}.png")
    )
    if args.kind == "learning":
        log = read_csv(csv, ("episode", "survived_steps", "max_steps", "total_reward"))
        path = plot_learning(log, output, window=args.window)
    else:
        steps = read_csv(csv, STEP_REQUIRED)
        if steps.empty:
            raise UserError(f"{csv} has no rows")
        if args.kind == "survival":
            path = plot_survival(steps, output, runs=args.run)
        elif args.kind == "rho":
            path = plot_rho(steps, output, runs=args.run, days=args.days)
        elif args.kind == "actions":
            path = plot_actions(steps, output, runs=args.run, days=args.days)
        elif args.kind == "units":
            path = plot_units(steps, output, runs=args.run, episode=args.episode, days=args.days,
                              day=args.day)  # fmt: skip
        elif args.kind == "grid":
            path = plot_grid(steps, csv, output, runs=args.run, episode=args.episode, step=args.step,
                             factorization=args.factorization, env_name=args.env,
                             scale=args.thermal_limit_scale)  # fmt: skip
        else:
            path = plot_replay(steps, csv, output, runs=args.run, episode=args.episode, days=args.days,
                               max_frames=args.max_frames, env_name=args.env,
                               scale=args.thermal_limit_scale)  # fmt: skip
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main))
