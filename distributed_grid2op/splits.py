"""Train / validation / test scenarios of an env, as filters on its chronics.

An env folder may hold ``splits.json`` (``{"seed": s, "train": [names], "val": [...],
"test": [...]}``, written by `write_splits`); otherwise the split is drawn from the chronic
names with a seeded permutation, so it is the same on every machine. Nothing is ever
written into the env folder of a bundled env (it lives in site-packages).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from distributed_grid2op.errors import UserError

SPLITS = ("train", "val", "test", "all")
DEFAULT_FRACTIONS = (0.7, 0.1, 0.2)
SPLITS_FILE = "splits.json"


def scenario_names(env) -> list[str]:
    """Chronic (scenario) names in the env's index order (the ids `env.reset` accepts)."""
    subpaths = getattr(env.chronics_handler.real_data, "subpaths", None)
    if subpaths is None:
        return ["0"]
    return [Path(p).name for p in subpaths]


def draw_splits(
    names: list[str], fractions=DEFAULT_FRACTIONS, seed: int = 0
) -> dict[str, list[str]]:
    """Disjoint seeded split of ``names``; each non-empty split gets at least one name if possible."""
    fr = np.asarray(fractions, dtype=float)
    if fr.shape != (3,) or np.any(fr < 0) or not np.isclose(fr.sum(), 1.0):
        raise UserError(
            f"split fractions must be 3 non-negative numbers summing to 1, got {fractions}"
        )
    order = np.random.default_rng(seed).permutation(sorted(names)).tolist()
    n = len(order)
    counts = np.floor(fr * n).astype(int)
    for i in np.argsort(-(fr * n - counts)):  # largest remainders first
        if counts.sum() < n:
            counts[i] += 1
    for i in (2, 0, 1):  # make test, then train, non-empty when they were asked for
        if fr[i] > 0 and counts[i] == 0 and counts.max() > 1:
            counts[int(np.argmax(counts))] -= 1
            counts[i] += 1
    cuts = np.cumsum(counts)[:-1]
    train, val, test = (sorted(part) for part in np.split(np.asarray(order, dtype=object), cuts))
    return {
        "train": [str(x) for x in train],
        "val": [str(x) for x in val],
        "test": [str(x) for x in test],
    }


def write_splits(
    env_dir: str | Path, names: list[str], fractions=DEFAULT_FRACTIONS, seed: int = 0
) -> Path:
    """Write ``splits.json`` into a (generated) env folder, atomically."""
    from distributed_grid2op.io import write_json

    data = {
        "seed": int(seed),
        "fractions": list(map(float, fractions)),
        **draw_splits(names, fractions, seed),
    }
    return write_json(Path(env_dir) / SPLITS_FILE, data)


def split_scenarios(env, split: str = "all", *, seed: int = 0) -> list[int]:
    """Indices of the env's chronics in ``split`` (``train``, ``val``, ``test`` or ``all``)."""
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    names = scenario_names(env)
    if split == "all":
        return list(range(len(names)))
    path = Path(env.get_path_env()) / SPLITS_FILE
    if path.is_file():
        try:
            chosen = json.loads(path.read_text())[split]
        except (json.JSONDecodeError, KeyError) as exc:
            raise UserError(f"{path}: malformed splits file ({exc})") from exc
    else:
        chosen = draw_splits(names, seed=seed)[split]
    index = {n: i for i, n in enumerate(names)}
    missing = [n for n in chosen if n not in index]
    if missing:
        raise UserError(f"{path}: scenarios {missing[:3]} are not in the env")
    if not chosen:
        raise UserError(
            f"split {split!r} of {env.get_path_env()} is empty ({len(names)} scenarios)"
        )
    return sorted(index[n] for n in chosen)
