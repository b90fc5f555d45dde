"""Collection of (s, a, s') transitions on rte_case5_example: shapes, encoding, determinism,
resume after an interrupted run, corrupt shards."""

from __future__ import annotations

import numpy as np
import pytest

from clustering.power_grid import collect as C
from distributed_grid2op.envs import EnvSpec
from distributed_grid2op.errors import UserError
from distributed_grid2op.grid import substation_topology, unitary_topologies

SUBS = (0, 3)


def _settings(mode="thesis", **kw):
    base = dict(
        spec=EnvSpec("rte_case5_example"),
        substations=SUBS,
        n_episodes=6,
        n_samples=40,
        mode=mode,
        seed=3,
        max_steps=12,
        episodes_per_shard=2,
    )
    base.update(kw)
    return C.CollectSettings(**base)


def _same(a: dict, b: dict):
    assert a.keys() == b.keys()
    for s in a:
        for key in ("state", "next_state", "action_raw", "action", "terminal", "episode_id"):
            np.testing.assert_array_equal(
                getattr(a[s], key), getattr(b[s], key), err_msg=f"{s} {key}"
            )


@pytest.mark.parametrize("mode", ["thesis", "simulate"])
def test_shapes_and_encoding(tmp_path, case5_env, mode):
    data = C.collect(_settings(mode), tmp_path, progress=False)
    assert sorted(data) == list(SUBS)
    for sub, d in data.items():
        n = len(d)
        assert 0 < n <= 40
        assert d.state.shape == d.next_state.shape == (n, case5_env.n_line)
        assert d.state_names[0] == "rho[0]" and len(d.state_names) == case5_env.n_line
        n_topo = len(unitary_topologies(case5_env, sub))
        assert d.action_raw.min() >= 0 and d.action_raw.max() < n_topo
        # thesis encoding: rank of the distinct set-bus vector among those present / their number
        vectors = np.array(
            [substation_topology(a, sub, case5_env) for a in unitary_topologies(case5_env, sub)]
        )
        uniq = np.unique(vectors[d.action_raw], axis=0)
        rank = [int(np.flatnonzero((uniq == vectors[r]).all(axis=1))[0]) for r in d.action_raw]
        np.testing.assert_allclose(d.action, np.asarray(rank) / len(uniq))
        assert np.all(np.diff(d.episode_id) >= 0)
        if mode == "thesis":
            # within an episode, s' of one transition is s of the next one
            same_ep = d.episode_id[1:] == d.episode_id[:-1]
            np.testing.assert_array_equal(d.next_state[:-1][same_ep], d.state[1:][same_ep])
            # a terminal transition ends its episode with grid2op's all-zero game-over rho
            for i in np.flatnonzero(d.terminal):
                assert np.all(d.next_state[i] == 0)
                assert i == n - 1 or d.episode_id[i + 1] != d.episode_id[i]
        assert not np.any(d.drop_terminal().terminal)


def test_deterministic_and_independent_of_workers(tmp_path, case5_env):
    one = C.collect(_settings(), tmp_path / "a", progress=False)
    again = C.collect(_settings(), tmp_path / "b", progress=False)
    two = C.collect(_settings(), tmp_path / "c", workers=2, progress=False)
    _same(one, again)
    _same(one, two)
    other = C.collect(_settings(seed=4), tmp_path / "d", progress=False)
    assert not np.array_equal(one[0].action_raw[:20], other[0].action_raw[:20])


def test_sample_and_episode_caps(tmp_path, case5_env):
    data = C.collect(_settings(n_samples=15, n_episodes=50), tmp_path / "a", progress=False)
    assert all(len(d) == 15 for d in data.values())
    capped = C.collect(
        _settings(n_samples=10_000, n_episodes=3, max_steps=4), tmp_path / "b", progress=False
    )
    for d in capped.values():
        assert set(d.episode_id.tolist()) <= {0, 1, 2} and len(d) <= 12


def test_resume_after_crash_matches_uninterrupted(tmp_path, case5_env, monkeypatch):
    ref = C.collect(_settings(), tmp_path / "ref", progress=False)
    real = C._run_task
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("killed")
        return real(*args, **kwargs)

    monkeypatch.setattr(C, "_run_task", flaky)
    with pytest.raises(RuntimeError, match="killed"):
        C.collect(_settings(), tmp_path / "run", progress=False)
    written = sorted(p.name for p in (tmp_path / "run").glob("*.npz"))
    assert len(written) == 2  # two shards survived, no partial file
    assert not list((tmp_path / "run").glob(".*"))
    monkeypatch.setattr(C, "_run_task", real)
    mtimes = {p: p.stat().st_mtime_ns for p in (tmp_path / "run").glob("*.npz")}
    # a SIGKILL during a shard's atomic write leaves its temp file (no finally runs)
    stale = tmp_path / "run" / f".{written[-1]}.x1y2z3.npz"
    stale.write_bytes(b"partial")
    resumed = C.collect(_settings(), tmp_path / "run", progress=False, resume=True)
    assert not stale.exists()
    _same(ref, resumed)
    for p, t in mtimes.items():  # earlier shards were reused, not rewritten
        assert p.stat().st_mtime_ns == t


def test_shards_stop_at_the_sample_budget(tmp_path, case5_env):
    small = C.collect(_settings(n_samples=5, max_steps=None), tmp_path, progress=False)
    assert all(len(d) == 5 for d in small.values())
    for shard in tmp_path.glob("*.npz"):
        data = C.read_shard(shard)
        assert len(data["action_raw"]) <= 5 and bool(data["truncated"]) == (
            len(data["action_raw"]) == 5
        )
    # the truncated episodes are prefixes of the full ones
    full = C.collect(_settings(n_samples=40, max_steps=None), tmp_path / "full", progress=False)
    for s in SUBS:
        np.testing.assert_array_equal(small[s].action_raw, full[s].action_raw[:5])
        np.testing.assert_array_equal(small[s].next_state, full[s].next_state[:5])
    with pytest.raises(UserError, match="samples"):
        C.collect(_settings(n_samples=40, max_steps=None), tmp_path, progress=False)


def test_refuses_existing_without_resume_and_other_settings(tmp_path, case5_env):
    C.collect(_settings(), tmp_path, progress=False)
    with pytest.raises(UserError, match="resume"):
        C.collect(_settings(), tmp_path, progress=False, resume=False)
    with pytest.raises(UserError, match="other settings"):
        C.collect(_settings(seed=5), tmp_path, progress=False)


def test_corrupt_shard_is_a_user_error(tmp_path, case5_env):
    C.collect(_settings(), tmp_path, progress=False)
    shard = sorted(tmp_path.glob("*.npz"))[0]
    shard.write_bytes(b"not a zip file")
    with pytest.raises(UserError, match="corrupt shard"):
        C.collect(_settings(), tmp_path, progress=False)


def test_bad_settings():
    with pytest.raises(UserError):
        _settings(mode="greedy")
    with pytest.raises(UserError):
        _settings(n_samples=0)


class _AheadExecutor:
    """Takes ``workers`` tasks before returning any, and returns them last first: the most
    speculative schedule a parallel executor can produce, made deterministic."""

    def __init__(self, workers=4):
        self.workers = workers

    def imap(self, fn, tasks, shared=None):
        from distributed_grid2op.execution import WorkerContext

        ctx, source = WorkerContext(), iter(tasks)
        while True:
            batch = [t for _, t in zip(range(self.workers), source)]
            if not batch:
                return
            results = [(t, fn(ctx, t, shared)) for t in batch]
            yield from reversed(results)


def _shards(folder):
    return {p.name: C.read_shard(p) for p in sorted(folder.glob("*.npz"))}


def test_shard_files_do_not_depend_on_workers_or_schedule(tmp_path, case5_env):
    # a small sample budget: one or two shards are enough, more are computed ahead
    settings = _settings(n_samples=14, n_episodes=12, max_steps=None)
    serial = C.collect(settings, tmp_path / "serial", progress=False)
    ahead = C.collect(settings, tmp_path / "ahead", executor=_AheadExecutor(5), progress=False)
    two = C.collect(settings, tmp_path / "two", workers=2, progress=False)
    _same(serial, ahead)
    _same(serial, two)
    ref = _shards(tmp_path / "serial")
    # exactly the shards the dataset uses: every one but the last falls short of the budget
    for s in SUBS:
        mine = [n for n in ref if f"sub{s:03d}" in n]
        counts = [len(ref[n]["action_raw"]) for n in mine]
        assert sum(counts[:-1]) < 14 <= sum(counts)
    for other in ("ahead", "two"):
        got = _shards(tmp_path / other)
        assert list(got) == list(ref), other
        for name in ref:
            for key in ref[name]:
                np.testing.assert_array_equal(got[name][key], ref[name][key], err_msg=name)


def test_speculative_results_after_resume_are_not_written(tmp_path, case5_env):
    settings = _settings(n_samples=14, n_episodes=12, max_steps=None)
    C.collect(settings, tmp_path / "ref", progress=False)
    first = C.collect(
        _settings(n_samples=14, n_episodes=2, max_steps=None), tmp_path / "run", progress=False
    )
    assert all(len(d) <= 14 for d in first.values())
    resumed = C.collect(
        settings, tmp_path / "run", executor=_AheadExecutor(4), progress=False, resume=True
    )
    _same(C.load_collection(tmp_path / "ref", settings), resumed)
    assert list(_shards(tmp_path / "run")) == list(_shards(tmp_path / "ref"))


def test_workers_return_arrays_and_write_nothing(tmp_path, case5_env, monkeypatch):
    from distributed_grid2op.execution import WorkerContext

    monkeypatch.chdir(tmp_path)
    settings = _settings()
    arrays = C._run_task(WorkerContext(), (0, 0), (settings, 20))
    assert not list(tmp_path.iterdir())
    assert arrays["state"].shape[0] == len(arrays["action_raw"]) > 0
    path = C.write_shard(tmp_path / C.shard_name(settings, 0, 0), settings, 0, 0, arrays)
    assert C.read_shard(path, settings.fingerprint())["episode_lengths"].sum() == len(
        arrays["action_raw"]
    )


def test_simulate_segment_starting_in_a_game_over_is_an_empty_episode(case5_env, monkeypatch):
    from distributed_grid2op.execution import WorkerContext

    settings = _settings("simulate", n_episodes=4, episodes_per_shard=4, max_steps=5)
    ctx = WorkerContext()
    env = C._worker_env(settings.spec, ctx)
    real = type(env).fast_forward_chronics
    calls = {"n": 0}

    def game_over_on_second(self, nb_timestep, init_dt=None):
        calls["n"] += 1
        real(self, nb_timestep, init_dt)
        if calls["n"] == 2:  # as when the do-nothing step landing on the start diverges
            self.done = True

    monkeypatch.setattr(type(env), "fast_forward_chronics", game_over_on_second)
    shard = C.run_shard(settings, 0, 0, 20, ctx)
    assert shard["episode_lengths"].tolist() == [5, 0, 5, 5]
    assert 1 not in shard["episode_id"].tolist()
    monkeypatch.setattr(type(env), "fast_forward_chronics", real)
    clean = C.run_shard(settings, 0, 0, 20, ctx)  # the other episodes are unaffected
    keep = clean["episode_id"] != 1
    np.testing.assert_array_equal(clean["action_raw"][keep], shard["action_raw"])
    np.testing.assert_array_equal(clean["next_state"][keep], shard["next_state"])


def test_sensitivity_mode_records_the_do_nothing_reference(tmp_path, case5_env):
    settings = _settings("sensitivity", actions_per_state=3, n_samples=30, max_steps=9)
    data = C.collect(settings, tmp_path, progress=False)
    for d in data.values():
        n = len(d)
        assert n > 0 and d.reference.shape == d.next_state.shape == (n, case5_env.n_line)
        ok = ~d.terminal
        # topology 0 (every element on bus 1) is what do-nothing keeps: no effect at all
        zero = ok & (d.action_raw == 0)
        np.testing.assert_array_equal(d.effects()[zero], 0.0)
        # three actions are simulated from each visited state: its rows share the state
        same_ep = d.episode_id[:3] == d.episode_id[0]
        assert same_ep.all()
        np.testing.assert_array_equal(d.state[0], d.state[2])
        np.testing.assert_array_equal(d.reference[0], d.reference[1])
        assert np.abs(d.effects()[ok & (d.action_raw != 0)]).max() > 0
        assert d.drop_terminal().reference.shape[0] == int(ok.sum())
    again = C.collect(settings, tmp_path / "again", progress=False)
    for sub in data:
        np.testing.assert_array_equal(again[sub].reference, data[sub].reference)
    with pytest.raises(UserError, match="sensitivity"):
        C.collect(_settings("thesis"), tmp_path / "t", progress=False)[SUBS[0]].effects()


def test_actions_per_state_is_refused_in_thesis_mode_and_changes_the_fingerprint():
    with pytest.raises(UserError, match="actions_per_state"):
        _settings("thesis", actions_per_state=2)
    one, four = _settings("simulate"), _settings("simulate", actions_per_state=4)
    assert one.fingerprint() != four.fingerprint()
    assert "actions_per_state" not in one.identity()  # older collections keep their fingerprint


def test_simulate_segment_in_an_env_no_longer_initialised_is_an_empty_episode(
    case5_env, monkeypatch
):
    """grid2op may leave the env uninitialised after a fast-forward into a game over without
    ``env.done`` (the 118-bus crash 'This environment is not initialized')."""
    from distributed_grid2op.execution import WorkerContext

    settings = _settings("simulate", n_episodes=3, episodes_per_shard=3, max_steps=4)
    ctx = WorkerContext()
    env = C._worker_env(settings.spec, ctx)
    real = type(env).get_obs
    calls = {"ff": 0}
    real_ff = type(env).fast_forward_chronics

    def ff(self, nb_timestep, init_dt=None):
        real_ff(self, nb_timestep, init_dt)
        calls["ff"] += 1

    def get_obs(self, *a, **kw):
        if calls["ff"] == 2 and not calls.get("raised"):  # once, right after the 2nd ff
            calls["raised"] = True
            raise RuntimeError("This environment is not initialized. You cannot retrieve ...")
        return real(self, *a, **kw)

    monkeypatch.setattr(type(env), "fast_forward_chronics", ff)
    monkeypatch.setattr(type(env), "get_obs", get_obs)
    shard = C.run_shard(settings, 0, 0, 20, ctx)
    assert shard["episode_lengths"].tolist() == [4, 0, 4]


def test_stop_tolerance_stops_a_substation_once_its_effect_column_is_stable(tmp_path, case5_env):
    base = dict(actions_per_state=3, n_samples=90, n_episodes=12, max_steps=5, episodes_per_shard=1)
    full = C.collect(_settings("sensitivity", **base), tmp_path / "full", progress=False)
    tol = 0.2
    loose = _settings("sensitivity", stop_tolerance=tol, **base)
    stopped = C.collect(loose, tmp_path / "loose", progress=False)
    for s, d in full.items():
        # where the rule must stop: the first shard (from the second on) after which the
        # median-effect column moved by less than tol, measured on the full data's prefix
        eps = np.unique(d.episode_id)
        cols = [C.effect_column(d.effects()[~d.terminal & (d.episode_id <= e)]) for e in eps]
        change = [C.column_change(a, b) for a, b in zip(cols, cols[1:])]
        stop = next((i + 1 for i, c in enumerate(change) if c < tol), len(eps) - 1)
        n = int(np.sum(d.episode_id <= eps[stop]))
        assert len(stopped[s]) == min(n, len(d))
        np.testing.assert_array_equal(stopped[s].next_state, d.next_state[: len(stopped[s])])
    assert sum(map(len, stopped.values())) < sum(map(len, full.values()))  # it saved something
    # the same shards with workers computing ahead (decided on the written prefix only)
    again = C.collect(loose, tmp_path / "ahead", executor=_AheadExecutor(4), progress=False)
    _same(stopped, again)
    assert list(_shards(tmp_path / "ahead")) == list(_shards(tmp_path / "loose"))
    # a resume stops at the same place: nothing more is collected
    resumed = C.collect(loose, tmp_path / "loose", progress=False, resume=True)
    _same(stopped, resumed)
    assert (
        loose.identity()["stop_tolerance"] == tol
        and "stop_tolerance" not in _settings("sensitivity").identity()
    )
    with pytest.raises(UserError, match="sensitivity"):
        _settings("simulate", stop_tolerance=tol)
    with pytest.raises(UserError, match="> 0"):
        _settings("sensitivity", stop_tolerance=0.0)
