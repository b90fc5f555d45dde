"""Checked attribute replacement: version, presence and signature of what a patch wraps."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

SUPPORTED = "1.12."


class PatchError(RuntimeError):
    """A patch cannot be applied safely to the installed grid2op."""


def check_version() -> str:
    """The installed grid2op version; `PatchError` unless it is 1.12.x."""
    import grid2op

    version = str(getattr(grid2op, "__version__", "unknown"))
    if not version.startswith(SUPPORTED):
        raise PatchError(
            f"these patches target grid2op {SUPPORTED}x, found {version}; they were not applied"
        )
    return version


def expect(owner: Any, attr: str, params: tuple[str, ...], where: str):
    """Return ``owner.attr`` after checking it exists and its parameters start with ``params``."""
    if not hasattr(owner, attr):
        raise PatchError(f"grid2op changed: {where}.{attr} does not exist; patch not applied")
    obj = getattr(owner, attr)
    try:
        names = tuple(inspect.signature(obj).parameters)
    except (TypeError, ValueError) as exc:
        raise PatchError(f"grid2op changed: cannot read the signature of {where}.{attr}") from exc
    if names[: len(params)] != params:
        raise PatchError(
            f"grid2op changed: {where}.{attr}{names} does not match the expected "
            f"{params}; patch not applied"
        )
    return obj


@dataclass
class Replacement:
    """``owner.attr``: ``original`` -> ``new``; `install` refuses if someone else changed it."""

    owner: Any
    attr: str
    original: Any
    new: Any

    def install(self):
        current = (
            self.owner.__dict__.get(self.attr)
            if isinstance(self.owner, type)
            else getattr(self.owner, self.attr)
        )
        if current is not self.original:
            raise PatchError(
                f"{self.owner.__name__}.{self.attr} was already replaced by someone else"
            )
        setattr(self.owner, self.attr, self.new)

    def restore(self):
        setattr(self.owner, self.attr, self.original)
