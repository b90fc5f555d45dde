"""``python -m distributed_grid2op.actions``: see `distributed_grid2op.actions.reduce.main`."""

from distributed_grid2op.actions.reduce import main

if __name__ == "__main__":
    from distributed_grid2op.cli import run

    raise SystemExit(run(main))
