"""Where agents live on disk: one home for finding checkpoints.

A training output folder holds ``checkpoints/epNNNNNN/`` (agent + trainer state, each
written as a whole folder atomically) and ``final/``; an agent folder holds ``agent.json``
and ``weights.pt``.
"""

from __future__ import annotations

from pathlib import Path

from distributed_grid2op.errors import UserError

META_FILE, WEIGHTS_FILE = "agent.json", "weights.pt"
CHECKPOINTS = "checkpoints"


def checkpoints(out_dir, required: str = META_FILE) -> list[Path]:
    """The ``checkpoints/ep*`` folders of a training output holding ``required``, oldest first."""
    folder = Path(out_dir) / CHECKPOINTS
    return sorted(p for p in folder.glob("ep*") if (p / required).is_file())


def latest_checkpoint(out_dir, required: str = META_FILE) -> Path | None:
    """The newest checkpoint folder of a training output, or None."""
    found = checkpoints(out_dir, required)
    return found[-1] if found else None


def find_agent(path) -> Path:
    """The agent folder of ``path``: itself, its ``final/``, else its latest checkpoint;
    ``pretrained:NAME`` is the shipped agent of that name (`distributed_grid2op.pretrained`)."""
    from distributed_grid2op.pretrained import resolve

    path = Path(resolve(path))
    if not path.exists():
        raise UserError(f"no such agent folder: {path}")
    if (path / META_FILE).is_file():
        return path
    if (path / "final" / META_FILE).is_file():
        return path / "final"
    latest = latest_checkpoint(path)
    if latest is not None:
        return latest
    raise UserError(
        f"no agent checkpoint in {path} (expected {META_FILE}, final/ or {CHECKPOINTS}/ep*/)"
    )
