"""What the training chain on the 118-bus grid (l2rpn_idf_2023) needed: regression tests.

Each test fails on the code before its fix: the picker handed turns to substations with no
topology in a reduced (or pruned) action set, generated scenarios copied the idf source's
corrupt dispatchable forecasts into their error model (``obs.simulate`` ~100 MW off per
nuclear unit), and a factorization made for the source env warned on its generated envs.
"""

from __future__ import annotations

import warnings

import numpy as np

from distributed_grid2op.actions.file import grid_summary, load_action_file, write_action_file
from distributed_grid2op.agents import HierarchicalAgent
from distributed_grid2op.decomposed import Decomposition
from distributed_grid2op.envs import make_env, quiet_grid2op
from distributed_grid2op.factorization_file import load_factorization
from distributed_grid2op.loop import Turn
from distributed_grid2op.scenarios import InjectionModel, generate, read_source


def _some_topology(env, sub: int) -> list[int]:
    """A valid two-bus split of substation ``sub`` (element 0 on bus 1)."""
    from distributed_grid2op.grid import substation_topology, unitary_topologies

    for action in unitary_topologies(env, sub):
        topo = substation_topology(action, sub, env)
        if topo[0] == 1 and (topo == 2).any():
            return [int(v) for v in topo]
    raise AssertionError(f"no split of substation {sub}")


def _stressed(env):
    """An observation of ``env`` at max rho >= 0.9 (the thermal limits lowered)."""
    obs = env.reset(seed=0, options={"time serie id": 0})
    env.set_thermal_limit(np.asarray(env.get_thermal_limit()) * 0.5)
    obs, *_ = env.step(env.action_space())
    assert float(obs.rho.max()) >= 0.9
    return obs


def test_picker_only_turns_to_substations_with_actions_in_the_reduced_set(tmp_path):
    with quiet_grid2op():
        env = make_env("l2rpn_case14_sandbox", seed=0)
        path = tmp_path / "actions.json"
        acts = [{"substation": s, "set_bus": _some_topology(env, s)} for s in (1, 5)]
        write_action_file(path, env_name=env.env_name, grid=grid_summary(env),
                          scoring={"seed": 0}, actions=acts)  # fmt: skip
        af = load_action_file(path, env)
        dec = Decomposition(env, load_factorization(None, env=env), action_file=af)
        # every substation with more than 3 elements stays in the observation one-hot ...
        assert dec.clusters[0].controlled == (1, 2, 4) and dec.clusters[1].controlled == (
            3,
            5,
            8,
            12,
        )
        # ... but the picker only hands turns to the two that have a topology in the set
        assert dec.owner == {1: 0, 5: 1} and dec.controllable == [1, 5]
        agent = HierarchicalAgent(env, action_file=af, danger=0.9)
        obs = _stressed(env)
        picked = set()
        for _ in range(6):
            turn = agent.controller.decide(obs)
            assert isinstance(turn, Turn)
            picked.add(turn.substation)
        assert picked == {1, 5}
        env.close()


def test_pruning_takes_substations_without_kept_actions_out_of_the_picker(case14_env):
    env = case14_env
    agent = HierarchicalAgent(env, danger=0.9)
    assert agent.controller.owner == {1: 0, 2: 0, 4: 0, 3: 1, 5: 1, 8: 1, 12: 1}
    c0 = agent.decomposition.clusters[0]
    on_1 = int(np.flatnonzero(c0.action_substation == 1)[0])
    agent.prune([[on_1], []])  # cluster 0 keeps one action on substation 1, cluster 1 none
    assert agent.controller.owner == {1: 0}
    agent.prune(None)
    assert agent.controller.owner == {1: 0, 2: 0, 4: 0, 3: 1, 5: 1, 8: 1, 12: 1}


def test_factorization_of_the_source_env_fits_its_generated_scenarios(tmp_path):
    out = generate("l2rpn_case14_sandbox", tmp_path / "gen", 2, 20, seed=0, validate=False,
                   progress=False)  # fmt: skip
    with quiet_grid2op():
        env = make_env(out)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # "made for env 'l2rpn_case14_sandbox', not 'gen'"
            fact = load_factorization(None, env=env)
        env.close()
    assert fact.env == "l2rpn_case14_sandbox"


def test_idf_dispatchable_forecasts_are_not_fitted_on_corrupt_source_rows():
    with quiet_grid2op():
        env = make_env("l2rpn_idf_2023")
        model = InjectionModel().fit(read_source(env, "l2rpn_idf_2023", max_chronics=1))
        disp = np.asarray(env.gen_redispatchable)
        pmax = np.asarray(env.gen_pmax)
        env.close()
    std = model.forecast_std_["prod_p"]  # (horizons, generators)
    # the source forecasts its 360 MW nuclear units at up to 1662 MW in 0.3% of the rows of its
    # first scenario: the error std at 5 minutes was 67 MW with them, 1 MW without
    assert np.all(std[0, disp] < 0.1 * pmax[disp])
    out = model.sample(48, np.random.default_rng(0))
    fc = out["prod_p_forecasted"].reshape(48, model.forecast_horizons_, -1)[:-1, 0]
    err = np.abs(fc - out["prod_p"][1:])[:, disp]
    assert err.mean() < 10.0, err.mean()  # was ~100 MW per dispatchable unit


def test_idf2023_training_config_and_its_files_fit_the_118_bus_grid(monkeypatch):
    from pathlib import Path

    from experiments.runs import load_config

    root = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(root)  # the config names its files relative to the repository root
    cfg = load_config("training", "quick", "experiments/configs/training_idf2023_quick.toml")
    train = cfg["train"]
    assert cfg["scenarios"]["source"] == "l2rpn_idf_2023" and train["danger"] == 0.95
    with quiet_grid2op():
        env = make_env("l2rpn_idf_2023")
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            fact = load_factorization(train["factorization"], env=env)
        af = load_action_file(train["action_set"], env)
        dec = Decomposition(env, fact, action_file=af)
        env.close()
    assert [len(c.substations) for c in fact.clusters] == [38, 46, 34] and len(af) == 285
    assert len(dec.controllable) == 47  # of 58 substations with more than 3 elements
