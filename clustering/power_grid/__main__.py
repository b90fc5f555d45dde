"""``python -m clustering.power_grid``: find the clusters of lines and substations of a grid.

Defaults: the thesis' numbers and collection (seed 29, thesis policy with its terminal
transitions, up to 1000 episodes and 50 000 transitions per controllable substation,
k = N/20, quantile 0.7 for the thesis method's files) with a 5-shuffle null and spectral
co-clustering whose number of clusters maximises bipartite modularity. ``--thesis``
reproduces the thesis route: a single shuffle and quantile + connected components.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from clustering.power_grid.collect import MODES
from clustering.power_grid.pipeline import DEFAULT_ENV, METHODS, PipelineConfig
from clustering.power_grid.pipeline import run as run_pipeline
from distributed_grid2op.cli import (
    ArgumentParser,
    add_executor_arguments,
    executor_from_args,
    positive_float,
    positive_int,
    run,
    unit_float,
)

QUICK = {"n_episodes": 100, "n_samples": 2000, "n_permutations": 1}


def _k(text: str):
    """argparse type: an integer >= 1 or a fraction of N in (0, 1)."""
    try:
        value = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"must be an integer >= 1 or a fraction in (0, 1), got {text}"
        ) from exc
    if value.is_integer() and value >= 1:
        return int(value)
    if 0 < value < 1:
        return value
    raise argparse.ArgumentTypeError(f"must be an integer >= 1 or a fraction in (0, 1), got {text}")


def _quantile(text: str) -> float:
    value = unit_float(text)
    if value >= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="python -m clustering.power_grid", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--env",
        default=DEFAULT_ENV,
        help="bundled env name or env folder path (default %(default)s)",
    )
    p.add_argument(
        "--episodes", type=positive_int, help="max episodes per substation (default 1000)"
    )
    p.add_argument(
        "--samples", type=positive_int, help="transitions per substation (default 50000)"
    )
    p.add_argument(
        "--quantile",
        type=_quantile,
        action="append",
        help="column quantile of the thesis method, repeatable (default 0.7)",
    )
    p.add_argument(
        "--permutations", type=positive_int, help="shuffles in the MI null (default 5; thesis 1)"
    )
    p.add_argument(
        "--k", type=_k, help="KSG neighbours: integer, or fraction of N (default 0.05 = N/20)"
    )
    p.add_argument(
        "--seed", type=int, default=29, help="seed of episodes, agents and shuffles (default 29)"
    )
    add_executor_arguments(p, default_workers=None)  # --workers: collection workers, MI threads
    p.add_argument("--out", type=Path, help="output folder (default runs/power_grid/<env>)")
    p.add_argument(
        "--method",
        choices=METHODS,
        help="factorization method (default spectral; --thesis: components)",
    )
    p.add_argument("--mode", choices=MODES, help="collection mode (default thesis)")
    p.add_argument(
        "--quick",
        action="store_true",
        help="small settings for a fast look (100 episodes, 2000 samples, 1 shuffle)",
    )
    p.add_argument("--resume", action="store_true", help="continue a collection already in --out")
    p.add_argument(
        "--thesis",
        action="store_true",
        help="the thesis route exactly: 1 shuffle, quantile-only threshold + components",
    )
    p.add_argument(
        "--drop-terminal", action="store_true", help="drop terminal (game-over) transitions"
    )
    p.add_argument(
        "--thermal-limit-scale",
        type=positive_float,
        default=1.0,
        help="multiply every thermal limit (default 1.0)",
    )
    p.add_argument(
        "--max-steps",
        type=positive_int,
        help="steps per episode (default: chronic length; simulate mode: 100-step segments)",
    )
    p.add_argument(
        "--action-set",
        type=Path,
        help="a reduced action set (actions.json of python -m distributed_grid2op.actions): "
        "each substation's random topology is drawn from its actions; substations without "
        "any are not collected",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def config_from_args(args) -> PipelineConfig:
    cfg = PipelineConfig(
        env=args.env,
        seed=args.seed,
        resume=args.resume,
        thermal_limit_scale=args.thermal_limit_scale,
        progress=not args.no_progress,
    )
    if args.thesis:
        cfg.mode, cfg.method, cfg.n_permutations, cfg.label = "thesis", "components", 1, "thesis"
    if args.quick:
        for key, value in QUICK.items():
            setattr(cfg, key, value)
        cfg.label = f"{cfg.label}-quick"
    for attr, value in (
        ("n_episodes", args.episodes),
        ("n_samples", args.samples),
        ("n_permutations", args.permutations),
        ("k", args.k),
        ("method", args.method),
        ("mode", args.mode),
        ("max_steps", args.max_steps),
        ("action_set", args.action_set),
    ):
        if value is not None:
            setattr(cfg, attr, value)
    if args.quantile:
        cfg.quantiles = tuple(args.quantile)
    cfg.drop_terminal = bool(args.drop_terminal)
    name = Path(args.env).name if Path(args.env).is_dir() else args.env
    cfg.out = args.out if args.out is not None else Path("runs") / "power_grid" / name
    return cfg


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    cfg = config_from_args(args)
    cfg.validate()  # a user mistake is refused before any worker starts
    with executor_from_args(args) as executor:
        summary = run_pipeline(cfg, executor=executor)
    sizes = ", ".join(
        f"{len(c['substations'])} subs/{len(c['lines'])} lines" for c in summary["clusters"]
    )
    agree = summary["agreement"]
    extra = (
        f"; ARI vs thesis (subs) {agree['thesis']['ari_substations']:.2f}"
        if "thesis" in agree
        else ""
    )
    print(
        f"{len(summary['clusters'])} cluster(s) [{sizes}] by {summary['method']} ({summary['mode']} mode){extra}; "
        f"{summary['timings_s']['total']:.0f} s; outputs in {cfg.out}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main))
