"""The grid2op monkeypatches with the real Runner on rte_case5_example (20 chronics):
episode ids 0 and 20 both play chronic "00"."""

from __future__ import annotations

import os

import grid2op
import numpy as np
import pytest
from grid2op.Agent import DoNothingAgent
from grid2op.Episode import EpisodeData
from grid2op.Runner import Runner, aux_fun
from grid2op.Runner import runner as runner_mod

import patches

EPISODES = dict(nb_episode=2, episode_id=[0, 20], max_iter=3, env_seeds=[1, 2])


def _originals():
    return (
        runner_mod._aux_run_one_episode,
        aux_fun._aux_run_one_episode,
        EpisodeData.__dict__["__init__"],
        EpisodeData.__dict__["to_disk"],
    )


@pytest.fixture
def runner(case5_env):
    yield Runner(**case5_env.get_params_for_runner(), agentClass=DoNothingAgent)
    patches.undo()


def _episode_dirs(path):
    return sorted(p for p in os.listdir(path) if os.path.isdir(os.path.join(path, p)))


def test_not_applied_at_import_and_episodes_collide_without_patch(runner, tmp_path):
    assert not patches.is_applied()
    res = runner.run(path_save=str(tmp_path), **EPISODES)
    assert [r[1] for r in res] == ["00", "00"]
    assert _episode_dirs(tmp_path) == ["00"]  # the second episode overwrote the first


def test_episode_names_patch_keeps_both_and_never_overwrites(runner, tmp_path):
    with patches.applied("episode_names"):
        res = runner.run(path_save=str(tmp_path), **EPISODES)
        assert _episode_dirs(tmp_path) == ["00_0", "00_20"]
        assert [r[1] for r in res] == ["00", "00"]  # results still name the chronic
        runner.run(path_save=str(tmp_path), **EPISODES)  # a second run into the same folder
    assert _episode_dirs(tmp_path) == ["00_0", "00_0-1", "00_20", "00_20-1"]
    full = EpisodeData.from_disk(str(tmp_path), "00_20")  # full format still readable
    assert len(full.actions) == 3


def test_worker_processes_inherit_patches_under_fork(case5_env, tmp_path):
    with patches.applied("episode_names"):
        runner = Runner(
            **case5_env.get_params_for_runner(),
            agentClass=DoNothingAgent,
            mp_context=patches.fork_context(),
        )
        runner.run(path_save=str(tmp_path), nb_process=2, **EPISODES)
    assert _episode_dirs(tmp_path) == ["00_0", "00_20"]


def test_lean_serialization_writes_only_observations_and_actions(runner, tmp_path, case5_env):
    runner.run(path_save=str(tmp_path / "full"), **EPISODES)
    with patches.applied():
        runner.run(path_save=str(tmp_path / "lean"), **EPISODES)
    lean = tmp_path / "lean"
    assert sorted(os.listdir(lean)) == ["00_0", "00_20"]  # no space descriptions either
    assert sorted(os.listdir(lean / "00_20")) == ["actions.npz", "observations.npz"]
    ref = EpisodeData.from_disk(str(tmp_path / "full"), "00")  # episode_id 20 (the survivor)
    ep = patches.read_episode(lean, "00_20", env=case5_env)
    assert ep.observations.shape == (4, case5_env.observation_space.n)
    assert ep.actions.shape == (3, case5_env.action_space.n)
    np.testing.assert_array_equal(ep.observations, ref.observations.collection)
    np.testing.assert_array_equal(ep.actions, ref.actions.collection)
    np.testing.assert_allclose(ep.observation(3).rho, ref.observations.objects[3].rho)
    assert ep.action(0) == case5_env.action_space({})
    size = sum(f.stat().st_size for f in (lean / "00_20").iterdir())
    full_size = sum(f.stat().st_size for f in (tmp_path / "full").rglob("*") if f.is_file())
    assert size < full_size / 2


def test_apply_is_idempotent_and_undo_restores_exactly(runner, tmp_path):
    before = _originals()
    assert patches.apply() == patches.PATCHES
    patched = _originals()
    assert all(a is not b for a, b in zip(before, patched))
    assert runner_mod._aux_run_one_episode is aux_fun._aux_run_one_episode  # both bindings
    assert patches.apply() == ()
    assert _originals() == patched
    assert set(patches.undo()) == set(patches.PATCHES)
    assert all(a is b for a, b in zip(before, _originals()))
    runner.run(path_save=str(tmp_path), **EPISODES)
    assert _episode_dirs(tmp_path) == ["00"]
    assert "episode_meta.json" in os.listdir(tmp_path / "00")


def test_context_manager_undoes_on_error():
    before = _originals()
    with pytest.raises(KeyError):
        with patches.applied():
            assert patches.is_applied("lean_episode")
            raise KeyError("boom")
    assert not patches.is_applied()
    assert all(a is b for a, b in zip(before, _originals()))


def test_refuses_other_grid2op_versions(monkeypatch):
    before = _originals()
    monkeypatch.setattr(grid2op, "__version__", "1.10.5")
    with pytest.raises(patches.PatchError, match="1.12"):
        patches.apply()
    assert all(a is b for a, b in zip(before, _originals()))


def test_refuses_changed_signature(monkeypatch):
    before = _originals()

    def _aux_run_one_episode(env, agent, logger, indx, path_save=None, pbar=False):  # 1.10-like
        return None

    monkeypatch.setattr(aux_fun, "_aux_run_one_episode", _aux_run_one_episode)
    with pytest.raises(patches.PatchError, match="_aux_run_one_episode"):
        patches.apply()
    monkeypatch.undo()
    assert all(a is b for a, b in zip(before, _originals()))
    assert not patches.is_applied()


def test_refuses_missing_target(monkeypatch):
    monkeypatch.delattr(EpisodeData, "to_disk")
    with pytest.raises(patches.PatchError, match="to_disk"):
        patches.apply("lean_episode")
    monkeypatch.undo()
    assert not patches.is_applied()
    with pytest.raises(patches.PatchError, match="unknown patch"):
        patches.apply("nope")
