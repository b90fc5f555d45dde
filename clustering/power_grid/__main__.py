"""``python -m clustering.power_grid``: find the clusters of lines and substations of a grid.

Defaults on grids up to 30 substations (case5, case14): the thesis' numbers and collection
(seed 29, thesis policy with its terminal transitions, up to 1000 episodes and 50 000
transitions per controllable substation, k = N/20, quantile 0.7 for the thesis method's files)
with a 5-shuffle null and spectral co-clustering whose number of clusters maximises bipartite
modularity. On larger grids (36-, 118-bus): sensitivity mode (1000 transitions per
substation, 8 random topologies simulated per visited state next to a do-nothing reference)
and the ``profiles`` method (average-linkage clustering of each substation's log effect profile over the
lines). ``--thesis`` reproduces the thesis route: a single shuffle and quantile + connected
components.

Continuous control: ``--actions topology,redispatch,curtailment,storage`` (any subset the env
supports) also collects one column per dispatchable generator, renewable generator and
storage unit (its applied redispatch, curtailment or storage power), and
``factorization.json`` (format 2) then gives every cluster its generators and storage units.
Default: topology alone when the env has set-bus actions (the outputs of topology runs are
unchanged), else every continuous kind it supports (lines, substations and units are then
clustered jointly).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
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
from distributed_grid2op.config import Config, option

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


def _actions(text) -> tuple[str, ...]:
    """``topology,redispatch`` -> a tuple of names (checked by `PipelineConfig.validate`)."""
    items = text.split(",") if isinstance(text, str) else list(text)
    return tuple(dict.fromkeys(str(t).strip() for t in items if str(t).strip()))


def _quantile(text: str) -> float:
    value = unit_float(text)
    if value >= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value


@dataclass
class FactorizeConfig(Config):
    """Every option of ``python -m clustering.power_grid`` (and of `factorize`); unset numbers
    take the defaults of `PipelineConfig` or of the ``--quick`` / ``--thesis`` presets."""

    env: str = option(DEFAULT_ENV, "bundled env name or env folder path")
    episodes: int | None = option(None, "max episodes per substation (default 1000)",
                                  parse=positive_int)  # fmt: skip
    samples: int | None = option(None, "transitions per substation (default 50000; sensitivity "
                                 "mode 1000)", parse=positive_int)  # fmt: skip
    quantile: list | None = option(None, "column quantile of the thesis method, repeatable "
                                   "(default 0.7)", parse=_quantile, append=True)  # fmt: skip
    permutations: int | None = option(None, "shuffles in the MI null (default 5; thesis 1; "
                                      "sensitivity mode 1)",
                                      parse=positive_int)  # fmt: skip
    k: float | None = option(None, "KSG neighbours: integer, or fraction of N (default 0.05 = "
                             "N/20)", parse=_k)  # fmt: skip
    seed: int = option(29, "seed of episodes, agents and shuffles", parse=int)
    out: str | None = option(None, "output folder (default runs/power_grid/<env>)", results=False)
    method: str | None = option(None, "factorization method (default auto: profiles in "
                                "sensitivity mode, else spectral; --thesis: components)",
                                choices=METHODS)  # fmt: skip
    mode: str | None = option(None, "collection mode (default auto: thesis up to 30 "
                              "substations, sensitivity above)", choices=("auto", *MODES))  # fmt: skip
    n_clusters: int | None = option(None, "number of clusters (default: chosen by the method)",
                                    parse=positive_int)  # fmt: skip
    actions_per_state: int | None = option(None, "random topologies simulated per visited state "
                                           "(simulate/sensitivity modes; default 1 / 8)",
                                           parse=positive_int)  # fmt: skip
    stop_tolerance: float | None = option(None, "sensitivity mode: stop collecting a substation "
                                          "when its effect column changes by less than this "
                                          "(relative) between successive shards (default: off, "
                                          "collect --samples)",
                                          parse=positive_float)  # fmt: skip
    actions: tuple | None = option(None, "what the explorative policy acts on, comma-separated: "
                                   "topology, redispatch, curtailment, storage (default: "
                                   "topology when the env has set-bus actions, else the "
                                   "continuous kinds it supports)", parse=_actions)  # fmt: skip
    quick: bool = option(False, "small settings for a fast look (100 episodes, 2000 samples, "
                         "1 shuffle)")  # fmt: skip
    resume: bool = option(False, "continue a collection already in --out", results=False)
    thesis: bool = option(False, "the thesis route exactly: 1 shuffle, quantile-only "
                          "threshold + components")  # fmt: skip
    drop_terminal: bool = option(False, "drop terminal (game-over) transitions")
    thermal_limit_scale: float = option(1.0, "multiply every thermal limit", parse=positive_float)
    max_steps: int | None = option(None, "steps per episode (default: chronic length; simulate "
                                   "mode: 100-step segments)", parse=positive_int)  # fmt: skip
    action_set: str | None = option(None, "a reduced action set (actions.json of python -m "
                                    "distributed_grid2op.actions): each substation's random "
                                    "topology is drawn from its actions; substations without "
                                    "any are not collected")  # fmt: skip
    workers: int | None = option(None, "parallel workers", cli=False, results=False)
    ray: str | None = option(None, "Ray address", cli=False, results=False)
    progress: bool = option(True, "progress bars", results=False)

    def validate(self):
        """The pipeline's own checks (quantiles, k vs samples, ...), before anything runs."""
        self.to_pipeline().validate()
        return self

    def to_pipeline(self) -> PipelineConfig:
        """The `PipelineConfig` of these options (presets first, then explicit values)."""
        cfg = PipelineConfig(env=self.env, seed=self.seed, resume=self.resume,
                             thermal_limit_scale=self.thermal_limit_scale,
                             progress=self.progress)  # fmt: skip
        if self.thesis:
            cfg.mode, cfg.method, cfg.n_permutations, cfg.label = (
                "thesis",
                "components",
                1,
                "thesis",
            )
        if self.quick:
            for key, value in QUICK.items():
                setattr(cfg, key, value)
            cfg.label = f"{cfg.label}-quick"
        for attr, value in (("n_episodes", self.episodes), ("n_samples", self.samples),
                            ("n_permutations", self.permutations), ("k", self.k),
                            ("method", self.method), ("mode", self.mode),
                            ("n_clusters", self.n_clusters),
                            ("actions_per_state", self.actions_per_state),
                            ("stop_tolerance", self.stop_tolerance),
                            ("actions", self.actions),
                            ("max_steps", self.max_steps),
                            ("action_set", None if self.action_set is None else Path(self.action_set))):  # fmt: skip
            if value is not None:
                setattr(cfg, attr, value)
        if self.quantile:
            cfg.quantiles = tuple(self.quantile)
        cfg.drop_terminal = bool(self.drop_terminal)
        name = Path(self.env).name if Path(self.env).is_dir() else self.env
        cfg.out = Path(self.out) if self.out is not None else Path("runs") / "power_grid" / name
        if self.workers is not None:
            cfg.workers = self.workers
        return cfg


def factorize(config: FactorizeConfig, *, executor=None) -> dict:
    """Collect, estimate MI and factorize as ``config`` says; the summary (the command's
    Python face). A user mistake is refused before any worker starts."""
    from distributed_grid2op.execution import executor_for

    cfg = config.to_pipeline()
    cfg.validate()
    own = executor is None
    if own:
        executor = executor_for(config.workers, config.ray)
    try:
        return run_pipeline(cfg, executor=executor)
    finally:
        if own:
            executor.close()


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="python -m clustering.power_grid", description=__doc__.split("\n\n")[0])
    FactorizeConfig.add_arguments(p)
    add_executor_arguments(p, default_workers=None)  # --workers: collection workers, MI threads
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    config = FactorizeConfig.from_args(args)  # a user mistake is refused before any worker
    with executor_from_args(args) as executor:
        summary = factorize(config, executor=executor)
    sizes = ", ".join(
        f"{len(c['substations'])} subs/{len(c['lines'])} lines"
        + (
            f"/{len(c['generators'])} gens/{len(c['storages'])} storages"
            if "generators" in c
            else ""
        )  # fmt: skip
        for c in summary["clusters"]
    )
    agree = summary["agreement"]
    extra = (
        f"; ARI vs thesis (subs) {agree['thesis']['ari_substations']:.2f}"
        if "thesis" in agree
        else ""
    )
    if summary.get("areas"):
        extra += f"; ARI vs operator areas {summary['areas']['method']['ari']:.2f}"
    print(
        f"{len(summary['clusters'])} cluster(s) [{sizes}] by {summary['method']} ({summary['mode']} mode){extra}; "
        f"{summary['timings_s']['total']:.0f} s; outputs in {config.to_pipeline().out}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main))
