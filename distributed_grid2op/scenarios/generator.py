"""`generate`: fit a model on a source env and write ``n`` new scenarios as a grid2op env folder.

Scenario ``i`` is drawn from ``SeedSequence(seed, spawn_key=(i, attempt))``: it does not
depend on ``n``, on the number of workers or on which run wrote it, so an interrupted run
resumed later (or a run extended to more scenarios) gives the same files as one clean run.
Every scenario is checked with lightsim2grid before it is written (AC power flows of all its
steps with the grid as is); one whose first power flow diverges is redrawn (next attempt).
Scenarios are tasks of a `distributed_grid2op.execution.Executor`: a worker draws, checks and
formats one scenario and returns its files' bytes; only the driver writes them (atomically,
a temp folder renamed into place).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import warnings
from pathlib import Path

import numpy as np

from distributed_grid2op.envs import make_env, quiet_grid2op, resolve_env
from distributed_grid2op.errors import UserError
from distributed_grid2op.execution import Executor, WorkerContext
from distributed_grid2op.io import ensure_writable_dir, write_json
from distributed_grid2op.scenarios import writer
from distributed_grid2op.scenarios.data import env_is_inside_site_packages, read_source
from distributed_grid2op.scenarios.model import InjectionModel
from distributed_grid2op.scenarios.validate import converged_steps_mask
from distributed_grid2op.splits import DEFAULT_FRACTIONS, draw_splits, write_splits

FORMAT_VERSION = 1
METADATA = "generation.json"
CHECK_FILE = "check.json"


def _check_args(n_scenarios, n_steps, seed, workers, max_attempts, fmt):
    for label, value, low in (
        ("n_scenarios", n_scenarios, 1),
        ("n_steps", n_steps, 2),
        ("workers", workers, 1),
        ("max_attempts", max_attempts, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise UserError(f"{label} must be an integer >= {low}, got {value!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise UserError(f"seed must be a non-negative integer, got {seed!r}")
    if fmt not in writer.FORMATS:
        raise UserError(
            f"unknown chronics format {fmt!r}; choose one of {', '.join(writer.FORMATS)}"
        )


class _Worker:
    """Per-worker state: the fitted model and a lightsim2grid batch power-flow solver."""

    def __init__(self, model: InjectionModel, source: str, settings: dict):
        self.model, self.source, self.settings = model, source, settings
        self._ts = None

    def _solver(self):
        if self._ts is None:
            from lightsim2grid import TimeSerie

            with quiet_grid2op():
                env = make_env(self.source)
                env.reset()
                self._ts = TimeSerie(env)
                self._limits = np.asarray(env.get_thermal_limit(), dtype=float)
                env.close()
        return self._ts

    def power_flows(self, arrays) -> tuple[int, float]:
        """(steps converged before the first divergence, fraction of steps with a line over its limit)."""
        ts = self._solver()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ts.clear()  # the batch size is fixed by the first call otherwise
            ts.compute_V_from_inj(
                arrays["prod_p"], arrays["load_p"], arrays["load_q"], ignore_errors=True
            )
        mask = converged_steps_mask(ts)
        converged = int(np.argmin(mask)) if not mask.all() else len(mask)
        overload = 0.0
        if converged == len(mask):
            amps = ts.compute_A()
            overload = float(np.mean((amps / self._limits).max(1) > 1.0))
        return converged, overload

    def make(self, index: int) -> dict:
        """Draw scenario ``index`` (redrawing while its first power flow diverges): its check
        record and ``"files"``, the bytes of each file of its folder (nothing is written)."""
        from threadpoolctl import threadpool_limits

        s = self.settings
        name = f"{index:0{s['name_width']}d}"
        with threadpool_limits(1):  # small matrices: BLAS threads only oversubscribe the cores
            for attempt in range(s["max_attempts"]):
                rng = np.random.default_rng(
                    np.random.SeedSequence(s["seed"], spawn_key=(index, attempt))
                )
                arrays = self.model.sample(s["n_steps"], rng)
                converged, overload = self.power_flows(arrays)
                if converged > 0:
                    break
            else:
                raise RuntimeError(
                    f"scenario {name}: the first power flow diverged in {s['max_attempts']} "
                    "draws; the fitted model does not suit this grid"
                )
        info = {
            "index": index,
            "attempts": attempt + 1,
            "start": arrays["start"].strftime("%Y-%m-%d %H:%M"),
            "converged_steps": converged,
            "n_steps": s["n_steps"],
            "overload_step_fraction": overload,
        }
        files = writer.scenario_files(
            arrays,
            self.model.load_names_,
            self.model.gen_names_,
            self.model.interval_,
            fmt=s["format"],
            decimals=s["decimals"],
            extra={**s.get("chronic_files", {}), CHECK_FILE: json.dumps(info) + "\n"},
        )
        return {"name": name, **info, "files": files}


def _make_scenario(ctx: WorkerContext, index: int, shared: tuple) -> dict:
    """Task function: scenario ``index`` drawn, checked and formatted in a worker."""
    model, source, settings = shared
    key = ("scenario-worker", source)
    worker = ctx.cache.get(key)
    if worker is None:  # keeps its power-flow solver between tasks
        worker = ctx.cache[key] = _Worker(model, source, settings)
    worker.model, worker.settings = model, settings
    return worker.make(index)


def _progress(total, enabled, desc):
    from tqdm.auto import tqdm

    return tqdm(total=total, disable=not enabled, desc=desc, unit="scenario")


def _settings_mismatch(old: dict, new: dict) -> list[str]:
    old = {"ramp_limits": False, **old}  # folders written before ramp limits existed
    return [k for k in new if k in old and old[k] != new[k]]


def generate(
    source,
    out_dir,
    n_scenarios: int,
    n_steps: int,
    seed: int = 0,
    *,
    workers: int = 1,
    executor: Executor | None = None,
    validate: bool = True,
    thermal_limit_scale: float = 1.0,
    splits=DEFAULT_FRACTIONS,
    fmt: str = "csv",
    decimals: int = 1,
    n_replay: int = 20,
    max_source_chronics: int | None = None,
    max_attempts: int = 5,
    progress: bool = True,
    model_params: dict | None = None,
) -> Path:
    """Fit `InjectionModel` on ``source`` and write ``n_scenarios`` chronics of ``n_steps`` rows.

    Args:
        source: bundled test env name or grid2op env folder.
        out_dir: the new env folder (created; rerunning with the same settings resumes).
        n_scenarios, n_steps: scenarios and rows per scenario (5-min steps for case14).
        seed: the generated set is a function of (source, seed, settings) only.
        workers: workers of the `Executor` made for this call when ``executor`` is None
            (sampling, checking and formatting are parallel per scenario; the files do not
            depend on the number of workers).
        executor: a `distributed_grid2op.execution.Executor` to run on (not closed here).
        validate: replay do-nothing and write ``validation/report.md`` (see `validate_env`).
        thermal_limit_scale: thermal limit scale of the validation replay (recorded).
        splits: train/val/test fractions written to ``splits.json``.
        fmt: ``"csv"`` (plain, fastest to write and for grid2op to read) or ``"bz2"`` (like
            grid2op's own data: ~4x smaller, ~2x slower to generate).
        decimals: decimals written (the source has 1).
        n_replay: generated scenarios replayed with do-nothing in the validation.
        max_source_chronics: fit on the first chronics only (large downloaded datasets).
        max_attempts: draws per scenario before giving up on a diverging first power flow.
        progress: show tqdm progress bars.
        model_params: keyword arguments of `InjectionModel`.

    Returns:
        ``out_dir`` as a Path; ``distributed_grid2op.envs.make_env(out_dir)`` loads it.
    """
    _check_args(n_scenarios, n_steps, seed, workers, max_attempts, fmt)
    draw_splits(
        [str(i) for i in range(min(n_scenarios, 10))], splits, seed
    )  # bad fractions fail now
    scale = float(thermal_limit_scale)
    if not (math.isfinite(scale) and scale > 0):
        raise UserError(
            f"thermal_limit_scale must be a finite number > 0, got {thermal_limit_scale}"
        )
    if isinstance(n_replay, bool) or not isinstance(n_replay, (int, np.integer)) or n_replay < 0:
        raise UserError(f"n_replay must be an integer >= 0, got {n_replay!r}")
    target, bundled = resolve_env(source)
    out = Path(out_dir).expanduser()
    if env_is_inside_site_packages(out):
        raise UserError(f"refusing to write into an installed package tree: {out}")
    if not bundled and (out.resolve() == Path(target) or Path(target) in out.resolve().parents):
        raise UserError(f"out_dir {out} must not be the source env folder or inside it")
    ensure_writable_dir(out)
    model_params = dict(model_params or {})
    settings = {
        "format_version": FORMAT_VERSION,
        "source": os.fspath(source),
        "seed": int(seed),
        "n_steps": int(n_steps),
        "format": fmt,
        "decimals": int(decimals),
        "max_source_chronics": max_source_chronics,
        "max_attempts": int(max_attempts),
        "model_params": {k: v for k, v in model_params.items() if k != "ramp_limits"},
        "ramp_limits": bool(model_params.get("ramp_limits", True)),
    }
    meta_path = out / METADATA
    old = {}
    if meta_path.is_file():
        try:
            old = json.loads(meta_path.read_text())
        except json.JSONDecodeError as exc:
            raise UserError(f"{meta_path}: malformed ({exc}); use a new out_dir") from exc
        diff = _settings_mismatch(old.get("settings", {}), settings)
        if diff:
            raise UserError(
                f"{out} holds scenarios generated with other settings ({', '.join(diff)}); use a new out_dir"
            )
    elif (out / "chronics").is_dir() and any(
        p for p in (out / "chronics").iterdir() if not p.name.startswith(".")
    ):
        raise UserError(f"{out} already has chronics but no {METADATA}; use a new out_dir")
    chronics = out / "chronics"
    existing = (
        sorted(p.name for p in chronics.iterdir() if not p.name.startswith("."))
        if chronics.is_dir()
        else []
    )
    if len(existing) > n_scenarios:
        raise UserError(
            f"{out} already holds {len(existing)} scenarios > n_scenarios={n_scenarios}; use a new out_dir"
        )
    width = int(old.get("name_width", max(4, len(str(n_scenarios - 1)))))
    settings["name_width"] = width

    with quiet_grid2op():
        env = make_env(source)
        data = read_source(env, os.fspath(source), max_source_chronics)
        env.close()
    model = InjectionModel(**model_params).fit(data)
    settings_run = {**settings, "chronic_files": dict(data.chronic_files)}
    import grid2op
    import lightsim2grid

    meta = {
        "settings": settings,
        "name_width": width,
        "status": "incomplete",
        "source_path": str(data.env_path),
        "source_chronics": data.chronic_names,
        "n_scenarios": int(n_scenarios),
        "model": model.summary(),
        "versions": {
            "grid2op": grid2op.__version__,
            "lightsim2grid": lightsim2grid.__version__,
            "numpy": np.__version__,
        },
    }
    write_json(meta_path, meta)
    writer.copy_env_files(data.env_path, out)
    chronics.mkdir(exist_ok=True)
    writer.clean_partial(chronics)

    names = writer.scenario_names(n_scenarios, width)
    todo = [
        i
        for i, name in enumerate(names)
        if not writer.is_complete(chronics / name, fmt, CHECK_FILE)
    ]
    for i in todo:  # a damaged scenario folder (not one of ours once renamed) is rewritten
        if (chronics / names[i]).exists():
            shutil.rmtree(chronics / names[i])
    own = executor is None
    if own:
        executor = Executor(workers)
    try:
        _make_all(model, os.fspath(source), settings_run, chronics, todo, executor, progress)
        checks = [json.loads((chronics / name / CHECK_FILE).read_text()) for name in names]
        write_splits(out, names, splits, seed)
        meta.update(
            status="complete",
            scenarios={
                "written_this_run": len(todo),
                "kept_from_earlier_runs": n_scenarios - len(todo),
                "redrawn": int(sum(c["attempts"] > 1 for c in checks)),
                "all_steps_converge": int(
                    sum(c["converged_steps"] == c["n_steps"] for c in checks)
                ),
                "mean_overload_step_fraction": float(
                    np.mean([c["overload_step_fraction"] for c in checks])
                ),
            },
            splits=list(map(float, splits)),
        )
        write_json(meta_path, meta)
        if validate:
            from distributed_grid2op.scenarios.validate import validate_env

            report = validate_env(
                out,
                data,
                n_replay=n_replay,
                thermal_limit_scales=(thermal_limit_scale,),
                executor=executor,
                progress=progress,
            )
            meta["validation"] = report
            write_json(meta_path, meta)
    finally:
        if own:
            executor.close()
    return out


def _make_all(model, source, settings, chronics, todo, executor, progress):
    """Scenarios ``todo`` on ``executor``; the driver writes each folder as it comes back."""
    if not todo:
        return
    bar = _progress(len(todo), progress, "scenarios")
    try:
        shared = (model, source, settings)
        for _, record in executor.imap(_make_scenario, todo, shared):
            writer.write_files(chronics, record["name"], record["files"])
            bar.update(1)
    finally:
        bar.close()
