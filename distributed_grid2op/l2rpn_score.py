"""Grid2op's own L2RPN 2023 score (`grid2op.utils.ScoreL2RPN2023`) for our agents.

The competition score of ``l2rpn_idf_2023`` per episode is
``0.6 * operational + 0.25 * assistant + 0.15 * renewables``:

- *operational* (-100..100): the episode's operational cost (`L2RPNSandBoxScore`, a blackout
  costs the remaining load at the highest marginal cost) interpolated between reference
  points that grid2op computes itself on the same scenarios and seeds: **do-nothing scores
  0**, do-nothing with line reconnection and no overflow disconnection 80 (when do-nothing
  does not finish), 80% of the losses 100, losing all the load -100;
- *assistant* (-300..100): trust in the alerts the agent raises before an attack-caused
  blackout (our agents raise none: 100 without blackout, lower after one);
- *renewables* (-100..100): use of the new renewable sources (100 without curtailment).

So a do-nothing agent that survives scores ``0.6 * 0 + 0.25 * 100 + 0.15 * 100 = 40``.

grid2op computes its references (do-nothing, and reconnection without overflow
disconnection) with its ``Runner`` and **writes them into the env folder**
(``_statistics_l2rpn_dn``, ``_statistics_l2rpn_no_overflow_reco``). So the score is always
computed on a copy (`prepare_copy`): the env folder's files (`scenarios.writer.copy_env_files`)
and only the scored chronics, in a folder named after the source and a hash of every
setting (grid2op caches classes by folder name, and its statistics record neither the
thermal limits nor the seeds). Without ``work_dir`` the copy lives in a temporary folder
removed afterwards; with one, a complete copy (marked by ``l2rpn_2023_copy.json``, written
after the references) is reused by the next call with the same settings, and an incomplete
one is rebuilt.

The grid2op ``Runner`` takes the env's thermal limits and parameters
(``env.get_params_for_runner``): the references and the agents play at the same thermal
limit scale as our evaluation, and a scaled score is a score *at that setting* (the
competition's is at scale 1.0). The score applies to envs with the 2023 competition's
alert feature (``l2rpn_idf_2023`` and scenario folders generated from it); anything else
is a `UserError`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from distributed_grid2op.envs import EnvSpec, quiet_grid2op, resolve_env
from distributed_grid2op.errors import UserError
from distributed_grid2op.execution import LOCAL, Executor
from distributed_grid2op.io import write_json
from distributed_grid2op.seeding import child_seeds
from distributed_grid2op.splits import scenario_names

#: the marker of a complete copy (its settings), written after the reference statistics
MARKER = "l2rpn_2023_copy.json"
#: the per-episode components of `grid2op.utils.ScoreL2RPN2023.get`, in its order
COMPONENTS = ("score", "operational", "renewables", "assistant")
FORMAT = 1


@dataclass(frozen=True)
class ScoreSettings:
    """Everything the reference statistics depend on (hashed into the copy's name)."""

    source: str  # resolved env name or absolute folder path
    scenarios: tuple[str, ...]  # chronic names, in the copy's (sorted) order
    seeds: tuple[int, ...]  # env and agent seed per scenario (same order)
    max_step: int  # -1: whole episodes
    backend: str = "lightsim"
    thermal_limit_scale: float = 1.0
    params: dict = field(default_factory=dict)

    def digest(self) -> str:
        import grid2op

        text = json.dumps({**self.__dict__, "grid2op": grid2op.__version__, "format": FORMAT},
                          sort_keys=True, default=repr)  # fmt: skip
        return hashlib.sha1(text.encode()).hexdigest()[:12]


def check_applies(env, name: str = "") -> None:
    """`UserError` unless ``env`` has what the L2RPN 2023 score measures (alerts, renewables)."""
    where = name or Path(env.get_path_env()).name
    if int(getattr(env, "dim_alerts", 0)) <= 0:
        raise UserError(
            f"the L2RPN 2023 score needs the 2023 competition's alert feature "
            f"(l2rpn_idf_2023 or scenario folders generated from it); {where} has no alert lines"
        )
    if not np.any(env.gen_renewable):
        raise UserError(f"the L2RPN 2023 score needs renewable generators; {where} has none")


def _copy_name(source: str, digest: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(source).name) or "env"
    return f"{stem}_l2rpn2023_{digest}"


def prepare_copy(settings: ScoreSettings, work_dir: str | Path) -> Path:
    """The env copy for ``settings`` under ``work_dir`` (reused if complete, else rebuilt):
    the source folder's files and only the scored chronics. Nothing is written to the source."""
    from distributed_grid2op.scenarios.writer import copy_env_files

    src = Path(_source_dir(settings.source))
    dest = Path(work_dir) / _copy_name(settings.source, settings.digest())
    if (dest / MARKER).is_file():
        return dest
    shutil.rmtree(dest, ignore_errors=True)  # an incomplete copy (interrupted): start over
    dest.mkdir(parents=True)
    copy_env_files(src, dest)
    chronics = src / "chronics"
    for name in settings.scenarios:
        shutil.copytree(chronics / name, dest / "chronics" / name,
                        ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    return dest


def _source_dir(source: str) -> str:
    target, bundled = resolve_env(source)
    if not bundled:
        return target
    with quiet_grid2op():
        env = EnvSpec(source).make()
    try:
        return env.get_path_env()
    finally:
        env.close()


@dataclass(frozen=True)
class _ScoreTask:
    name: str
    factory: Callable
    spec: EnvSpec  # made from the copy
    seeds: tuple[int, ...]
    max_step: int


def _scorer(env, seeds: Sequence[int], max_step: int):
    """grid2op's scorer on ``env`` (computes the references into its folder if missing)."""
    from grid2op.utils import ScoreL2RPN2023

    n = len(seeds)
    return ScoreL2RPN2023(env, nb_scenario=n, env_seeds=list(seeds), agent_seeds=list(seeds),
                          max_step=max_step, nb_process_stats=1)  # fmt: skip


def _score_agent(ctx, task: _ScoreTask, shared=None) -> dict:
    """Score one agent on the copy (a task of the executor; reads the references only)."""
    with quiet_grid2op():
        env = ctx.env(task.spec)
        scorer = _scorer(env, task.seeds, task.max_step)
        agent = task.factory(env)
        scores, survived, total = scorer.get(agent, nb_process=1)
        meta = scorer.stat_dn.get_metadata()
        played = [meta[str(i)]["scenario_name"] for i in range(len(task.seeds))]
    parts = np.asarray(scores, dtype=float).reshape(len(survived), len(COMPONENTS))
    return {
        "episodes": {c: parts[:, j].tolist() for j, c in enumerate(COMPONENTS)},
        "survived_steps": [int(s) for s in survived],
        "max_steps": [int(t) for t in total],
        "scenario_names": played,
    }


@contextmanager
def _work_dir(work_dir):
    if work_dir is not None:
        Path(work_dir).mkdir(parents=True, exist_ok=True)
        yield Path(work_dir)
        return
    with tempfile.TemporaryDirectory(prefix="l2rpn2023_") as tmp:
        yield Path(tmp)


def l2rpn_2023_score(
    env: EnvSpec | str | os.PathLike,
    agents: Mapping[str, Callable],
    *,
    scenarios: Sequence[int] | None = None,
    nb_scenario: int | None = None,
    seeds: Sequence[int] | None = None,
    seed: int = 0,
    max_step: int | None = None,
    workers: int = 1,
    work_dir: str | Path | None = None,
) -> dict[str, dict]:
    """Grid2op's L2RPN 2023 score of each agent, on a copy of the env folder.

    Args:
        env: an `EnvSpec` (its backend, thermal limit scale and parameters are used) or an
            env name / folder path (lightsim, scale 1.0, the env's parameters).
        agents: run name -> ``factory(env) -> grid2op BaseAgent`` (picklable when
            ``workers > 1``), e.g. ``functools.partial(evaluation.make_agent, run_spec)``.
        scenarios: chronic indices of the source env (default: the first ``nb_scenario``,
            or all); a repeated one counts once.
        nb_scenario: how many scenarios when ``scenarios`` is not given.
        seeds: env and agent seed per scenario (default: ``child_seeds(seed, n)``).
        max_step: cut episodes to this many steps (None: whole episodes).
        workers: local processes scoring agents in parallel (the references: one process).
        work_dir: keep (and reuse) the copy under this folder; None: a temporary copy.

    Returns:
        ``{name: {"score", "operational", "renewables", "assistant": means over episodes,
        "episodes": {component: per-episode list}, "scenario_names", "seeds",
        "survived_steps", "max_steps"}}`` in the order of ``agents``. Same settings, same
        numbers.
    """
    spec = env if isinstance(env, EnvSpec) else EnvSpec(os.fspath(env))
    with quiet_grid2op():
        source_env = spec.make()
    try:
        check_applies(source_env, spec.name)
        names = scenario_names(source_env)
    finally:
        source_env.close()
    if scenarios is None:
        n = len(names) if nb_scenario is None else int(nb_scenario)
        if not 0 < n <= len(names):
            raise UserError(f"nb_scenario must be in 1..{len(names)}, got {n}")
        scenarios = list(range(n))
    ids = list(dict.fromkeys(int(i) for i in scenarios))
    bad = [i for i in ids if not 0 <= i < len(names)]
    if bad or not ids:
        raise UserError(f"scenario indices {bad or ids} are not in 0..{len(names) - 1}")
    seeds = child_seeds(seed, len(ids)) if seeds is None else [int(s) for s in seeds]
    if len(seeds) != len(ids):
        raise UserError(f"{len(seeds)} seeds for {len(ids)} scenarios")
    if max_step is not None and int(max_step) <= 0:
        raise UserError(f"max_step must be positive, got {max_step}")
    order = sorted(range(len(ids)), key=lambda k: names[ids[k]])  # the copy's chronic order
    settings = ScoreSettings(
        source=resolve_env(spec.name)[0], scenarios=tuple(names[ids[k]] for k in order),
        seeds=tuple(seeds[k] for k in order), max_step=-1 if max_step is None else int(max_step),
        backend=spec.backend, thermal_limit_scale=float(spec.thermal_limit_scale),
        params=dict(spec.params),
    )  # fmt: skip
    with _work_dir(work_dir) as root:
        copy = prepare_copy(settings, root)
        copy_spec = replace(spec, name=str(copy))
        if not (copy / MARKER).is_file():
            with quiet_grid2op():  # the references, written into the copy (driver only)
                ref_env = copy_spec.make()
                try:
                    _scorer(ref_env, settings.seeds, settings.max_step)
                finally:
                    ref_env.close()
            write_json(copy / MARKER, {"format": FORMAT, **settings.__dict__})
        tasks = [_ScoreTask(name, f, copy_spec, settings.seeds, settings.max_step)
                 for name, f in agents.items()]  # fmt: skip
        with Executor(max(1, min(int(workers), len(tasks)))) as ex:
            results = ex.map(_score_agent, tasks)
        stale = LOCAL.envs.pop(copy_spec.key(), None)  # serial runs: the copy may go now
        if stale is not None:
            stale.close()
    out = {}
    for task, res in zip(tasks, results, strict=True):
        if res["scenario_names"] != list(settings.scenarios):  # the Runner plays them in order
            raise RuntimeError(f"grid2op scored {res['scenario_names']}, not {settings.scenarios}")
        ep = res["episodes"]
        out[task.name] = {
            **{c: float(np.mean(ep[c])) for c in COMPONENTS},
            "episodes": ep,
            "scenario_names": res["scenario_names"],
            "seeds": list(settings.seeds),
            "survived_steps": res["survived_steps"],
            "max_steps": res["max_steps"],
        }
    return out
