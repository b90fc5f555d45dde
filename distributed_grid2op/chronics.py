"""Checks of an env folder's chronic files (the data of its scenarios).

Used on the failure path of every command (`cli.run`): when grid2op cannot read a scenario,
the user gets the file and what is wrong with it instead of a traceback.
"""

from __future__ import annotations

import os
from pathlib import Path

CHRONIC_SUFFIXES = (".csv", ".csv.bz2", ".csv.gz", ".csv.xz", ".csv.zip")


def chronic_file_problem(path: str | os.PathLike) -> str | None:
    """What is wrong with one chronic CSV file (``None`` if it reads as numbers).

    A file that does not decompress, is not ``;``-separated text, or holds a non-numeric
    value is named with the problem (row and column of the first bad value)."""
    import pandas as pd

    try:
        frame = pd.read_csv(path, sep=";")
    except (OSError, EOFError, UnicodeDecodeError, ValueError, pd.errors.ParserError) as exc:
        kind = Path(path).name.rsplit(".", 1)[-1]
        what = f"not a valid .{kind} file" if kind in ("bz2", "gz", "xz", "zip") else "unreadable"
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"{what} ({detail})"
    for col in frame.columns:
        values = pd.to_numeric(frame[col], errors="coerce")
        bad = values.isna() & frame[col].notna()
        if bad.any():
            row = int(bad.to_numpy().argmax())
            return f"non-numeric value {frame[col].iloc[row]!r} in column {col!r}, row {row + 2}"
    return None


def find_bad_chronic_file(env_dir: str | os.PathLike) -> tuple[Path, str] | None:
    """The first unreadable chronic file of the env folder ``env_dir`` and its problem.

    Reads every chronic CSV: meant for the failure path (an env whose data did not load)."""
    root = Path(env_dir) / "chronics"
    if not root.is_dir():
        return None
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.name.endswith(CHRONIC_SUFFIXES):
            problem = chronic_file_problem(path)
            if problem is not None:
                return path, problem
    return None
