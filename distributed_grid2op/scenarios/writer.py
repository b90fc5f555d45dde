"""Write a grid2op env folder: the source's grid/config files plus new chronics.

One scenario = one folder ``chronics/<zero-padded index>/`` with ``load_p``, ``load_q``,
``prod_p``, ``prod_v`` and their ``*_forecasted`` files (``;``-separated, headers = grid2op
names), ``start_datetime.info`` and ``time_interval.info``. A scenario is written into a
hidden temp folder (``Multifolder`` skips names starting with ``.``) and renamed into place,
so a scenario folder that exists is complete.
"""

from __future__ import annotations

import bz2
import os
import shutil
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from distributed_grid2op.errors import UserError

FORMATS = {"csv": ".csv", "bz2": ".csv.bz2"}
FILES = ("load_p", "load_q", "prod_p", "prod_v")
ALL_FILES = FILES + tuple(f"{k}_forecasted" for k in FILES)
# not copied: the chronics (written new) and what describes a generated set (when the source
# is itself a generated env folder)
SKIP_TOP = ("chronics", "__pycache__", "validation", "generation.json", "splits.json")


def copy_env_files(source_dir: Path, out_dir: Path) -> list[str]:
    """Copy everything of the source env folder except its chronics and statistics caches."""
    copied = []
    for item in sorted(Path(source_dir).iterdir()):
        if item.name in SKIP_TOP or item.name.startswith(("_statistics", ".")):
            continue
        target = out_dir / item.name
        if target.exists():
            continue
        tmp = out_dir / f".{item.name}.partial"
        if tmp.exists():
            shutil.rmtree(tmp) if tmp.is_dir() else tmp.unlink()
        if item.is_dir():
            shutil.copytree(item, tmp, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(item, tmp)
        os.replace(tmp, target)
        copied.append(item.name)
    return copied


def format_csv(names: list[str], values: np.ndarray, decimals: int = 2) -> bytes:
    """``;``-separated CSV text of a 2-D array with a header (fast %-formatting)."""
    values = np.asarray(values, dtype=float)
    row = ";".join([f"%.{decimals}f"] * values.shape[1]) + "\n"
    body = (row * values.shape[0]) % tuple(np.round(values, decimals).ravel().tolist())
    return (";".join(names) + "\n" + body).encode()


def _encode(data: bytes, fmt: str) -> bytes:
    return bz2.compress(data, compresslevel=1) if fmt == "bz2" else data


def scenario_names(n: int, width: int) -> list[str]:
    """Zero-padded folder names ``0000``, ``0001``, ..."""
    return [f"{i:0{width}d}" for i in range(n)]


def is_complete(folder: Path, fmt: str, *extra: str) -> bool:
    """True if every chronic file of a scenario (and ``extra`` files) is present; a folder
    renamed into place by `write_scenario` always is."""
    ext = FORMATS[fmt]
    files = [f"{name}{ext}" for name in ALL_FILES] + list(extra)
    return folder.is_dir() and all((folder / name).is_file() for name in files)


def clean_partial(chronics_dir: Path) -> int:
    """Remove temp folders left by an interrupted run; returns how many."""
    n = 0
    if chronics_dir.is_dir():
        for item in chronics_dir.iterdir():
            if item.name.startswith(".tmp-") and item.is_dir():
                shutil.rmtree(item, ignore_errors=True)
                n += 1
    return n


def scenario_files(
    arrays: dict,
    load_names: list[str],
    gen_names: list[str],
    interval: timedelta,
    fmt: str = "bz2",
    decimals: int = 2,
    extra: dict[str, str] | None = None,
) -> dict[str, bytes]:
    """The files of one scenario folder, file name -> bytes (formatted and compressed: the
    costly part, done in the worker; the driver only writes them with `write_files`).

    ``arrays`` maps each of `ALL_FILES` to a ``(n_steps, n_columns)`` array (grid2op column
    order) and ``"start"`` to a datetime; ``extra`` adds small text files (name -> text)."""
    if fmt not in FORMATS:
        raise UserError(f"unknown chronics format {fmt!r}; choose one of {', '.join(FORMATS)}")
    ext = FORMATS[fmt]
    files = {}
    for kind in ALL_FILES:
        names = load_names if kind.startswith("load") else gen_names
        files[f"{kind}{ext}"] = _encode(format_csv(names, arrays[kind], decimals), fmt)
    start: datetime = arrays["start"]
    files["start_datetime.info"] = (start.strftime("%Y-%m-%d %H:%M") + "\n").encode()
    minutes = int(interval.total_seconds() // 60)
    files["time_interval.info"] = f"{minutes // 60:02d}:{minutes % 60:02d}\n".encode()
    for fname, text in (extra or {}).items():
        files[fname] = text.encode()
    return files


def write_files(chronics_dir: Path, name: str, files: dict[str, bytes]) -> Path:
    """Write one scenario folder atomically (temp folder ``.tmp-*``, then rename); a folder
    already complete under that name is kept. Returns the folder."""
    final = Path(chronics_dir) / name
    tmp = Path(chronics_dir) / f".tmp-{name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        for fname, data in files.items():
            (tmp / fname).write_bytes(data)
        if final.exists():  # a previous run finished it first: keep that one
            shutil.rmtree(tmp)
            return final
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def write_scenario(
    chronics_dir: Path,
    name: str,
    arrays: dict,
    load_names: list[str],
    gen_names: list[str],
    interval: timedelta,
    fmt: str = "bz2",
    decimals: int = 2,
    extra: dict[str, str] | None = None,
) -> Path:
    """Write one scenario atomically (temp folder + rename); returns its folder.

    `scenario_files` then `write_files`, in this process."""
    files = scenario_files(arrays, load_names, gen_names, interval, fmt, decimals, extra)
    return write_files(chronics_dir, name, files)
