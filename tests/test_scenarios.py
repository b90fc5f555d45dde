"""Scenario generation: model statistics, determinism, env folder contract, resume, splits, errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from distributed_grid2op.cli import run
from distributed_grid2op.envs import make_env, quiet_grid2op
from distributed_grid2op.errors import UnknownEnvError, UserError
from distributed_grid2op.scenarios import InjectionModel, generate, read_source, writer
from distributed_grid2op.scenarios.__main__ import main as cli_main
from distributed_grid2op.scenarios.validate import compare_statistics
from distributed_grid2op.splits import split_scenarios

SOURCE = "l2rpn_case14_sandbox"


@pytest.fixture(scope="module")
def source():
    with quiet_grid2op():
        env = make_env(SOURCE)
        data = read_source(env, SOURCE)
        env.close()
    return data


@pytest.fixture(scope="module")
def model(source):
    return InjectionModel().fit(source)


def _files(folder):
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_sampling_is_deterministic_per_seed(model):
    a = model.sample(300, np.random.default_rng(7))
    b = model.sample(300, np.random.default_rng(7))
    c = model.sample(300, np.random.default_rng(8))
    for kind in ("load_p", "load_q", "prod_p", "prod_v", "load_p_forecasted", "prod_p_forecasted"):
        np.testing.assert_array_equal(a[kind], b[kind])
    assert not np.allclose(a["load_p"], c["load_p"])
    assert a["load_p"].shape == (300, 11) and a["prod_p"].shape == (300, 6)


def test_long_sample_matches_source_statistics(source, model):
    """Tolerances: hourly means within 5% of each load's level on average (10% worst hour),
    hourly std ratio in [0.7, 1.3], lag-1 autocorrelation within 0.06, cross-correlation
    within 0.1 on average; range, night zeros and the load/generation balance are kept."""
    rng = np.random.default_rng(0)
    start = source.starts[0]
    gen = [model.sample(source.n_steps[0], rng, start=start) for _ in range(40)]
    src = [{k: source.arrays[k][c] for k in ("load_p", "load_q", "prod_p")} for c in range(3)]
    times = [source.times(0)] * len(gen)
    stats = compare_statistics(
        src, [source.times(c) for c in range(3)], gen, times, ~source.gen_dispatchable
    )
    assert stats["hourly_mean_rel_error_loads"] < 0.05
    assert stats["hourly_mean_rel_error_loads_max"] < 0.10
    assert 0.7 < stats["hourly_std_ratio_loads_median"] < 1.3
    assert stats["acf1_abs_error_mean"] < 0.06
    assert stats["corr_abs_error_mean"] < 0.10
    x = np.vstack([g["load_p"] for g in gen])
    src_lp = np.vstack(source.arrays["load_p"])
    assert np.all(x >= src_lp.min(0) - 1e-9) and np.all(x <= src_lp.max(0) + 1e-9)
    # solar is zero at night in the source, so it is zero at the same hours in the samples
    hours = np.tile(np.asarray(source.times(0).hour), len(gen))
    solar = [i for i, t in enumerate(source.gen_type) if t == "solar"]
    src_prod = np.vstack(source.arrays["prod_p"])
    src_hours = np.concatenate([np.asarray(source.times(c).hour) for c in range(3)])
    night = [h for h in range(24) if np.all(src_prod[src_hours == h][:, solar] == 0)]
    assert night, "the source should have night hours without solar"
    prod = np.vstack([g["prod_p"] for g in gen])
    assert np.all(prod[np.isin(hours, night)][:, solar] == 0)
    # generation = load x (1 + loss ratio) on every row (dispatch never hits its limits here)
    ratio = prod.sum(1) / x.sum(1) - 1
    np.testing.assert_allclose(ratio, model.loss_ratio_, atol=1e-6)


def test_generated_env_loads_runs_and_matches_files(tmp_path):
    out = generate(SOURCE, tmp_path / "gen", 3, 200, seed=0, validate=False, progress=False)
    meta = json.loads((out / "generation.json").read_text())
    assert meta["status"] == "complete" and meta["settings"]["seed"] == 0
    assert sorted(p.name for p in (out / "chronics").iterdir()) == ["0000", "0001", "0002"]
    with quiet_grid2op():
        env = make_env(out, seed=0)
        obs = env.reset(options={"time serie id": 1})
        # columns are matched by name: the observation's loads equal the CSV row of the same names
        first = pd.read_csv(out / "chronics" / "0001" / "load_p.csv", sep=";")
        np.testing.assert_allclose(
            obs.load_p, first.iloc[0][list(env.name_load)].to_numpy(), atol=1e-4
        )
        fc = pd.read_csv(out / "chronics" / "0001" / "load_p_forecasted.csv", sep=";")
        sim_obs, *_ = obs.simulate(env.action_space())
        np.testing.assert_allclose(
            sim_obs.load_p, fc.iloc[0][list(env.name_load)].to_numpy(), atol=1e-4
        )
        for step in range(100):
            obs, _, done, info = env.step(env.action_space())
            assert not done, f"game over at step {step}: {info['exception']}"
        env.close()
    assert (out / "grid.json").is_file() and (out / "config.py").is_file()


def test_splits_are_disjoint_and_cover(tmp_path):
    out = generate(
        SOURCE,
        tmp_path / "gen",
        10,
        20,
        seed=3,
        validate=False,
        progress=False,
        splits=(0.6, 0.2, 0.2),
    )
    with quiet_grid2op():
        env = make_env(out)
        parts = {s: set(split_scenarios(env, s)) for s in ("train", "val", "test")}
        env.close()
    assert parts["train"].isdisjoint(parts["val"]) and parts["train"].isdisjoint(parts["test"])
    assert parts["val"].isdisjoint(parts["test"])
    assert set().union(*parts.values()) == set(range(10))
    assert [len(parts[s]) for s in ("train", "val", "test")] == [6, 2, 2]


def test_resume_after_interruption_keeps_valid_scenarios(tmp_path, monkeypatch):
    clean = generate(SOURCE, tmp_path / "clean", 5, 50, seed=1, validate=False, progress=False)
    real = writer.write_files  # the driver's write of one scenario folder
    calls = {"n": 0}

    def crashing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("simulated crash")
        return real(*args, **kwargs)

    monkeypatch.setattr(writer, "write_files", crashing)
    with pytest.raises(RuntimeError, match="simulated crash"):
        generate(SOURCE, tmp_path / "run", 5, 50, seed=1, validate=False, progress=False)
    chronics = tmp_path / "run" / "chronics"
    kept = sorted(p.name for p in chronics.iterdir() if not p.name.startswith("."))
    assert kept == ["0000", "0001"]
    before = {n: _files(chronics / n) for n in kept}
    mtimes = {n: (chronics / n / "load_p.csv").stat().st_mtime_ns for n in kept}
    monkeypatch.setattr(writer, "write_files", real)
    out = generate(SOURCE, tmp_path / "run", 5, 50, seed=1, validate=False, progress=False)
    for n in kept:  # kept, not rewritten
        assert _files(chronics / n) == before[n]
        assert (chronics / n / "load_p.csv").stat().st_mtime_ns == mtimes[n]
    assert _files(out / "chronics") == _files(clean / "chronics")  # same as an uninterrupted run
    assert not [p for p in chronics.iterdir() if p.name.startswith(".")]
    meta = json.loads((out / "generation.json").read_text())
    assert (
        meta["scenarios"]["kept_from_earlier_runs"] == 2
        and meta["scenarios"]["written_this_run"] == 3
    )


def test_rerun_with_other_settings_is_refused(tmp_path):
    generate(SOURCE, tmp_path / "gen", 2, 20, seed=0, validate=False, progress=False)
    with pytest.raises(UserError, match="other settings"):
        generate(SOURCE, tmp_path / "gen", 2, 20, seed=1, validate=False, progress=False)


def test_bad_arguments_give_clear_errors(tmp_path, capsys):
    with pytest.raises(UserError, match="n_scenarios"):
        generate(SOURCE, tmp_path / "a", 0, 10)
    with pytest.raises(UserError, match="n_steps"):
        generate(SOURCE, tmp_path / "a", 2, -1)
    with pytest.raises(UnknownEnvError, match="unknown env"):
        generate("no_such_env", tmp_path / "a", 2, 10)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(UserError, match="not writable"):
        generate(SOURCE, blocker / "sub", 2, 10)
    for argv in (
        ["--n", "0", "--out", str(tmp_path / "b")],
        ["--n", "2", "--out", str(blocker / "sub")],
        ["--source", "nope", "--n", "2", "--out", str(tmp_path / "c")],
    ):
        with pytest.raises(SystemExit) as exc:
            raise SystemExit(run(cli_main, argv))
        assert exc.value.code == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error:") and "\n" not in err


def test_validation_report_and_cli(tmp_path, capsys):
    code = run(
        cli_main,
        [
            "--n",
            "2",
            "--steps",
            "60",
            "--out",
            str(tmp_path / "gen"),
            "--replay",
            "2",
            "--quiet",
            "--seed",
            "4",
        ],
    )
    assert code == 0
    folder = tmp_path / "gen" / "validation"
    report = (folder / "report.md").read_text()
    assert "Do-nothing survival" in report and "0000, 0001" in report
    for name in ("hourly_profiles.png", "correlation.png", "survival.png"):
        assert (folder / name).stat().st_size > 1000
    summary = json.loads((folder / "validation.json").read_text())
    surv = summary["survival"]["1.0"]
    assert surv["source"]["n"] == 3 and surv["generated"]["n"] == 2
    assert 0.0 <= surv["generated"]["mean_survived_fraction"] <= 1.0
    assert "wrote 2 scenarios" in capsys.readouterr().out


@pytest.mark.slow
def test_parallel_workers_write_the_same_files(tmp_path):
    one = generate(SOURCE, tmp_path / "one", 4, 40, seed=2, validate=False, progress=False)
    two = generate(
        SOURCE, tmp_path / "two", 4, 40, seed=2, validate=False, progress=False, workers=2
    )
    assert _files(one / "chronics") == _files(two / "chronics")


def test_bz2_format_and_case5_source(tmp_path):
    # grid2op names an env (and caches its classes) by folder name: a case14 env called "gen"
    # made earlier in this process would be reused, so the case5 folder gets its own name
    out = generate(
        "rte_case5_example",
        tmp_path / "case5_gen",
        2,
        30,
        seed=0,
        validate=False,
        progress=False,
        fmt="bz2",
    )
    assert (out / "chronics" / "0000" / "prod_p.csv.bz2").is_file()
    with quiet_grid2op():
        env = make_env(out)
        obs = env.reset(options={"time serie id": 0})
        prod = pd.read_csv(out / "chronics" / "0000" / "prod_p.csv.bz2", sep=";")
        np.testing.assert_allclose(
            obs.gen_p[~env.gen_redispatchable],
            prod.iloc[0][list(env.name_gen[~env.gen_redispatchable])].to_numpy(),
            atol=1e-4,
        )
        env.close()


def test_scenario_whose_first_power_flow_diverges_is_redrawn(tmp_path, monkeypatch):
    from distributed_grid2op.scenarios import generator

    real = generator._Worker.power_flows
    seen = []

    def diverge_first(self, arrays):
        seen.append(arrays["load_p"][0].copy())
        if len(seen) == 1:
            return 0, 0.0  # as if the first power flow of the first draw diverged
        return real(self, arrays)

    monkeypatch.setattr(generator._Worker, "power_flows", diverge_first)
    out = generate(SOURCE, tmp_path / "redraw", 1, 30, seed=5, validate=False, progress=False)
    check = json.loads((out / "chronics" / "0000" / "check.json").read_text())
    assert check["attempts"] == 2 and check["converged_steps"] == 30
    written = pd.read_csv(out / "chronics" / "0000" / "load_p.csv", sep=";").to_numpy()[0]
    np.testing.assert_allclose(written, np.round(seen[1], 1))
    assert not np.allclose(seen[0], seen[1])
    assert json.loads((out / "generation.json").read_text())["scenarios"]["redrawn"] == 1


def test_workers_return_file_bytes_and_only_the_driver_writes(tmp_path, monkeypatch):
    from distributed_grid2op.execution import WorkerContext
    from distributed_grid2op.scenarios import generator

    out = generate(SOURCE, tmp_path / "gen", 2, 30, seed=4, validate=False, progress=False)
    settings = json.loads((out / "generation.json").read_text())["settings"]
    with quiet_grid2op():
        env = make_env(SOURCE)
        model = InjectionModel().fit(read_source(env, SOURCE))
        env.close()
    work = tmp_path / "worker_cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    record = generator._make_scenario(WorkerContext(), 1, (model, SOURCE, settings))
    assert not list(work.iterdir())  # the worker wrote nothing
    assert record["name"] == "0001"
    assert record["files"] == _files(out / "chronics" / "0001")


def test_replay_is_the_same_on_any_executor():
    from distributed_grid2op.execution import Executor
    from distributed_grid2op.scenarios.validate import replay_do_nothing

    serial = replay_do_nothing(SOURCE, [2, 0], max_steps=30)
    with Executor(2) as ex:
        parallel = replay_do_nothing(SOURCE, [2, 0], max_steps=30, executor=ex)
    assert serial == parallel and [total for _, total in serial] == [30, 30]


def test_multi_horizon_forecasts_and_maintenance_files_follow_the_source(tmp_path):
    """l2rpn_idf_2023 forecasts 12 horizons (5 to 60 min) and draws maintenance from a
    per-chronic maintenance_meta.json: generated scenarios carry both, and the env plays."""
    out = tmp_path / "idf_gen"
    generate("l2rpn_idf_2023", out, n_scenarios=1, n_steps=24, seed=1, validate=False,
             progress=False)  # fmt: skip
    folder = out / "chronics" / "0000"
    assert (folder / "maintenance_meta.json").is_file()
    loads = pd.read_csv(folder / "load_p.csv", sep=";")
    fc = pd.read_csv(folder / "load_p_forecasted.csv", sep=";")
    assert len(loads) == 24 and len(fc) == 12 * 24
    env = make_env(str(out))
    try:
        # the dispatchable schedule moves within the generators' ramps (not so before: up to
        # 204 MW over a ramp in one step on 118-bus scenarios)
        prod = pd.read_csv(folder / "prod_p.csv", sep=";")[[str(n) for n in env.name_gen]]
        step = np.diff(prod.to_numpy(dtype=float), axis=0)[:, env.gen_redispatchable]
        tol = 0.05 + 1e-6  # one written decimal on both rows
        assert np.all(step <= env.gen_max_ramp_up[env.gen_redispatchable] + tol)
        assert np.all(-step <= env.gen_max_ramp_down[env.gen_redispatchable] + tol)
        obs = env.reset()
        sim, _, done, info = obs.simulate(env.action_space({}), time_step=12)
        assert not done and not info["exception"]
        # horizon 12 of step 0 forecasts row 12, within the forecast noise
        ahead = loads.iloc[12][[str(n) for n in env.name_load]].to_numpy(dtype=float)
        assert np.abs(sim.load_p - ahead).mean() < 0.2 * np.abs(ahead).mean()
    finally:
        env.close()


def test_dispatchable_schedules_respect_ramps(source, model):
    """Generated schedules of dispatchable generators move at most one ramp per step (grid2op
    ends an episode that redispatches on a schedule that does not); the dispatchable total is
    kept where the ramps allow; ``ramp_limits=False`` gives the unlimited schedule."""
    disp = np.asarray(source.gen_dispatchable)
    up, down = source.gen_ramp_up[disp], source.gen_ramp_down[disp]
    tight = InjectionModel().fit(source)
    tight.gen_ramps_ = (source.gen_ramp_up / 4, source.gen_ramp_down / 4)  # force the limits
    loose = InjectionModel(ramp_limits=False).fit(source)
    for m, (u, d) in ((model, (up, down)), (tight, (up / 4, down / 4))):
        out = m.sample(600, np.random.default_rng(3))
        step = np.diff(out["prod_p"][:, disp], axis=0)
        assert np.all(step <= u + 1e-9) and np.all(-step <= d + 1e-9)
    free = loose.sample(600, np.random.default_rng(3))
    limited = tight.sample(600, np.random.default_rng(3))
    np.testing.assert_array_equal(free["load_p"], limited["load_p"])  # same draw
    np.testing.assert_array_equal(free["prod_p"][:, ~disp], limited["prod_p"][:, ~disp])
    moved = np.abs(free["prod_p"][:, disp] - limited["prod_p"][:, disp]).sum(1)
    assert moved[0] == 0 and moved.max() > 0  # the first row is free; the limits did bite
    # the total is kept to within what the ramps cannot follow
    gap = np.abs(free["prod_p"][:, disp].sum(1) - limited["prod_p"][:, disp].sum(1))
    assert np.median(gap) < 1e-6
    # forecasts follow the limited schedule of the rows they forecast
    fc_free, fc_lim = free["prod_p_forecasted"], limited["prod_p_forecasted"]
    assert np.abs(fc_lim[:, disp] - fc_free[:, disp]).max() > 0


def test_net_load_steps_are_what_the_dispatch_must_follow():
    """The validation's step-change statistic: |change| of loads minus renewables per step."""
    from distributed_grid2op.scenarios.validate import _net_load_steps

    data = [{"load_p": np.array([[6.0, 4.0], [7.0, 5.0], [6.0, 5.0]]),
             "prod_p": np.array([[1.0, 50.0], [1.0, 60.0], [3.0, 40.0]])}]  # fmt: skip
    renewable = np.array([True, False])  # the dispatchable column does not count
    np.testing.assert_allclose(_net_load_steps(data, renewable), [2.0, 3.0])
