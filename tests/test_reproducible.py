"""Reproducible artifacts: two identical runs of a command (or one run with 1 worker and one
with 2) write byte-identical files, timings aside.

Timings are the only thing allowed to differ: CSV columns ``decision_ms_*``, JSON keys
``timings*`` / ``*_seconds``, the ``decision_ms`` array of episode ``.npz`` files and the
"Timings" table of ``summary.md``. Everything else is compared byte for byte (the helpers
below are shared with the kill-and-resume tests of ``test_faults.py``)."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable


def run_cli(module: str, *args, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(
        [PY, "-m", module, *map(str, args)],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc


# ---------------------------------------------------------------------------- comparison
def is_timing_key(key: str) -> bool:
    return key.startswith("timings") or key.endswith("_seconds")


def _drop_timings(value):
    if isinstance(value, dict):
        return {k: _drop_timings(v) for k, v in value.items() if not is_timing_key(k)}
    if isinstance(value, list):
        return [_drop_timings(v) for v in value]
    return value


def comparable(path: Path):
    """The content of an artifact that must not change between runs (timings removed)."""
    data = path.read_bytes()
    if path.suffix == ".csv" and b"decision_ms" in data.split(b"\n", 1)[0]:
        rows = list(csv.reader(io.StringIO(data.decode())))
        keep = [i for i, name in enumerate(rows[0]) if not name.startswith("decision_ms")]
        return [[row[i] for i in keep] for row in rows]
    if path.suffix == ".json":
        # the text too: same keys in the same order, same number formatting
        return json.dumps(_drop_timings(json.loads(data)), indent=1)
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as npz:
            return {k: (npz[k].dtype.str, npz[k].shape, npz[k].tobytes())
                    for k in npz.files if k != "decision_ms"}  # fmt: skip
    if path.suffix == ".md":
        lines, skipping = [], False
        for line in data.decode().splitlines():
            if line.startswith("## "):
                skipping = line.startswith("## Timings")
            elif skipping and line and not line.startswith("|"):
                skipping = False
            if not skipping:
                lines.append(line)
        return lines
    return data


def files_of(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def assert_same_artifacts(a: Path, b: Path, names: list[str] | None = None) -> list[str]:
    """``a`` and ``b`` hold the same files (or the given ones) with the same content."""
    if names is None:
        names = files_of(a)
        assert names == files_of(b)
    for name in names:
        assert comparable(a / name) == comparable(b / name), name
    return names


def temp_files(folder: Path) -> list[Path]:
    """Leftovers of atomic writes: ``.name.tmp…``, ``.tmp-…``, ``.name.partial``, ``….old``."""
    return [p for p in folder.rglob(".*")
            if ".tmp" in p.name or p.name.endswith((".old", ".partial"))]  # fmt: skip


# ---------------------------------------------------------------------------- the commands
@pytest.mark.slow
def test_power_grid_twice(tmp_path):
    args = ["--env", "rte_case5_example", "--episodes", "4", "--samples", "150",
            "--permutations", "1", "--no-progress"]  # fmt: skip
    run_cli("clustering.power_grid", *args, "--workers", "1", "--out", tmp_path / "a")
    run_cli("clustering.power_grid", *args, "--workers", "2", "--out", tmp_path / "b")
    names = files_of(tmp_path / "a")
    assert names == files_of(tmp_path / "b")
    others = [n for n in names if n not in ("summary.json", "summary.md")]
    assert_same_artifacts(tmp_path / "a", tmp_path / "b", others)
    md = [comparable(tmp_path / d / "summary.md") for d in "ab"]
    assert [ln.replace("1 worker(s)", "2 worker(s)") for ln in md[0]] == md[1]
    summaries = [json.loads((tmp_path / d / "summary.json").read_text()) for d in "ab"]
    assert [s["settings"].pop("workers") for s in summaries] == [1, 2]  # the only difference
    assert _drop_timings(summaries[0]) == _drop_timings(summaries[1])
    for name in ("factorization.json", "mi.npy", "unbiased_mi.npy", "shards/collection.json"):
        assert name in names
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert any(n.startswith("shards/") and n.endswith(".npz") for n in names)
    assert not temp_files(tmp_path)


def test_scenarios_twice(tmp_path):
    args = ["--source", "rte_case5_example", "--n", "3", "--steps", "96", "--no-validate",
            "--quiet"]  # fmt: skip
    run_cli("distributed_grid2op.scenarios", *args, "--workers", "1", "--out", tmp_path / "a")
    run_cli("distributed_grid2op.scenarios", *args, "--workers", "2", "--out", tmp_path / "b")
    names = assert_same_artifacts(tmp_path / "a", tmp_path / "b")
    assert sum(n.startswith("chronics/") for n in names) >= 3 * 9
    for name in names:  # no timings in any of them: byte for byte
        if name != "generation.json":
            assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert "splits.json" in names and "generation.json" in names
    assert not temp_files(tmp_path)


def test_synthetic_data_twice(tmp_path):
    args = ["--steps", "200", "--only", "thesis", "--n-permutations", "1", "--no-progress"]
    run_cli("clustering.synthetic_data", *args, "--out", tmp_path / "a")
    run_cli("clustering.synthetic_data", *args, "--out", tmp_path / "b")
    names = assert_same_artifacts(tmp_path / "a", tmp_path / "b")
    for name in names:  # only summary.json holds a timing (mi_seconds)
        if not name.endswith("summary.json"):
            assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert "thesis/factorization.json" in names and "thesis/mi.npz" in names


def test_actions_twice(tmp_path):
    args = ["--env", "l2rpn_case14_sandbox", "--thermal-limit-scale", "0.85", "--states", "2",
            "--episodes", "2", "--horizon", "40", "--seed", "3", "--no-progress"]  # fmt: skip
    run_cli("distributed_grid2op.actions", *args, "--workers", "1", "--out", tmp_path / "a.json")
    run_cli("distributed_grid2op.actions", *args, "--workers", "2", "--out", tmp_path / "b.json")
    a, b = (tmp_path / "a.json").read_bytes(), (tmp_path / "b.json").read_bytes()
    assert b'"timings"' in a
    assert a[: a.index(b'"timings"')] == b[: b.index(b'"timings"')]
    assert json.loads(a)["actions"]
    assert not temp_files(tmp_path)


def test_evaluate_twice(tmp_path):
    args = ["--env", "rte_case5_example", "--baselines", "do-nothing,reconnect", "--episodes",
            "2", "--max-steps", "100", "--no-progress"]  # fmt: skip
    run_cli("distributed_grid2op.evaluate", *args, "--workers", "1", "--out", tmp_path / "a")
    run_cli("distributed_grid2op.evaluate", *args, "--workers", "2", "--out", tmp_path / "b")
    names = assert_same_artifacts(tmp_path / "a", tmp_path / "b")
    for name in ("step_metrics.csv", "daily_summary.csv"):  # no timing column: bytes
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert {"episode_summary.csv", "run_summary.csv"} <= set(names)
    assert sum(n.endswith(".npz") for n in names) == 4
    assert not temp_files(tmp_path)


@pytest.mark.slow
def test_training_one_or_two_workers(tmp_path):
    args = ["--episodes", "3", "--checkpoint-every", "2", "--no-progress"]
    run_cli("distributed_grid2op.main", *args, "--workers", "1", "--out", tmp_path / "a")
    run_cli("distributed_grid2op.main", *args, "--workers", "2", "--out", tmp_path / "b")
    names = [n for n in files_of(tmp_path / "a") if n != "run.json"]  # run.json: argv, out
    assert names == [n for n in files_of(tmp_path / "b") if n != "run.json"]
    assert {"train_log.csv", "final/weights.pt", "final/agent.json"} <= set(names)
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert not temp_files(tmp_path)
