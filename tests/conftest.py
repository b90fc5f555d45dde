"""Shared fixtures: small offline envs, made once per test process."""

from __future__ import annotations

import os

import matplotlib
import pytest

matplotlib.use("Agg")
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def case5_env():
    """rte_case5_example on lightsim2grid (20 chronics x 2016 steps); do not close it in tests."""
    from distributed_grid2op.envs import make_env

    env = make_env("rte_case5_example", seed=0)
    yield env
    env.close()


@pytest.fixture(scope="session")
def case14_env():
    """l2rpn_case14_sandbox bundled test data (3 chronics x 575 steps) on lightsim2grid."""
    from distributed_grid2op.envs import make_env

    env = make_env("l2rpn_case14_sandbox", seed=0)
    yield env
    env.close()
