"""The grid2op adapter of the factorization: collect (s, a, s') per substation, MI, blocks.

`clustering.power_grid.collect.collect` records transitions under the thesis' explorative
policy (thesis or simulate mode, parallel, resumable shards); `pipeline.run` goes from an env
to ``factorization.json``; ``python -m clustering.power_grid`` is the command line.
"""

from clustering.power_grid.collect import CollectSettings, Transitions, load_collection
from clustering.power_grid.pipeline import PipelineConfig, complete_assignment, run

__all__ = [
    "CollectSettings",
    "PipelineConfig",
    "Transitions",
    "complete_assignment",
    "load_collection",
    "run",
]
