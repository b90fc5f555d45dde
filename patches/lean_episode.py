"""Lean episode serialization (thesis' ``EpisodeData.py`` change) and its reader.

A saved episode normally holds 13 files plus 4 space descriptions per ``path_save``; the
thesis only reads observations and actions back. Patched, ``EpisodeData`` writes
``observations.npz`` (T + 1, obs size) and ``actions.npz`` (T, action size) per episode, in
grid2op's own array format (rows after a game over are NaN), and nothing else.

Two wrappers: ``EpisodeData.__init__`` is called with ``path_save=None`` (so no space
description is written) and then told where its episode folder is; ``EpisodeData.to_disk``
writes the two arrays only.
"""

from __future__ import annotations

import functools
import inspect
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from patches._core import Replacement, expect

INIT_PARAMS = ("self", "actions", "env_actions", "observations", "rewards", "disc_lines", "times")
FILES = ("observations.npz", "actions.npz")


def _wrap_init(original):
    signature = inspect.signature(original)

    @functools.wraps(original)
    def __init__(self, *args, **kwargs):
        bound = signature.bind(self, *args, **kwargs)
        path_save = bound.arguments.get("path_save")
        bound.arguments["path_save"] = None
        original(*bound.args, **bound.kwargs)
        if path_save is not None:
            self.agent_path = os.path.abspath(path_save)
            self.episode_path = os.path.join(self.agent_path, self.name)
            self.serialize = True
            os.makedirs(self.episode_path, exist_ok=True)

    __init__.__patched_by__ = "patches.lean_episode"
    return __init__


def _wrap_to_disk(original):
    @functools.wraps(original)
    def to_disk(self):
        if not self.serialize:
            return
        from grid2op.Episode.EpisodeData import EpisodeData

        self.actions.save(os.path.join(self.episode_path, EpisodeData.ACTIONS_FILE))
        self.observations.save(os.path.join(self.episode_path, EpisodeData.OBSERVATIONS_FILE))

    to_disk.__patched_by__ = "patches.lean_episode"
    return to_disk


def replacements() -> list[Replacement]:
    """``EpisodeData.__init__`` and ``EpisodeData.to_disk``, checked."""
    from grid2op.Episode.EpisodeData import EpisodeData

    init = expect(EpisodeData, "__init__", INIT_PARAMS, "grid2op.Episode.EpisodeData.EpisodeData")
    to_disk = expect(EpisodeData, "to_disk", ("self",), "grid2op.Episode.EpisodeData.EpisodeData")
    if "path_save" not in inspect.signature(init).parameters:
        from patches._core import PatchError

        raise PatchError(
            "grid2op changed: EpisodeData.__init__ has no path_save; patch not applied"
        )
    if EpisodeData.ACTIONS_FILE != FILES[1] or EpisodeData.OBSERVATIONS_FILE != FILES[0]:
        from patches._core import PatchError

        raise PatchError("grid2op changed the episode file names; patch not applied")
    return [
        Replacement(EpisodeData, "__init__", init, _wrap_init(init)),
        Replacement(EpisodeData, "to_disk", to_disk, _wrap_to_disk(to_disk)),
    ]


@dataclass
class LeanEpisode:
    """Observations (T + 1, obs size) and actions (T, action size) of one saved episode.

    Rows after a game over (grid2op fills them with NaN) are dropped; ``observation(i)``
    and ``action(i)`` rebuild grid2op objects with the env's spaces.
    """

    name: str
    observations: np.ndarray
    actions: np.ndarray
    env: object = None

    def observation(self, i: int):
        return self.env.observation_space.from_vect(self.observations[i], check_legit=False)

    def action(self, i: int):
        return self.env.action_space.from_vect(self.actions[i], check_legit=False)


def read_episode(path_save: str | os.PathLike, name: str, env=None) -> LeanEpisode:
    """Read observations and actions of episode ``name`` saved under ``path_save``.

    Works on lean and on full (unpatched) episodes: only the two array files are read.
    """
    folder = Path(path_save) / name
    try:
        with np.load(folder / FILES[0]) as z:
            obs = z["data"]
        with np.load(folder / FILES[1]) as z:
            act = z["data"]
    except (OSError, KeyError, ValueError) as exc:
        raise FileNotFoundError(f"no readable episode {name!r} in {path_save}: {exc}") from exc
    obs = obs[~np.isnan(obs).all(axis=1)]
    act = act[~np.isnan(act).all(axis=1)]
    return LeanEpisode(name, obs, act, env)
