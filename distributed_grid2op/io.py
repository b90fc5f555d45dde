"""Atomic writes: a temp file in the same folder, then ``os.replace`` (never a half file)."""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path


def make_parent(path: Path) -> None:
    """Create the folder of ``path``; `UserError` if a regular file stands in the way."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as exc:
        from distributed_grid2op.errors import UserError

        blocker = next((p for p in [path.parent, *path.parent.parents] if p.is_file()), None)
        where = (
            f"{blocker} is a file, not a folder" if blocker else f"{path.parent} is not a folder"
        )
        raise UserError(f"cannot write {path}: {where}") from exc


@contextmanager
def atomic_path(path: str | Path, suffix: str = ""):
    """Yield a temp path next to ``path``; rename it onto ``path`` only if the block succeeds."""
    path = Path(path)
    make_parent(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or ".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        if os.path.isfile(tmp):
            os.chmod(tmp, 0o644)  # mkstemp makes 0600 files; outputs are meant to be shared
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextmanager
def atomic_dir(path: str | Path):
    """Yield an empty temp folder next to ``path``; it replaces ``path`` (a folder) only if
    the block succeeds, so readers see the old folder or the complete new one."""
    import shutil

    path = Path(path)
    make_parent(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o755)
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_text(path: str | Path, text: str) -> Path:
    """Atomically write text (``\\n`` line endings on every platform)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, newline="\n")
    return Path(path)


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Atomically write bytes."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_json(path: str | Path, obj) -> Path:
    """Atomically write JSON (indented, keys in insertion order)."""
    return write_text(path, json.dumps(obj, indent=2, default=_default) + "\n")


def _default(o):
    import numpy as np

    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def ensure_writable_dir(path: str | Path) -> Path:
    """Create ``path`` if needed and check we can write there; `UserError` otherwise."""
    from distributed_grid2op.errors import UserError

    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise UserError(f"output folder {path} is not writable ({exc.strerror})") from exc
    return path
