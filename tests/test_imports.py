"""Importing any module of the project performs no I/O, makes no env and opens no socket."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import pytest

PACKAGES = ["clustering", "distributed_grid2op", "patches", "experiments"]


def _modules():
    import importlib

    names = []
    for pkg in PACKAGES:
        mod = importlib.import_module(pkg)
        names.append(pkg)
        for info in pkgutil.walk_packages(mod.__path__, prefix=f"{pkg}."):
            if not info.name.endswith("__main__"):  # scripts: running is their purpose
                names.append(info.name)
    return names


PROBE = r"""
import builtins, os, socket, sys
written = []
real_open = builtins.open
def guarded_open(file, mode="r", *a, **k):
    if any(c in mode for c in "wax+"):
        written.append(str(file))
    return real_open(file, mode, *a, **k)
builtins.open = guarded_open
class NoSocket(socket.socket):
    def __init__(self, *a, **k):
        raise AssertionError("socket opened at import")
socket.socket = NoSocket
import importlib
importlib.import_module(sys.argv[1])
bad = [f for f in written if "__pycache__" not in f and not f.endswith(".nbi") and "numba" not in f]
assert not bad, bad
assert "grid2op" not in sys.modules or sys.argv[1].startswith(("distributed_grid2op", "clustering.power_grid", "patches", "experiments"))
print("ok")
"""


@pytest.mark.parametrize("module", _modules())
def test_import_has_no_side_effects(module, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, module], capture_output=True, text=True, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "module", ["clustering.mutual_info", "clustering.factorization", "clustering.synthetic_data"]
)
def test_domain_agnostic_core_does_not_import_grid2op(module):
    code = f"import sys, {module}; assert 'grid2op' not in sys.modules and 'distributed_grid2op' not in sys.modules"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_distributed_grid2op_does_not_import_clustering():
    code = (
        "import sys, importlib, pkgutil, distributed_grid2op as d\n"
        "for m in pkgutil.walk_packages(d.__path__, prefix='distributed_grid2op.'):\n"
        "    if not m.name.endswith('__main__'): importlib.import_module(m.name)\n"
        "assert not [m for m in sys.modules if m.split('.')[0] == 'clustering'], 'clustering imported'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
