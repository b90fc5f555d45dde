"""The thesis' two grid2op file replacements, as opt-in monkeypatches for grid2op 1.12.x.

The thesis asked users to overwrite ``grid2op/Runner/aux_fun.py`` and
``grid2op/Episode/EpisodeData.py`` of grid2op 1.10 in site-packages. Copying those files over
1.12 crashes (the episode runner gained ``use_compact_episode_data``, ``init_state`` and
``reset_option`` arguments), and nothing should be written into site-packages. Instead:

- ``episode_names`` (`patches.episode_names`): each episode folder written by the
  ``Runner`` is named ``<chronic>_<episode index>`` (the thesis' change), so running more
  episodes than chronics no longer overwrites earlier episodes; a folder that already exists
  gets a ``-1``, ``-2`` ... suffix (claimed with an atomic ``mkdir``), so nothing is ever
  overwritten, even across processes or repeated runs into the same ``path_save``.
- ``lean_episode`` (`patches.lean_episode`): an episode saved by the ``Runner`` holds only
  ``observations.npz`` and ``actions.npz`` (no space descriptions, parameters, metadata,
  times, rewards, attacks or environment actions). `read_episode` reads it back (grid2op's
  ``EpisodeData.from_disk`` needs the files the thesis skips).

Usage::

    import patches
    with patches.applied():            # or patches.apply() ... patches.undo()
        runner = Runner(**env.get_params_for_runner(), agentInstance=agent,
                        mp_context=patches.fork_context())
        runner.run(nb_episode=100, path_save=..., nb_process=2)

Nothing is patched at import. `apply` is idempotent and checks, for every target, the
grid2op version (1.12.x) and that the function it wraps exists with the expected signature,
raising `PatchError` otherwise; `undo` puts the original objects back (identity preserved).

Worker processes inherit patches only under the ``fork`` start method: grid2op's
``Runner(nb_process>1)`` uses the default multiprocessing context (``spawn`` or
``forkserver`` workers re-import grid2op *unpatched*); build the Runner with
``mp_context=fork_context()``.
In 1.12 the episode runner ``_aux_run_one_episode`` is bound under two module names,
``grid2op.Runner.runner`` (sequential path, ``nb_process=1``) and ``grid2op.Runner.aux_fun``
(worker path, ``_aux_one_process_parrallel``): both are replaced.

What grid2op 1.12 offers publicly instead: to read episodes back without writing anything,
``runner.run(..., path_save=None, add_detailed_output=True)`` returns each episode's
``EpisodeData`` in memory (this is what `clustering.power_grid` and the benchmark use for the
thesis route); ``Runner(use_compact_episode_data=True)`` writes one compressed file per
episode instead of ~13 (still named after the chronic only, and still holding rewards,
environment actions, ...). Neither names folders by episode index, hence the patches.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from contextlib import contextmanager

from patches._core import PatchError, Replacement, check_version
from patches.lean_episode import LeanEpisode, read_episode

__all__ = [
    "PATCHES",
    "LeanEpisode",
    "PatchError",
    "applied",
    "apply",
    "fork_context",
    "is_applied",
    "read_episode",
    "undo",
]

#: Patch names, in application order.
PATCHES = ("episode_names", "lean_episode")

_ACTIVE: dict[str, list[Replacement]] = {}


def _build(name: str) -> list[Replacement]:
    if name == "episode_names":
        from patches.episode_names import replacements
    elif name == "lean_episode":
        from patches.lean_episode import replacements
    else:
        raise PatchError(f"unknown patch {name!r}; choose among {', '.join(PATCHES)}")
    return replacements()


def _names(names) -> tuple[str, ...]:
    chosen = PATCHES if not names else tuple(names)
    unknown = [n for n in chosen if n not in PATCHES]
    if unknown:
        raise PatchError(f"unknown patch {unknown[0]!r}; choose among {', '.join(PATCHES)}")
    return chosen


def apply(*names: str) -> tuple[str, ...]:
    """Apply the named patches (default: all); already-applied ones are left as they are.

    Every check runs before anything is replaced, so a refused patch changes nothing.
    Returns the names of the patches applied by this call.
    """
    check_version()
    todo = [n for n in _names(names) if n not in _ACTIVE]
    built = {n: _build(n) for n in todo}  # checks signatures; raises before any change
    for n in todo:
        for r in built[n]:
            r.install()
        _ACTIVE[n] = built[n]
    return tuple(todo)


def undo(*names: str) -> tuple[str, ...]:
    """Restore the original grid2op objects of the named patches (default: all applied)."""
    todo = [n for n in reversed(_names(names)) if n in _ACTIVE]
    for n in todo:
        for r in reversed(_ACTIVE.pop(n)):
            r.restore()
    return tuple(todo)


def is_applied(name: str | None = None) -> bool:
    """Whether ``name`` (or any patch, if None) is currently applied."""
    return bool(_ACTIVE) if name is None else name in _ACTIVE


@contextmanager
def applied(*names: str) -> Iterator[None]:
    """``with applied(): ...`` applies the patches and undoes, on exit, those it applied."""
    mine = apply(*names)
    try:
        yield
    finally:
        undo(*mine)


def fork_context():
    """The ``fork`` multiprocessing context (workers inherit the patches); `PatchError` if the
    platform has none (Windows): run the Runner with ``nb_process=1`` there."""
    try:
        return multiprocessing.get_context("fork")
    except ValueError as exc:
        raise PatchError(
            "the fork start method is not available here: Runner worker processes would not "
            "inherit the patches; use nb_process=1"
        ) from exc
