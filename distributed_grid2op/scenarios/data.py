"""Read the injections of a source grid2op env (its chronics folders) into arrays.

Columns are put in grid2op's order of loads/generators (``env.name_load`` / ``env.name_gen``),
matched by header name: the CSV column order is not grid2op's (``Multifolder`` reorders by
name), so every array here and every file written later uses those names as headers.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from distributed_grid2op.errors import UserError

KINDS = ("load_p", "load_q", "prod_p", "prod_v")
#: per-chronic files copied into every generated scenario when the source has them
CHRONIC_FILES = ("maintenance_meta.json",)
EXTENSIONS = (".csv", ".csv.bz2", ".csv.xz", ".zip")
DEFAULT_START = datetime(2019, 1, 1, 0, 0)
DEFAULT_INTERVAL = timedelta(minutes=5)


@dataclass
class SourceData:
    """Injections of the source env, one array per chronic (rows = time steps, MW / MVAr / kV).

    ``arrays[kind][k]`` has shape ``(T_k, n_columns(kind))`` with columns named
    ``load_names`` (load_p, load_q) or ``gen_names`` (prod_p, prod_v); ``forecasts`` the same
    for ``<kind>_forecasted`` files where every chronic has them, shape
    ``(T_k, horizons, n_columns)``: grid2op's multi-horizon forecast files (``h_forecast`` in
    the env's config, e.g. 12 horizons of 5 to 60 min on l2rpn_idf_2023) hold ``horizons``
    rows per step. ``chronic_files``: small per-chronic files the env needs besides the
    injections (e.g. ``maintenance_meta.json`` of grid2op's ``...WithMaintenance`` chronics),
    name -> text, from the first chronic.
    """

    name: str
    env_path: Path
    chronic_names: list[str]
    load_names: list[str]
    gen_names: list[str]
    arrays: dict[str, list[np.ndarray]]
    forecasts: dict[str, list[np.ndarray]]
    starts: list[datetime]
    interval: timedelta
    gen_dispatchable: np.ndarray  # (n_gen,) bool, in gen_names order
    gen_pmax: np.ndarray  # (n_gen,) MW
    #: (n_gen,) MW per step each, None when the env has no ramp data (no redispatching)
    gen_ramp_up: np.ndarray | None = None
    gen_ramp_down: np.ndarray | None = None
    gen_type: list[str] = field(default_factory=list)
    horizons: int = 1
    chronic_files: dict[str, str] = field(default_factory=dict)

    @property
    def n_steps(self) -> list[int]:
        """Rows per chronic."""
        return [a.shape[0] for a in self.arrays["load_p"]]

    def times(self, k: int) -> pd.DatetimeIndex:
        """Timestamps of chronic ``k`` (one per row)."""
        return pd.date_range(self.starts[k], periods=self.n_steps[k], freq=self.interval)


def _find(folder: Path, stem: str) -> Path | None:
    for ext in EXTENSIONS:
        path = folder / f"{stem}{ext}"
        if path.is_file():
            return path
    return None


def _read_info(path: Path, parse, default):
    try:
        return parse(path.read_text().strip())
    except (OSError, ValueError):
        return default


def _parse_interval(text: str) -> timedelta:
    hours, minutes = text.split(":")[:2]
    value = timedelta(hours=int(hours), minutes=int(minutes))
    if value <= timedelta(0):
        raise ValueError(text)
    return value


def _parse_start(text: str) -> datetime:
    return datetime.strptime(text[:16], "%Y-%m-%d %H:%M")


def _forecast_horizons(forecasts: dict, arrays: dict) -> int | None:
    """Rows per step of the forecast files (1, or grid2op's multi-horizon count); None when
    they disagree between files or chronics."""
    seen = set()
    for kind, fcs in forecasts.items():
        for f, a in zip(fcs, arrays[kind]):
            if f.shape[1] != a.shape[1] or a.shape[0] == 0 or f.shape[0] % a.shape[0]:
                return None
            seen.add(f.shape[0] // a.shape[0])
    return seen.pop() if len(seen) == 1 else (1 if not seen else None)


def chronic_folders(env) -> list[Path]:
    """The chronic folders a made env cycles through (a single folder for one-chronic envs)."""
    real = env.chronics_handler.real_data
    subpaths = getattr(real, "subpaths", None)
    if subpaths is not None:
        return [Path(p) for p in subpaths]
    path = getattr(real, "path", None)
    if path is None:
        raise UserError(
            f"{env.get_path_env()}: its chronics are not read from files; cannot fit a model"
        )
    return [Path(path)]


def read_source(env, name: str, max_chronics: int | None = None) -> SourceData:
    """Read the source chronics of a made env (optionally only the first ``max_chronics``)."""
    folders = chronic_folders(env)
    if max_chronics is not None:
        folders = folders[: int(max_chronics)]
    load_names = [str(x) for x in env.name_load]
    gen_names = [str(x) for x in env.name_gen]
    arrays: dict[str, list[np.ndarray]] = {k: [] for k in KINDS}
    forecasts: dict[str, list[np.ndarray]] = {k: [] for k in KINDS}
    starts, intervals = [], []
    for folder in folders:
        for kind in KINDS:
            names = load_names if kind.startswith("load") else gen_names
            for stem, store in ((kind, arrays), (f"{kind}_forecasted", forecasts)):
                path = _find(folder, stem)
                if path is None:
                    if store is arrays and kind != "prod_v":
                        raise UserError(
                            f"{folder}: no {kind}.csv[.bz2]; not a grid2op chronic folder"
                        )
                    store[kind].append(None)
                    continue
                frame = pd.read_csv(path, sep=";")
                missing = sorted(set(names) - set(frame.columns))
                if missing:
                    raise UserError(
                        f"{path}: columns {missing[:3]} missing (names_chronics_to_grid unsupported)"
                    )
                store[kind].append(frame[names].to_numpy(dtype=float))
        starts.append(_read_info(folder / "start_datetime.info", _parse_start, DEFAULT_START))
        intervals.append(
            _read_info(folder / "time_interval.info", _parse_interval, DEFAULT_INTERVAL)
        )
    if not folders:
        raise UserError(f"{env.get_path_env()}: no chronics to fit a model on")
    n_rows = [a.shape[0] for a in arrays["load_p"]]
    for kind in KINDS:
        if any(
            a is None for a in arrays[kind]
        ):  # prod_v missing somewhere: use the grid's setpoints
            arrays[kind] = [np.tile(_grid_gen_v(env), (n, 1)) for n in n_rows]
        if any(a is None for a in forecasts[kind]):
            forecasts.pop(kind)
    horizons = _forecast_horizons(forecasts, arrays)
    for kind in list(forecasts):
        if horizons is None:
            forecasts.pop(kind)  # inconsistent forecast files: regenerated at 1 step
        else:
            forecasts[kind] = [
                f.reshape(a.shape[0], horizons, a.shape[1])
                for f, a in zip(forecasts[kind], arrays[kind])
            ]
    for kind in KINDS:
        if [a.shape[0] for a in arrays[kind]] != n_rows:
            raise UserError(
                f"{env.get_path_env()}: {kind} and load_p have different lengths in a chronic"
            )
    pmax = np.asarray(env.gen_pmax, dtype=float)
    ramps = (None, None)
    if bool(getattr(env, "redispatching_unit_commitment_availble", False)):
        ramps = tuple(
            np.asarray(r, dtype=float) for r in (env.gen_max_ramp_up, env.gen_max_ramp_down)
        )
    chronic_files = {
        fname: (folders[0] / fname).read_text(encoding="utf-8")
        for fname in CHRONIC_FILES
        if (folders[0] / fname).is_file()
    }
    return SourceData(
        name=name,
        env_path=Path(env.get_path_env()),
        chronic_names=[f.name for f in folders],
        load_names=load_names,
        gen_names=gen_names,
        arrays=arrays,
        forecasts=forecasts,
        starts=starts,
        interval=max(set(intervals), key=intervals.count),
        gen_dispatchable=np.asarray(env.gen_redispatchable, dtype=bool),
        gen_pmax=pmax,
        gen_ramp_up=ramps[0],
        gen_ramp_down=ramps[1],
        gen_type=[str(t) for t in env.gen_type],
        horizons=horizons or 1,
        chronic_files=chronic_files,
    )


def _grid_gen_v(env) -> np.ndarray:
    """Voltage setpoints (kV) of the generators in the grid file, used when a source has no prod_v."""
    obs = env.reset()
    return np.asarray(obs.gen_v, dtype=float)


def env_is_inside_site_packages(path: str | os.PathLike) -> bool:
    """True if ``path`` lies in an installed package tree (never write there)."""
    import site
    import sysconfig

    roots = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    roots.update(site.getsitepackages() if hasattr(site, "getsitepackages") else [])
    resolved = Path(path).resolve()
    for root in roots:
        try:
            resolved.relative_to(Path(root).resolve())
            return True
        except ValueError:
            continue
    return False
