"""Offline scenario generation: new grid2op chronics from distributions fitted on a source env.

``generate(source, out_dir, n_scenarios, n_steps, seed)`` fits an `InjectionModel` (hourly
profiles, per-hour marginals chosen among scipy.stats families, Gaussian copula AR(1) for
temporal and cross correlation, dispatch balanced to load + losses) on the chronics of a
bundled test env or env folder and writes a grid2op env folder that
``distributed_grid2op.envs.make_env(out_dir)`` loads, with ``splits.json``,
``generation.json`` and a validation report. CLI: ``python -m distributed_grid2op.scenarios``.
"""

from distributed_grid2op.scenarios.data import SourceData, read_source
from distributed_grid2op.scenarios.generator import generate
from distributed_grid2op.scenarios.model import FAMILIES, InjectionModel
from distributed_grid2op.scenarios.validate import replay_do_nothing, validate_env

__all__ = [
    "FAMILIES",
    "InjectionModel",
    "SourceData",
    "generate",
    "read_source",
    "replay_do_nothing",
    "validate_env",
]
