"""Compare generated scenarios with their source: statistics, do-nothing replay, report, figures.

Writes ``<env>/validation/report.md``, ``validation.json`` and PNG figures. The do-nothing
replay (grid2op + lightsim2grid, ~0.7 ms per step on case14) runs on an evenly spaced
subset of ``n_replay`` generated scenarios (the report says which) and on every source chronic.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from distributed_grid2op.envs import EnvSpec, make_env, quiet_grid2op
from distributed_grid2op.execution import Executor, WorkerContext
from distributed_grid2op.io import write_json, write_text
from distributed_grid2op.scenarios.data import SourceData
from distributed_grid2op.scenarios.writer import FORMATS


def read_scenario(
    folder: Path, load_names: list[str], gen_names: list[str]
) -> tuple[dict, pd.DatetimeIndex]:
    """Arrays ``load_p, load_q, prod_p`` (grid2op column order) and timestamps of a written scenario."""
    out = {}
    for kind in ("load_p", "load_q", "prod_p"):
        path = next(
            folder / f"{kind}{ext}"
            for ext in FORMATS.values()
            if (folder / f"{kind}{ext}").is_file()
        )
        names = load_names if kind.startswith("load") else gen_names
        out[kind] = pd.read_csv(path, sep=";")[names].to_numpy(dtype=float)
    start = pd.Timestamp((folder / "start_datetime.info").read_text().strip())
    hh, mm = (folder / "time_interval.info").read_text().strip().split(":")[:2]
    times = pd.date_range(
        start, periods=len(out["load_p"]), freq=pd.Timedelta(hours=int(hh), minutes=int(mm))
    )
    return out, times


def _hourly(
    series: list[np.ndarray], times: list[pd.DatetimeIndex]
) -> tuple[np.ndarray, np.ndarray]:
    x = np.vstack(series)
    hour = np.concatenate([np.asarray(t.hour) for t in times])
    mean = np.full((24, x.shape[1]), np.nan)
    std = np.full((24, x.shape[1]), np.nan)
    for h in range(24):
        if np.any(hour == h):
            mean[h], std[h] = x[hour == h].mean(0), x[hour == h].std(0)
    return mean, std


def _acf1(
    series: list[np.ndarray], times: list[pd.DatetimeIndex], hourly_mean: np.ndarray
) -> np.ndarray:
    """Lag-1 autocorrelation of the deviation from the hour-of-day mean, per column."""
    num = den_a = den_b = 0.0
    for x, t in zip(series, times):
        d = x - np.nan_to_num(hourly_mean[np.asarray(t.hour)])
        a, b = d[1:] - d[1:].mean(0), d[:-1] - d[:-1].mean(0)
        num, den_a, den_b = num + (a * b).sum(0), den_a + (a * a).sum(0), den_b + (b * b).sum(0)
    den = np.sqrt(den_a * den_b)
    return np.where(den > 1e-12, num / np.where(den > 1e-12, den, 1.0), np.nan)


def _corr(series: list[np.ndarray]) -> np.ndarray:
    x = np.vstack(series)
    keep = x.std(0) > 1e-9
    out = np.full((x.shape[1], x.shape[1]), np.nan)
    out[np.ix_(keep, keep)] = np.corrcoef(x[:, keep], rowvar=False)
    return out


def _net_load_steps(data: list[dict], renewable: np.ndarray) -> np.ndarray:
    """|change| from one step to the next of the net load (sum of loads minus sum of
    renewables, MW) over every chronic: what the dispatchable generators must follow, within
    their ramps, once an agent redispatches, curtails or uses storage."""
    steps = [np.abs(np.diff(d["load_p"].sum(1) - d["prod_p"][:, renewable].sum(1))) for d in data]
    return np.concatenate(steps) if steps else np.zeros(1)


def compare_statistics(
    src: list[dict], src_times, gen: list[dict], gen_times, renewable: np.ndarray
) -> dict:
    """Source-vs-generated statistics of loads (load_p) and renewables (prod_p of non-dispatchable)."""

    def cols(data):
        return [np.hstack([d["load_p"], d["prod_p"][:, renewable]]) for d in data]

    s, g = cols(src), cols(gen)
    nl = src[0]["load_p"].shape[1]
    ms, ss = _hourly(s, src_times)
    mg, sg = _hourly(g, gen_times)
    level = np.abs(np.vstack(s).mean(0))
    rel = np.abs(mg - ms)[:, :nl] / np.maximum(level[:nl], 1e-9)
    ratio = (sg / np.where(ss > 1e-9, ss, np.nan))[:, :nl]
    acf_s, acf_g = _acf1(s, src_times, ms), _acf1(g, gen_times, mg)
    cs, cg = _corr(s), _corr(g)
    off = ~np.eye(len(cs), dtype=bool) & np.isfinite(cs) & np.isfinite(cg)
    step_s, step_g = _net_load_steps(src, renewable), _net_load_steps(gen, renewable)
    return {
        "hourly_mean_rel_error_loads": float(np.nanmean(rel)),
        "hourly_mean_rel_error_loads_max": float(np.nanmax(rel)),
        "hourly_std_ratio_loads_median": float(np.nanmedian(ratio)),
        "overall_mean_rel_error": float(
            np.mean(np.abs(np.vstack(g).mean(0) - np.vstack(s).mean(0)) / np.maximum(level, 1e-9))
        ),
        "acf1_source_mean": float(np.nanmean(acf_s)),
        "acf1_generated_mean": float(np.nanmean(acf_g)),
        "acf1_abs_error_mean": float(np.nanmean(np.abs(acf_s - acf_g))),
        "corr_abs_error_mean": float(np.mean(np.abs(cs - cg)[off])) if off.any() else 0.0,
        "corr_abs_error_max": float(np.max(np.abs(cs - cg)[off])) if off.any() else 0.0,
        "net_load_step_p50_source": float(np.percentile(step_s, 50)),
        "net_load_step_p50_generated": float(np.percentile(step_g, 50)),
        "net_load_step_p95_source": float(np.percentile(step_s, 95)),
        "net_load_step_p95_generated": float(np.percentile(step_g, 95)),
        "_arrays": {
            "ms": ms,
            "ss": ss,
            "mg": mg,
            "sg": sg,
            "acf_s": acf_s,
            "acf_g": acf_g,
            "cs": cs,
            "cg": cg,
        },
    }


# ------------------------------------------------------------------------------ replay
def _replay_job(ctx: WorkerContext, idx: int, shared: tuple) -> tuple[int, int]:
    """Task function: (survived steps, episode length) of do-nothing on chronic ``idx``."""
    spec, max_steps = shared
    env = ctx.env(spec)
    with quiet_grid2op():
        env.reset(options={"time serie id": int(idx)})
        total = (
            int(env.max_episode_duration())
            if max_steps is None
            else min(int(env.max_episode_duration()), max_steps)
        )
        survived = 0
        noop = env.action_space()
        while survived < total:
            _, _, done, info = env.step(noop)
            if done and info.get("exception"):
                break
            survived += 1
            if done:
                break
    return survived, total


def replay_do_nothing(
    target,
    indices,
    scale: float = 1.0,
    workers: int = 1,
    max_steps=None,
    progress: bool = False,
    executor: Executor | None = None,
) -> list[tuple[int, int]]:
    """Do-nothing replay of chronics ``indices`` of env ``target`` at a thermal limit scale:
    ``(steps survived, episode length)`` per chronic, in the order of ``indices``; one task per
    chronic on ``executor`` (or on one made with ``workers`` workers for this call)."""
    from tqdm.auto import tqdm

    indices = [int(i) for i in indices]
    spec = EnvSpec(os.fspath(target), thermal_limit_scale=float(scale))
    desc = f"do-nothing x{scale} {Path(os.fspath(target)).name}"
    results: dict[int, tuple[int, int]] = {}
    own = executor is None
    if own:
        executor = Executor(workers)
    try:
        with tqdm(total=len(indices), disable=not progress, desc=desc, unit="episode") as bar:
            for (pos, _), res in executor.imap(_replay_at, list(enumerate(indices)),
                                               (spec, max_steps)):  # fmt: skip
                results[pos] = tuple(int(v) for v in res)
                bar.update(1)
    finally:
        if own:
            executor.close()
    return [results[pos] for pos in range(len(indices))]


def _replay_at(ctx: WorkerContext, item: tuple[int, int], shared: tuple) -> tuple[int, int]:
    return _replay_job(ctx, item[1], shared)


def converged_steps_mask(ts) -> np.ndarray:
    """Which steps of the last lightsim2grid TimeSerie batch converged (older lightsim2grid
    versions have no ``converged_mask``: a diverged step has all-zero voltages there)."""
    try:
        return np.asarray(ts.computer.converged_mask(), dtype=bool)
    except AttributeError:
        return np.abs(np.asarray(ts.computer.get_voltages())).sum(1) > 0


def overload_fractions(target, chronics: list[dict], scale: float = 1.0) -> list[float]:
    """Per chronic, the fraction of steps where some line exceeds its (scaled) thermal limit,
    from AC power flows of the grid as is (lightsim2grid TimeSerie: no disconnection, no
    cascade; a step that diverges counts as overloaded). Cheap, so it runs on every compared
    chronic; unlike the do-nothing replay it does not depend on cascades after a first trip."""
    import warnings

    from lightsim2grid import TimeSerie

    with quiet_grid2op():
        env = make_env(target, thermal_limit_scale=scale)
        env.reset()
        ts = TimeSerie(env)
        limits = np.asarray(env.get_thermal_limit(), dtype=float)
        env.close()
    out = []
    for c in chronics:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ts.clear()  # the batch size is fixed by the first call otherwise
            ts.compute_V_from_inj(c["prod_p"], c["load_p"], c["load_q"], ignore_errors=True)
        mask = converged_steps_mask(ts)
        over = np.ones(len(mask), dtype=bool)
        if mask.all():
            over = (ts.compute_A() / limits).max(1) > 1.0
        out.append(float(over.mean()))
    return out


def _survival(results, cap: int | None = None) -> dict:
    frac = [min(s, cap or t) / min(t, cap or t) for s, t in results]
    full = [s >= min(t, cap or t) for s, t in results]
    return {
        "mean_survived_fraction": float(np.mean(frac)),
        "episodes_completed": float(np.mean(full)),
        "n": len(results),
    }


# ------------------------------------------------------------------------------ report
def _figures(folder: Path, stats: dict, load_names, col_names, survival: dict) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    a = stats["_arrays"]
    files = []
    n = min(len(load_names), 12)
    ncol = 4
    fig, axes = plt.subplots(
        int(np.ceil(n / ncol)), ncol, figsize=(14, 2.6 * np.ceil(n / ncol)), squeeze=False
    )
    hours = np.arange(24)
    for j, ax in enumerate(axes.ravel()):
        if j >= n:
            ax.axis("off")
            continue
        for m, s, label, color in (
            (a["ms"], a["ss"], "source", "C0"),
            (a["mg"], a["sg"], "generated", "C1"),
        ):
            ax.plot(hours, m[:, j], color=color, label=label)
            ax.fill_between(hours, m[:, j] - s[:, j], m[:, j] + s[:, j], color=color, alpha=0.2)
        ax.set_title(load_names[j], fontsize=9)
    axes[0, 0].legend(fontsize=8)
    fig.suptitle("load_p by hour of day: mean +- std (MW)")
    fig.tight_layout()
    fig.savefig(folder / "hourly_profiles.png", dpi=90)
    plt.close(fig)
    files.append("hourly_profiles.png")

    fig, axes = plt.subplots(1, 4, figsize=(17, 4))
    axes[0].scatter(a["acf_s"], a["acf_g"])
    lim = [np.nanmin([a["acf_s"], a["acf_g"]]) - 0.02, 1.0]
    axes[0].plot(lim, lim, "k--", lw=1)
    axes[0].set(xlabel="source", ylabel="generated", title="lag-1 autocorrelation (detrended)")
    for ax, mat, title in (
        (axes[1], a["cs"], "source corr"),
        (axes[2], a["cg"], "generated corr"),
        (axes[3], a["cg"] - a["cs"], "generated - source"),
    ):
        im = ax.imshow(mat, vmin=-1, vmax=1, cmap="RdBu_r")
        ax.set_title(title)
        ax.set_xticks([])
        ax.set_yticks(range(len(col_names)), col_names, fontsize=6)
    fig.colorbar(im, ax=axes[1:].tolist(), shrink=0.8)
    fig.savefig(folder / "correlation.png", dpi=90)
    plt.close(fig)
    files.append("correlation.png")

    fig, axes = plt.subplots(1, len(survival), figsize=(5 * len(survival), 3.5), squeeze=False)
    for ax, (scale, d) in zip(axes[0], survival.items()):
        bins = np.linspace(0, 1, 21)
        for key, color in (("source", "C0"), ("generated", "C1")):
            ax.hist(
                d[f"{key}_fractions"], bins=bins, alpha=0.6, density=True, color=color, label=key
            )
        ax.set(title=f"do-nothing, thermal limits x {scale}", xlabel="fraction of steps survived")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(folder / "survival.png", dpi=90)
    plt.close(fig)
    files.append("survival.png")
    return files


def validate_env(
    env_dir,
    source: SourceData,
    *,
    n_replay: int = 20,
    n_stats: int = 50,
    thermal_limit_scales=(1.0,),
    workers: int = 1,
    executor: Executor | None = None,
    progress: bool = True,
) -> dict:
    """Statistics and do-nothing survival of generated vs source; writes ``validation/``."""
    env_dir = Path(env_dir)
    names = sorted(
        p.name
        for p in (env_dir / "chronics").iterdir()
        if p.is_dir() and not p.name.startswith(".")
    )
    pick = sorted(
        {int(i) for i in np.linspace(0, len(names) - 1, min(n_stats, len(names))).round()}
    )
    gen, gen_times = zip(
        *(
            read_scenario(env_dir / "chronics" / names[i], source.load_names, source.gen_names)
            for i in pick
        )
    )
    src = [
        {k: source.arrays[k][c] for k in ("load_p", "load_q", "prod_p")}
        for c in range(len(source.chronic_names))
    ]
    src_times = [source.times(c) for c in range(len(src))]
    renewable = ~source.gen_dispatchable
    stats = compare_statistics(src, src_times, list(gen), list(gen_times), renewable)

    replay_idx = (
        sorted(
            {
                int(i)
                for i in np.linspace(0, len(names) - 1, min(max(n_replay, 0), len(names))).round()
            }
        )
        if n_replay > 0
        else []
    )
    src_len = min(source.n_steps) - 1
    survival, table = {}, []
    src_target = source.name
    for scale in thermal_limit_scales:
        s_res = replay_do_nothing(
            src_target,
            range(len(source.chronic_names)),
            scale,
            workers,
            progress=progress,
            executor=executor,
        )
        g_res = (
            replay_do_nothing(
                os.fspath(env_dir),
                replay_idx,
                scale,
                workers,
                progress=progress,
                executor=executor,
            )
            if replay_idx
            else []
        )
        over = overload_fractions(src_target, src + list(gen), scale)
        entry = {
            "overload_step_fraction_source": float(np.mean(over[: len(src)])),
            "overload_step_fraction_generated": float(np.mean(over[len(src) :])),
            "source": _survival(s_res),
            "generated": _survival(g_res) if g_res else None,
            "generated_first_source_length": _survival(g_res, cap=src_len) if g_res else None,
            "source_fractions": [s / t for s, t in s_res],
            "generated_fractions": [s / t for s, t in g_res],
        }
        survival[float(scale)] = entry
    col_names = list(source.load_names) + [n for n, r in zip(source.gen_names, renewable) if r]
    folder = env_dir / "validation"
    folder.mkdir(exist_ok=True)
    figures = _figures(folder, stats, source.load_names, col_names, survival)
    summary = {k: v for k, v in stats.items() if not k.startswith("_")}
    summary["stats_scenarios"] = [names[i] for i in pick]
    summary["replayed_scenarios"] = [names[i] for i in replay_idx]
    summary["survival"] = {
        str(scale): {k: v for k, v in d.items() if not k.endswith("_fractions")}
        for scale, d in survival.items()
    }
    summary["figures"] = figures
    for scale, d in survival.items():
        g, gc = d["generated"], d["generated_first_source_length"]
        gen_cells = (
            f"{g['mean_survived_fraction']:.1%} ({g['n']} x {len(gen[0]['load_p']) - 1}) | {gc['mean_survived_fraction']:.1%}"
            if g
            else "not replayed | -"
        )
        table.append(
            f"| {scale} | {d['source']['mean_survived_fraction']:.1%} ({d['source']['n']} x {src_len}) | {gen_cells} | "
            f"{d['overload_step_fraction_source']:.1%} / {d['overload_step_fraction_generated']:.1%} |"
        )
    md = f"""# Validation of generated scenarios

Source: `{source.name}` ({len(source.chronic_names)} chronics x {src_len} steps).
Generated: {len(names)} scenarios in `{env_dir}`.

## Statistics ({len(pick)} generated scenarios, evenly spaced: {names[pick[0]]} ... {names[pick[-1]]})

| statistic | value |
|---|---|
| hourly mean of load_p, mean relative error (of the load's level) | {stats["hourly_mean_rel_error_loads"]:.2%} (max {stats["hourly_mean_rel_error_loads_max"]:.2%}) |
| hourly std of load_p, median ratio generated / source | {stats["hourly_std_ratio_loads_median"]:.2f} |
| overall mean (loads + renewables), mean relative error | {stats["overall_mean_rel_error"]:.2%} |
| lag-1 autocorrelation around the hourly mean, source / generated | {stats["acf1_source_mean"]:.3f} / {stats["acf1_generated_mean"]:.3f} (mean abs error {stats["acf1_abs_error_mean"]:.3f}) |
| cross-correlation matrix (loads + renewables), mean / max abs error | {stats["corr_abs_error_mean"]:.3f} / {stats["corr_abs_error_max"]:.3f} |
| step-to-step change of the net load (loads - renewables), median / 95th percentile, source vs generated | {stats["net_load_step_p50_source"]:.1f} / {stats["net_load_step_p95_source"]:.1f} MW vs {stats["net_load_step_p50_generated"]:.1f} / {stats["net_load_step_p95_generated"]:.1f} MW |

## Do-nothing survival (grid2op + lightsim2grid, default parameters)

Replayed generated scenarios: {", ".join(summary["replayed_scenarios"]) or "none"}.

Survival = mean fraction of the episode's steps played before a game over. Last column:
fraction of steps with a line over its limit in the grid as is (AC power flows of every
step, no disconnection), source / the {len(pick)} generated scenarios of the statistics.

| thermal limit scale | source | generated | generated, first {src_len} steps | overloaded steps, source / generated |
|---|---|---|---|---|
{chr(10).join(table)}

Figures: {", ".join(f"[{f}]({f})" for f in figures)}
"""
    write_text(folder / "report.md", md)
    write_json(folder / "validation.json", summary)
    return summary


__all__ = ["compare_statistics", "read_scenario", "replay_do_nothing", "validate_env"]
