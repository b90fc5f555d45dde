from distributed_grid2op.cli import run
from experiments.reproduce import main

raise SystemExit(run(main))
