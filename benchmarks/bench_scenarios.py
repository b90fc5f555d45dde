"""Benchmark of scenario generation (case14): wall and CPU time for 1000 x 2016 steps, baselines
measured in the same run, and do-nothing survival on generated vs source chronics.

    python -m benchmarks.bench_scenarios [--n 1000] [--steps 2016] [--replay 20] [--out runs/bench_scenarios]

Baselines (same run, per scenario, extrapolated to ``n``): the same generator with 1 worker,
with bz2 files, and a straightforward writer (pandas ``to_csv(compression="bz2")`` per file).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import time
from pathlib import Path

import numpy as np

SOURCE = "l2rpn_case14_sandbox"


def _cpu() -> float:
    own, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _timed(fn):
    t0, c0 = time.perf_counter(), _cpu()
    result = fn()
    return result, time.perf_counter() - t0, _cpu() - c0


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _pandas_bz2_baseline(folder: Path, n: int, steps: int) -> None:
    """What a direct implementation does: sample, then DataFrame.to_csv(bz2) for each file."""
    import pandas as pd

    from distributed_grid2op.envs import make_env, quiet_grid2op
    from distributed_grid2op.scenarios import InjectionModel, read_source

    with quiet_grid2op():
        env = make_env(SOURCE)
        model = InjectionModel().fit(read_source(env, SOURCE))
    for i in range(n):
        arrays = model.sample(steps, np.random.default_rng(i))
        sub = folder / f"{i:04d}"
        sub.mkdir(parents=True)
        for kind in ("load_p", "load_q", "prod_p", "prod_v"):
            names = model.load_names_ if kind.startswith("load") else model.gen_names_
            for suffix in ("", "_forecasted"):
                pd.DataFrame(arrays[kind + suffix], columns=names).to_csv(
                    sub / f"{kind}{suffix}.csv.bz2",
                    sep=";",
                    index=False,
                    float_format="%.1f",
                    compression="bz2",
                )


def _figure(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3))
    labels = [r["variant"] for r in rows]
    ax.barh(labels, [r["wall_s_per_1000"] for r in rows], color="C0", label="wall")
    ax.barh(labels, [r["cpu_s_per_1000"] for r in rows], color="C1", alpha=0.5, label="CPU")
    ax.axvline(120, color="k", ls="--", lw=1, label="target 120 s")
    ax.set_xlabel("seconds per 1000 scenarios x 2016 steps (case14)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> dict:
    """Run the benchmark; prints a table and writes ``results.json`` and a figure to ``--out``."""
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_scenarios", description=__doc__.splitlines()[0]
    )
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--steps", type=int, default=2016)
    p.add_argument(
        "--replay",
        type=int,
        default=20,
        help="generated scenarios replayed per thermal limit scale",
    )
    p.add_argument("--out", default="runs/bench_scenarios")
    p.add_argument("--figure", default="docs/figures/bench_scenarios.png")
    args = p.parse_args([] if argv is None else argv)

    from distributed_grid2op.envs import make_env, quiet_grid2op
    from distributed_grid2op.scenarios import generate, read_source, validate_env

    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    n, steps, small = args.n, args.steps, max(2, min(args.n, max(20, args.n // 10)))
    rows = []

    def add(variant, count, wall, cpu, folder=None):
        rows.append(
            {
                "variant": variant,
                "scenarios": count,
                "wall_s": round(wall, 2),
                "cpu_s": round(cpu, 2),
                "wall_s_per_1000": round(wall / count * 1000, 1),
                "cpu_s_per_1000": round(cpu / count * 1000, 1),
                "mb_per_1000": round(_du(folder) / count * 1000 / 1e6, 1) if folder else None,
            }
        )

    main_dir = out / "case14_gen_csv_2w"
    _, wall, cpu = _timed(
        lambda: generate(SOURCE, main_dir, n, steps, 0, workers=2, validate=False, progress=False)
    )
    add("csv, 2 workers (default)", n, wall, cpu, main_dir / "chronics")
    d = out / "case14_gen_csv_1w"
    _, wall, cpu = _timed(
        lambda: generate(SOURCE, d, small, steps, 0, workers=1, validate=False, progress=False)
    )
    add("csv, 1 worker", small, wall, cpu, d / "chronics")
    d = out / "case14_gen_bz2_2w"
    _, wall, cpu = _timed(
        lambda: generate(
            SOURCE, d, small, steps, 0, workers=2, validate=False, progress=False, fmt="bz2"
        )
    )
    add("bz2, 2 workers", small, wall, cpu, d / "chronics")
    d = out / "baseline_pandas_bz2"
    count = max(2, small // 4)
    _, wall, cpu = _timed(lambda: _pandas_bz2_baseline(d, count, steps))
    add("baseline: pandas to_csv bz2, 1 process", count, wall, cpu, d)
    base = rows[-1]["wall_s_per_1000"]
    for r in rows:
        r["speedup_vs_baseline"] = round(base / r["wall_s_per_1000"], 2)

    # validation (reported separately): statistics + do-nothing survival at 1.0 and 0.85
    with quiet_grid2op():
        env = make_env(SOURCE)
        data = read_source(env, SOURCE)
        env.close()
    summary, vwall, vcpu = _timed(
        lambda: validate_env(
            main_dir,
            data,
            n_replay=args.replay,
            thermal_limit_scales=(1.0, 0.85),
            workers=2,
            progress=False,
        )
    )
    results = {
        "n": n,
        "steps": steps,
        "timings": rows,
        "validation": summary,
        "validation_wall_s": round(vwall, 1),
        "validation_cpu_s": round(vcpu, 1),
    }
    (out / "results.json").write_text(json.dumps(results, indent=2, default=float) + "\n")
    _figure(rows, Path(args.figure))

    print(
        f"scenario generation, {SOURCE}, {steps} steps per scenario (times extrapolated to 1000 scenarios)"
    )
    print(
        f"{'variant':42s} {'n':>5s} {'wall s/1000':>12s} {'CPU s/1000':>11s} {'MB/1000':>8s} {'x baseline':>10s}"
    )
    for r in rows:
        print(
            f"{r['variant']:42s} {r['scenarios']:5d} {r['wall_s_per_1000']:12.1f} {r['cpu_s_per_1000']:11.1f} {r['mb_per_1000'] or 0:8.1f} {r['speedup_vs_baseline']:10.2f}"
        )
    print(f"validation: {vwall:.1f} s wall, {vcpu:.1f} s CPU")
    for k in (
        "hourly_mean_rel_error_loads",
        "hourly_std_ratio_loads_median",
        "acf1_source_mean",
        "acf1_generated_mean",
        "corr_abs_error_mean",
    ):
        print(f"  {k}: {summary[k]:.4f}")
    for scale, d in summary["survival"].items():
        g, gc = d["generated"], d["generated_first_source_length"]
        print(
            f"  do-nothing x{scale}: source {d['source']['mean_survived_fraction']:.1%} (n={d['source']['n']}), "
            f"generated {g['mean_survived_fraction']:.1%} (n={g['n']}, {steps} steps), first 575 steps {gc['mean_survived_fraction']:.1%}"
        )
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
