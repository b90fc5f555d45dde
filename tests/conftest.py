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


@pytest.fixture(scope="module")
def storage_env():
    """educ_case14_storage (bundled: 7 scenarios x 288 steps; redispatch and 2 storage units),
    seeded 0, one per test module (tests change its state: thermal limits, steps)."""
    import warnings

    from distributed_grid2op.envs import make_env, quiet_grid2op

    with quiet_grid2op(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        env = make_env("educ_case14_storage", seed=0)
    yield env
    env.close()


#: the standard stressed case14 setting ("case14-stress"): thermal limits x 0.85, the
#: training reward, parameters that let two cluster agents act in the same step
CASE14_STRESS = dict(
    thermal_limit_scale=0.85,
    params={"MAX_SUB_CHANGED": 2, "MAX_LINE_STATUS_CHANGED": 2},
)


@pytest.fixture(scope="session")
def case14_stress_spec():
    """`EnvSpec` of case14-stress (thermal limits x 0.85, ``CloseToOverflowReward``)."""
    from grid2op.Reward import CloseToOverflowReward

    from distributed_grid2op.envs import EnvSpec

    return EnvSpec("l2rpn_case14_sandbox", reward=CloseToOverflowReward, **CASE14_STRESS)


@pytest.fixture(scope="session")
def case14_stress_env(case14_stress_spec):
    """case14-stress made once per test process; do not close it in tests."""
    env = case14_stress_spec.make(0)
    yield env
    env.close()
