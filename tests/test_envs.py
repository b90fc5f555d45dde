"""Offline env creation: every bundled env, paths, errors, no network, thermal limit scaling."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from distributed_grid2op.envs import (
    EnvSpec,
    bundled_env_names,
    env_metadata,
    make_env,
    n_scenarios,
    resolve_env,
)
from distributed_grid2op.errors import UnknownEnvError, UserError


@pytest.fixture
def no_network(monkeypatch):
    """Fail any attempt to open a socket (a download attempt would need one)."""

    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.mark.parametrize("name", bundled_env_names())
def test_every_bundled_env_resets_and_steps(name, no_network):
    env = make_env(name, seed=1)
    try:
        obs = env.reset()
        assert obs.rho.shape == (env.n_line,)
        for _ in range(3):
            obs, reward, done, info = env.step(env.action_space({}))
            assert np.isfinite(reward)
            if done:
                break
        from lightsim2grid import LightSimBackend

        assert isinstance(env.backend, LightSimBackend)
    finally:
        env.close()


def test_unknown_name_is_fast_offline_and_lists_names(no_network):
    start = time.perf_counter()
    with pytest.raises(UnknownEnvError) as err:
        make_env("l2rpn_case14_sandbox_typo")
    assert time.perf_counter() - start < 2.0
    msg = str(err.value)
    assert "l2rpn_case14_sandbox_typo" in msg
    assert "rte_case5_example" in msg and "l2rpn_case14_sandbox" in msg
    assert "\n" not in msg


def test_missing_path_and_non_env_folder(tmp_path):
    with pytest.raises(UnknownEnvError, match="no such folder"):
        make_env(str(tmp_path / "nope" / "env"))
    with pytest.raises(UnknownEnvError, match="grid.json"):
        make_env(tmp_path)


def test_env_folder_path_is_loaded(tmp_path, no_network):
    src, _ = resolve_env("rte_case5_example")
    import grid2op

    src_dir = make_env(src).get_path_env()
    dst = tmp_path / "my_case5"
    shutil.copytree(src_dir, dst)
    env = make_env(dst, seed=0)
    meta = env_metadata(env, EnvSpec(str(dst)))
    assert meta["bundled"] is False and meta["env"] == str(dst)
    assert env.n_sub == 5 and n_scenarios(env) == 20
    assert env_metadata(env)["grid2op_version"] == grid2op.__version__
    assert "thermal_limit_scale" not in env_metadata(env)  # settings travel in the spec only
    assert not hasattr(env, "_decomp_metadata")
    env.reset()
    env.step(env.action_space({}))


def test_thermal_limit_scale_multiplies_limits():
    base = make_env("rte_case5_example").get_thermal_limit()
    env = make_env("rte_case5_example", thermal_limit_scale=0.85)
    np.testing.assert_allclose(env.get_thermal_limit(), 0.85 * base)
    env.reset()  # the scaled limits survive a reset
    np.testing.assert_allclose(env.get_thermal_limit(), 0.85 * base)
    spec = EnvSpec("rte_case5_example", thermal_limit_scale=0.85)
    assert env_metadata(env, spec)["thermal_limit_scale"] == 0.85


@pytest.mark.parametrize("scale", [0, -1, float("nan"), float("inf")])
def test_invalid_thermal_limit_scale(scale):
    with pytest.raises(UserError, match="thermal_limit_scale"):
        make_env("rte_case5_example", thermal_limit_scale=scale)


def test_params_dict_and_unknown_param():
    env = make_env("rte_case5_example", params={"MAX_SUB_CHANGED": 3})
    assert env.parameters.MAX_SUB_CHANGED == 3
    with pytest.raises(UserError, match="NOT_A_PARAM"):
        make_env("rte_case5_example", params={"NOT_A_PARAM": 1})


def test_pandapower_backend_selectable():
    env = make_env("rte_case5_example", backend="pandapower")
    from grid2op.Backend import PandaPowerBackend

    assert isinstance(env.backend, PandaPowerBackend)
    with pytest.raises(UserError, match="backend"):
        make_env("rte_case5_example", backend="nope")


def test_same_seed_same_trajectory():
    def rollout(seed):
        env = make_env("rte_case5_example", seed=seed)
        obs = env.reset()
        name = env.chronics_handler.get_name()
        rho = [obs.rho.copy()]
        for _ in range(5):
            obs, *_ = env.step(env.action_space({}))
            rho.append(obs.rho.copy())
        return name, np.array(rho)

    (n1, r1), (n2, r2) = rollout(3), rollout(3)
    assert n1 == n2
    np.testing.assert_array_equal(r1, r2)


def test_env_spec_is_picklable_and_makes_the_same_env():
    import pickle

    spec = EnvSpec("rte_case5_example", thermal_limit_scale=0.9, params={"MAX_SUB_CHANGED": 2})
    clone = pickle.loads(pickle.dumps(spec))
    env = clone.make(seed=0)
    assert env.parameters.MAX_SUB_CHANGED == 2
    assert env_metadata(env, clone)["thermal_limit_scale"] == 0.9
    assert spec.to_dict()["name"] == "rte_case5_example"
    assert clone.key() == spec.key() != EnvSpec("rte_case5_example").key()


def test_envs_cli_unknown_option_exits_2():
    proc = subprocess.run(
        [sys.executable, "-m", "distributed_grid2op.envs", "--bogus"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and proc.stderr.startswith("error:")
