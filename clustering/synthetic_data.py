"""Factored MDPs with a known block structure, and the recovery experiment behind the method.

A block is (state variables, action variables): the next value of a state variable depends
only on its own block. States are drawn uniformly at random at every step and actions by a
uniform random policy (an exploratory data collection), so (s, a, s') datasets of any size
are cheap and i.i.d.

- `CopyMDP` (the thesis' "copy a related variable" environment): continuous states in
  [0, 1); each action variable switches a few state variables of its block (consecutive
  actions overlap by one variable, so the block is connected). A switched variable copies
  the next variable of its block, otherwise it keeps half its value (so that the action
  changes its distribution, not only its dependence on the state); plus Gaussian noise.
- `RandomFactoredMDP`: discrete states; each next state variable is drawn from a random
  conditional probability table (Dirichlet) given its own value and all its block's actions.

``python -m clustering.synthetic_data --out DIR`` computes MI (next state x action), its
permutation null, factorizes over a range of thresholds and writes the recovery table,
``factorization.json`` and figures for the thesis example and a larger one.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from clustering._atomic import atomic_path

__all__ = ["CopyMDP", "RandomFactoredMDP", "make_blocks", "run_experiment", "main"]

THESIS_BLOCKS = [([0, 2, 4], [0, 1]), ([1, 3], [2])]


def _check_blocks(blocks, n_state: int, n_action: int):
    s = sorted(i for b in blocks for i in b[0])
    a = sorted(i for b in blocks for i in b[1])
    if s != list(range(n_state)) or a != list(range(n_action)):
        raise ValueError("blocks must partition the state and the action variables")
    if any(not b[1] for b in blocks):
        raise ValueError("every block needs at least one action variable")
    return [(sorted(map(int, b[0])), sorted(map(int, b[1]))) for b in blocks]


def make_blocks(n_state: int, n_action: int, n_blocks: int, seed: int = 0):
    """Random partition into ``n_blocks`` blocks of near-equal size (>= 1 action and >= 2
    states each), variables assigned by a seeded permutation."""
    if n_blocks < 1 or n_action < n_blocks or n_state < 2 * n_blocks:
        raise ValueError("need n_action >= n_blocks and n_state >= 2 * n_blocks")
    rng = np.random.default_rng(seed)
    ps, pa = rng.permutation(n_state), rng.permutation(n_action)
    return [
        (sorted(ps[b::n_blocks].tolist()), sorted(pa[b::n_blocks].tolist()))
        for b in range(n_blocks)
    ]


def _switches(states, actions):
    """Which states each action of a block switches: overlapping contiguous spans."""
    p, q = len(states), len(actions)
    out = {}
    for j, a in enumerate(actions):
        lo = math.floor(j * (p - 1) / q)
        hi = math.ceil((j + 1) * (p - 1) / q)
        out[a] = [states[i] for i in range(lo, max(hi, lo) + 1)]
    return out


@dataclass
class _Base:
    n_state: int
    n_action: int
    blocks: list = field(default_factory=list)

    def __post_init__(self):
        self.blocks = _check_blocks(self.blocks, self.n_state, self.n_action)

    @property
    def state_names(self):
        return [f"s{i}" for i in range(self.n_state)]

    @property
    def action_names(self):
        return [f"a{i}" for i in range(self.n_action)]

    def reference(self):
        """True (row_groups, col_groups) of the next-state x action MI matrix."""
        return [b[0] for b in self.blocks], [b[1] for b in self.blocks]


@dataclass
class CopyMDP(_Base):
    """Thesis environment: a switched state variable copies the next one of its block."""

    n_action_values: int = 2
    noise: float = 0.05
    decay: float = 0.5

    def sample(self, n_steps: int, seed: int = 0) -> dict:
        """``n_steps`` transitions: arrays state (N, n_state), action (N, n_action),
        next_state (N, n_state); action value 0 = off, anything else switches."""
        rng = np.random.default_rng(seed)
        s = rng.random((n_steps, self.n_state))
        a = rng.integers(0, self.n_action_values, (n_steps, self.n_action))
        nxt = s.copy()
        for states, actions in self.blocks:
            on = np.zeros((n_steps, self.n_state), dtype=bool)
            for act, sw in _switches(states, actions).items():
                on[:, sw] |= a[:, [act]] != 0
            for pos, i in enumerate(states):
                nxt_src = states[(pos + 1) % len(states)]
                copied = s[:, nxt_src] if len(states) > 1 else (s[:, i] + 0.5) % 1.0
                nxt[:, i] = np.where(on[:, i], copied, self.decay * s[:, i])
        nxt += self.noise * rng.standard_normal(nxt.shape)
        return {"state": s, "action": a.astype(np.float64), "next_state": nxt}


@dataclass
class RandomFactoredMDP(_Base):
    """Discrete states; P(s'_i | s_i, actions of i's block) random Dirichlet tables."""

    n_values: int = 2
    n_action_values: int = 2
    concentration: float = 1.0
    table_seed: int = 0

    def __post_init__(self):
        super().__post_init__()
        rng = np.random.default_rng(self.table_seed)
        self.tables = {}
        for states, actions in self.blocks:
            n_cfg = self.n_values * self.n_action_values ** len(actions)
            for i in states:
                self.tables[i] = rng.dirichlet(
                    np.full(self.n_values, self.concentration), size=n_cfg
                )

    def sample(self, n_steps: int, seed: int = 0) -> dict:
        """``n_steps`` transitions (same arrays as `CopyMDP.sample`, integer-valued)."""
        rng = np.random.default_rng(seed)
        s = rng.integers(0, self.n_values, (n_steps, self.n_state))
        a = rng.integers(0, self.n_action_values, (n_steps, self.n_action))
        nxt = np.empty_like(s)
        for states, actions in self.blocks:
            cfg = np.zeros(n_steps, dtype=np.int64)
            for act in actions:
                cfg = cfg * self.n_action_values + a[:, act]
            for i in states:
                probs = self.tables[i][cfg * self.n_values + s[:, i]]
                u = rng.random(n_steps)[:, None]
                nxt[:, i] = (u > np.cumsum(probs, axis=1)).sum(axis=1).clip(max=self.n_values - 1)
        return {
            "state": s.astype(np.float64),
            "action": a.astype(np.float64),
            "next_state": nxt.astype(np.float64),
        }


# --------------------------------------------------------------------------- experiment


def _write_text(path: Path, text: str):
    """Atomic write: temp file in the same folder, then rename."""
    with atomic_path(path) as tmp, open(tmp, "w") as fh:
        fh.write(text)


def _save_npz(path: Path, **arrays):
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, **arrays)


def _mi(env, settings: dict, folder: Path, n_jobs: int, progress: bool):
    """MI matrix and null for one environment; reused from ``mi.npz`` if settings match."""
    from clustering.mutual_info import MutualInformation

    cache = folder / "mi.npz"
    key = json.dumps(settings, sort_keys=True)
    if cache.exists():
        with np.load(cache) as z:
            if str(z["settings"]) == key:
                return {
                    name: z[name] for name in ("mi", "null_mean", "null_upper", "unbiased")
                }, 0.0
    data = env.sample(settings["steps"], seed=settings["seed"])
    t0 = time.perf_counter()
    est = MutualInformation(
        k=settings["k"],
        n_permutations=settings["n_permutations"],
        seed=settings["seed"],
        n_jobs=n_jobs,
        progress=progress,
    ).fit(data["next_state"], data["action"])
    seconds = time.perf_counter() - t0
    out = {
        "mi": est.mi_,
        "null_mean": est.null_mean_,
        "null_upper": est.null_upper_,
        "unbiased": est.unbiased_,
    }
    _save_npz(cache, settings=np.array(key), **out)
    return out, seconds


def run_experiment(
    name,
    env,
    out: Path,
    steps: int,
    k=0.05,
    n_permutations=5,
    seed=0,
    n_jobs=1,
    progress=False,
    quantiles=None,
) -> dict:
    """MI -> factorizations -> recovery table, factorization.json and figures in ``out/name``."""
    from clustering.factorization import block_diagonalize
    from clustering.plots import plot_binarized, plot_blocks, plot_mi_heatmap

    folder = Path(out) / name
    settings = {
        "env": type(env).__name__,
        "blocks": env.blocks,
        "steps": steps,
        "k": k,
        "n_permutations": n_permutations,
        "seed": seed,
    }
    mats, seconds = _mi(env, settings, folder, n_jobs, progress)
    m = mats["unbiased"]
    ref_rows, ref_cols = env.reference()
    quantiles = np.round(np.arange(0.5, 0.995, 0.01), 2) if quantiles is None else quantiles
    rows = []

    def add(label, param, fac):
        sc = fac.score(ref_rows, ref_cols)
        rows.append(
            {
                "method": label,
                "param": param,
                "blocks": fac.n_blocks,
                "proper_blocks": sum(1 for r, c in zip(fac.row_groups, fac.col_groups) if r and c),
                **sc,
            }
        )
        return fac

    for q in quantiles:
        add("components", f"quantile={q:.2f}", block_diagonalize(m, quantile=float(q)))
    auto = block_diagonalize(m, method="auto-threshold")
    add("auto-threshold", f"scan=quantile -> {auto.params['quantile']:.2f}", auto)
    auto_g = block_diagonalize(m, method="auto-threshold", scan="global")
    add("auto-threshold", f"scan=global -> {auto_g.params['threshold']:.4g}", auto_g)
    add(
        "threshold",
        "null upper",
        block_diagonalize(mats["mi"], method="threshold", threshold=mats["null_upper"]),
    )
    add("spectral", "n=eigengap", block_diagonalize(m, method="spectral", random_state=seed))
    add(
        "spectral",
        f"n={len(env.blocks)} (true)",
        block_diagonalize(m, method="spectral", n_clusters=len(env.blocks), random_state=seed),
    )

    header = "| method | parameter | blocks | with rows+cols | ARI rows | ARI cols | consensus |\n|---|---|---|---|---|---|---|\n"
    table = header + "".join(
        f"| {r['method']} | {r['param']} | {r['blocks']} | {r['proper_blocks']} | {r['ari_rows']:.3f} | "
        f"{r['ari_cols']:.3f} | {r['consensus']:.3f} |\n"
        for r in rows
    )
    _write_text(folder / "recovery.md", table)
    _write_text(folder / "recovery.json", json.dumps(rows, indent=1) + "\n")
    _write_text(
        folder / "factorization.json",
        auto.to_json(env=f"synthetic-{name}", row_key="state", col_key="action"),
    )
    rn, cn = env.state_names, env.action_names
    plot_mi_heatmap(m, folder / "mi_heatmap.png", rn, cn, title=f"{name}: MI - null mean (nats)")
    plot_binarized(
        auto.binary,
        folder / "binarized.png",
        rn,
        cn,
        title=f"{name}: binarized at quantile {auto.params['quantile']:.2f}",
    )
    plot_blocks(
        m,
        auto,
        folder / "blocks.png",
        rn,
        cn,
        title=f"{name}: {auto.n_blocks} blocks (auto-threshold)",
    )
    exact = [
        r["param"]
        for r in rows
        if r["method"] == "components" and r["ari_rows"] == 1.0 and r["ari_cols"] == 1.0
    ]
    summary = {
        "name": name,
        "steps": steps,
        "k": k,
        "n_permutations": n_permutations,
        "seed": seed,
        "mi_seconds": round(seconds, 2),
        "true_blocks": env.blocks,
        "exact_quantiles": exact,
        "auto": rows[len(quantiles)],
        "auto_global": rows[len(quantiles) + 1],
        "auto_global_threshold": auto_g.params["threshold"],
        "table": table,
    }
    _write_text(folder / "summary.json", json.dumps(summary, indent=1, default=str) + "\n")
    return summary


# --------------------------------------------------------------------------- CLI


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line ``error: ...`` and exit code 2 (no usage dump)."""

    def error(self, message):
        self.exit(2, f"error: {self.prog}: {message}\n")


def _positive_int(text):
    v = int(text)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return v


def _k(text):
    v = float(text)
    if v >= 1 and v == int(v):
        return int(v)
    if 0 < v < 1:
        return v
    raise argparse.ArgumentTypeError(f"must be an integer >= 1 or a fraction in (0, 1), got {text}")


def _large(text):
    try:
        ns, na, nb = (int(v) for v in text.lower().split("x"))
        make_blocks(ns, na, nb)
    except ValueError as exc:
        msg = str(exc) if "need" in str(exc) else "expected STATESxACTIONSxBLOCKS, e.g. 30x10x4"
        raise argparse.ArgumentTypeError(msg) from None
    return ns, na, nb


def _parser():
    p = _Parser(
        prog="python -m clustering.synthetic_data",
        description="Recover the known blocks of synthetic factored MDPs from MI.",
    )
    p.add_argument("--out", required=True, help="output folder (created; reruns reuse mi.npz)")
    p.add_argument(
        "--steps", type=_positive_int, default=100_000, help="transitions, thesis example"
    )
    p.add_argument(
        "--large-steps", type=_positive_int, default=100_000, help="transitions, large example"
    )
    p.add_argument(
        "--large", type=_large, default="30x10x4", help="large example: STATESxACTIONSxBLOCKS"
    )
    p.add_argument(
        "--k", type=_k, default=0.05, help="neighbours: int, or fraction of N (thesis 0.05)"
    )
    p.add_argument("--n-permutations", type=_positive_int, default=5, help="permutation null size")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-jobs", type=int, default=-1, help="threads over pairs (-1 = all cores)")
    p.add_argument("--only", choices=["thesis", "large"], help="run one experiment")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    ns, na, nb = args.large
    large = RandomFactoredMDP(ns, na, make_blocks(ns, na, nb, seed=args.seed), table_seed=args.seed)
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        print(f"error: output folder {out} is not writable ({exc.strerror})", file=sys.stderr)
        return 2
    experiments = [
        ("thesis", CopyMDP(5, 3, THESIS_BLOCKS), args.steps),
        ("large", large, args.large_steps),
    ]
    for name, env, steps in experiments:
        if args.only and name != args.only:
            continue
        if isinstance(args.k, int) and args.k >= steps:
            print(
                f"error: --k {args.k} must be smaller than the number of steps ({steps})",
                file=sys.stderr,
            )
            return 2
        s = run_experiment(
            name,
            env,
            out,
            steps,
            k=args.k,
            n_permutations=args.n_permutations,
            seed=args.seed,
            n_jobs=args.n_jobs,
            progress=not args.no_progress,
        )
        auto = s["auto"]
        print(
            f"\n## {name}: {env.n_state} state x {env.n_action} action variables, {len(env.blocks)} blocks, "
            f"{steps} steps (MI {s['mi_seconds']} s)"
        )
        print(f"exact recovery (ARI 1.0) at quantiles: {', '.join(s['exact_quantiles']) or 'none'}")
        print(
            f"auto-threshold: {auto['param']} -> {auto['blocks']} blocks, ARI rows {auto['ari_rows']:.3f}, "
            f"cols {auto['ari_cols']:.3f}"
        )
        print(
            f"wrote {out / name}/recovery.md, factorization.json, mi_heatmap.png, binarized.png, blocks.png"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
