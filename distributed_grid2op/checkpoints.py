"""Where agents live on disk: one home for finding checkpoints.

A training output folder holds ``checkpoints/epNNNNNN/`` (agent + trainer state, each
written as a whole folder atomically) and ``final/``; an agent folder holds ``agent.json``
and ``weights.pt``.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from distributed_grid2op.errors import UserError

META_FILE, WEIGHTS_FILE = "agent.json", "weights.pt"
CHECKPOINTS = "checkpoints"
#: ``pretrained:NAME`` names an agent shipped in ``distributed_grid2op/data/pretrained/NAME``,
#: an agent folder with ``pretrained.json`` (see `distributed_grid2op.pretrained`)
PRETRAINED_PREFIX, PRETRAINED_INFO = "pretrained:", "pretrained.json"


def checkpoints(out_dir, required: str = META_FILE) -> list[Path]:
    """The ``checkpoints/ep*`` folders of a training output holding ``required``, oldest first."""
    folder = Path(out_dir) / CHECKPOINTS
    return sorted(p for p in folder.glob("ep*") if (p / required).is_file())


def latest_checkpoint(out_dir, required: str = META_FILE) -> Path | None:
    """The newest checkpoint folder of a training output, or None."""
    found = checkpoints(out_dir, required)
    return found[-1] if found else None


def pretrained_root() -> Path:
    """The folder of the agents shipped in the package, one sub-folder each."""
    return Path(str(resources.files("distributed_grid2op").joinpath("data/pretrained")))


def pretrained_names() -> list[str]:
    """Names of the shipped agents, sorted."""
    root = pretrained_root()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / PRETRAINED_INFO).is_file())


def pretrained_dir(name: str) -> Path:
    """The agent folder of the shipped agent ``name``; `UserError` naming the available ones."""
    names = pretrained_names()
    if name not in names:
        raise UserError(
            f"unknown pretrained agent {name!r}; available: {', '.join(names) or 'none'}"
        )
    return pretrained_root() / name


def resolve_pretrained(source: str | Path) -> str | Path:
    """``pretrained:NAME`` -> the shipped agent's folder; anything else unchanged."""
    text = str(source)
    if text.startswith(PRETRAINED_PREFIX):
        return pretrained_dir(text[len(PRETRAINED_PREFIX) :])
    return source


def find_agent(path) -> Path:
    """The agent folder of ``path``: itself, its ``final/``, else its latest checkpoint;
    ``pretrained:NAME`` is the shipped agent of that name (`distributed_grid2op.pretrained`)."""
    path = Path(resolve_pretrained(path))
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
