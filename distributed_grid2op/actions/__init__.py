"""Reduced topology action sets (``actions.json``): reduction, the file, a reduced greedy search.

- `distributed_grid2op.actions.file`: the ``actions.json`` contract (`write_action_file`,
  `load_action_file` -> `ActionFile`).
- `distributed_grid2op.actions.reduce`: ``python -m distributed_grid2op.actions`` (candidate
  two-bus splits scored on stressed states through the `Executor`).
- `distributed_grid2op.actions.search`: `greedy_search`, a budgeted search over a reduced set
  that looks near the overloaded lines first.
"""

from distributed_grid2op.actions.file import (
    FORMAT,
    ActionFile,
    grid_summary,
    load_action_file,
    write_action_file,
)

__all__ = ["FORMAT", "ActionFile", "grid_summary", "load_action_file", "write_action_file"]
