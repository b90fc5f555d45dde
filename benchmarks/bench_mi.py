"""Mixed-KSG speed: `clustering.mutual_info.mixed_ksg` vs the per-point KD-tree loop vs sklearn.

    python -m benchmarks.bench_mi [--sizes 2000:100,20000:1000,50000:2500] [--ref-points 500] [--full-ref 20000]

One core (numba kernel, no threads). Three pairs per size: continuous x continuous (correlated
Gaussians) and the common case, a continuous target with exact zeros against a discrete
action column with 10 values, encoded as integer ids and as the same ids scaled to [0, 1)
(a discrete column is detected by its values and recoded as rank / number of values, so both
must give the same MI at the same speed; the reference for both is the definition on that
recoding, the scaled ids). The baseline is the per-point loop (`_mixed_ksg_reference`,
scipy cKDTree), measured in the same run: on all N points for N <= --full-ref (values checked
equal to 1e-9), otherwise on --ref-points random points and scaled to N (its cost is a sum of
per-point costs). scikit-learn's `mutual_info_regression` (same k) is shown for reference.
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import scipy
import sklearn

from clustering.mutual_info import _mixed_ksg_reference, mixed_ksg


def _pairs(n: int, rng: np.random.Generator):
    x = rng.normal(size=n)
    a = rng.integers(0, 10, n).astype(float)
    t = np.where(rng.random(n) < 0.1, 0.0, 0.05 * a + 0.3 * rng.normal(size=n))
    # (x, y, the y the per-point definition is evaluated on)
    return {
        "continuous": (x, 0.7 * x + rng.normal(size=n), None),
        "target vs ids": (t, a, a / 10.0),
        "target vs scaled": (t, a / 10.0, None),
    }


def _best(f, repeat=3):
    times, value = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        value = f()
        times.append(time.perf_counter() - t0)
    return min(times), value


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_mi", description=__doc__.splitlines()[0]
    )
    p.add_argument("--sizes", default="2000:100,20000:1000,50000:2500", help="N:k pairs")
    p.add_argument(
        "--ref-points", type=int, default=500, help="points timed for the scaled baseline"
    )
    p.add_argument("--full-ref", type=int, default=20000, help="largest N with the full baseline")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    import numba
    from sklearn.feature_selection import mutual_info_regression

    rng = np.random.default_rng(args.seed)
    mixed_ksg(rng.normal(size=50), rng.normal(size=50), 3)  # load the compiled kernel
    print(
        f"python {platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__}, "
        f"scikit-learn {sklearn.__version__}, numba {numba.__version__}; one core"
    )
    header = f"{'pair':<18}{'N':>7}{'k':>6}{'ours s':>9}{'per-point s':>13}{'ratio':>8}{'sklearn s':>11}  check"
    print(header)
    rows = []
    for item in args.sizes.split(","):
        n, k = (int(v) for v in item.split(":"))
        for name, (x, y, y_ref) in _pairs(n, rng).items():
            y_ref = y if y_ref is None else y_ref
            ours, value = _best(lambda x=x, y=y, k=k: mixed_ksg(x, y, k))
            if n <= args.full_ref:
                t0 = time.perf_counter()
                ref_value = _mixed_ksg_reference(x, y_ref, k)
                ref = time.perf_counter() - t0
                check = (
                    "equal" if abs(ref_value - value) <= 1e-9 else f"DIFF {ref_value - value:.2e}"
                )
            else:
                pts = rng.choice(n, size=min(n, args.ref_points), replace=False)
                t0 = time.perf_counter()
                _mixed_ksg_reference(x, y_ref, k, points=pts)
                ref = (time.perf_counter() - t0) * n / len(pts)
                check = f"scaled from {len(pts)} points"
            disc = name == "target vs ids"  # scikit-learn: discrete only as integers
            sk, _ = _best(
                lambda x=x, y=y, k=k, disc=disc: mutual_info_regression(
                    y[:, None], x, discrete_features=[disc], n_neighbors=k, random_state=0
                ),
                repeat=1,
            )
            row = {
                "pair": name,
                "n": n,
                "k": k,
                "ours_s": ours,
                "reference_s": ref,
                "ratio": ref / ours,
                "sklearn_s": sk,
                "check": check,
                "mi": value,
            }
            rows.append(row)
            print(
                f"{name:<18}{n:>7}{k:>6}{ours:>9.3f}{ref:>13.2f}{ref / ours:>7.0f}x{sk:>11.2f}  {check}",
                flush=True,
            )
    return rows


if __name__ == "__main__":
    main()
