"""Runner episode folders named ``<chronic>_<episode index>`` (thesis' ``aux_fun.py`` change).

grid2op names the folder of a saved episode after its chronic only
(``EpisodeData(name=env.chronics_handler.get_name())``), so ``runner.run(nb_episode=N)``
with N larger than the number of chronics overwrites earlier episodes. The wrapper around
``_aux_run_one_episode`` claims a fresh folder ``<chronic>_<indx>`` (``indx`` is the index
the Runner passes: the episode's position in ``run``, or ``episode_id[i]``), adding
``-1``, ``-2`` ... if it exists, with an atomic ``os.mkdir``; the chronics handler reports
that name to the episode writer during the call only. The Runner's results keep the real
chronic name.
"""

from __future__ import annotations

import functools
import inspect
import os

from patches._core import Replacement, expect

#: Leading parameters of grid2op 1.12's ``_aux_run_one_episode`` (1.10 stopped at
#: ``detailed_output``; the last three were added since, which is why copying the 1.10 file
#: over 1.12 crashes).
PARAMS = (
    "env",
    "agent",
    "logger",
    "indx",
    "path_save",
    "pbar",
    "env_seed",
    "agent_seed",
    "max_iter",
    "detailed_output",
    "use_compact_episode_data",
    "init_state",
    "reset_option",
)


def claim_folder(path_save: str, base: str) -> str:
    """Create ``path_save/base`` (or ``base-1``, ``base-2`` ...) atomically; return its name."""
    os.makedirs(path_save, exist_ok=True)
    name, k = base, 0
    while True:
        try:
            os.mkdir(os.path.join(path_save, name))
            return name
        except FileExistsError:
            k += 1
            name = f"{base}-{k}"


def _wrap(original):
    signature = inspect.signature(original)

    @functools.wraps(original)
    def _aux_run_one_episode(env, agent, logger, indx, path_save=None, *args, **kwargs):
        if path_save is None:
            return original(env, agent, logger, indx, path_save, *args, **kwargs)
        bound = signature.bind(env, agent, logger, indx, path_save, *args, **kwargs)
        compact = bool(bound.arguments.get("use_compact_episode_data", False))
        handler = env.chronics_handler
        real_get_name = handler.get_name
        state = {"name": None}

        def get_name():
            # the chronic is only known after reset, inside the call: claim on first use
            if state["name"] is None:
                base = f"{real_get_name()}_{indx}"
                # CompactEpisodeData writes files, not a folder: no folder to claim
                state["name"] = base if compact else claim_folder(os.path.abspath(path_save), base)
            return state["name"]

        handler.get_name = get_name
        try:
            res = original(env, agent, logger, indx, path_save, *args, **kwargs)
        finally:
            del handler.get_name  # back to the class method
        # results report the chronic, not the folder
        return (real_get_name(), *res[1:])

    _aux_run_one_episode.__patched_by__ = "patches.episode_names"
    return _aux_run_one_episode


def replacements() -> list[Replacement]:
    """Both bindings of the episode runner (sequential and worker paths), checked."""
    from grid2op.Runner import aux_fun, runner

    seq = expect(runner, "_aux_run_one_episode", PARAMS, "grid2op.Runner.runner")
    work = expect(aux_fun, "_aux_run_one_episode", PARAMS, "grid2op.Runner.aux_fun")
    expect(
        aux_fun,
        "_aux_one_process_parrallel",
        ("runner", "episode_this_process"),
        "grid2op.Runner.aux_fun",
    )
    if seq is not work:
        from patches._core import PatchError

        raise PatchError(
            "grid2op.Runner.runner and grid2op.Runner.aux_fun bind different episode runners "
            "(already patched by someone else?); patch not applied"
        )
    new = _wrap(work)
    return [
        Replacement(aux_fun, "_aux_run_one_episode", work, new),
        Replacement(runner, "_aux_run_one_episode", seq, new),
    ]
