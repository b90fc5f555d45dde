"""The agents shipped with the package: they load, act, and are what their metadata says."""

from __future__ import annotations

import hashlib
import json
import shutil
import warnings
from importlib.resources import files

import pandas as pd
import pytest

from distributed_grid2op import cli, pretrained
from distributed_grid2op.agents.hierarchical import grid_signature, read_agent_files
from distributed_grid2op.checkpoints import META_FILE, WEIGHTS_FILE, find_agent
from distributed_grid2op.errors import UserError
from distributed_grid2op.evaluate import main as evaluate_main

MAX_BYTES = 5_000_000  # every shipped agent together: a few MB


def test_case14_is_shipped_small_and_resolves():
    assert "case14" in pretrained.available()
    folder = pretrained.root() / "case14"
    assert pretrained.resolve("pretrained:case14") == folder
    assert pretrained.resolve("runs/agent") == "runs/agent"  # folders stay folders
    assert find_agent("pretrained:case14") == folder  # the one path every agent loads through
    assert sorted(p.name for p in folder.iterdir()) == [META_FILE, pretrained.INFO_FILE,
                                                       WEIGHTS_FILE]  # fmt: skip
    total = sum(f.stat().st_size for f in pretrained.root().rglob("*") if f.is_file())
    assert total < MAX_BYTES


def test_case14_matches_its_metadata():
    info = pretrained.info("case14")
    assert (info["env"], info["thermal_limit_scale"]) == ("l2rpn_case14_sandbox", 0.85)
    files, _ = read_agent_files("pretrained:case14")
    assert hashlib.sha256(files[WEIGHTS_FILE]).hexdigest() == info["weights_sha256"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # other thermal limits than trained with would warn
        agent = pretrained.load("case14")
    env = agent.env
    meta = json.loads(json.dumps(agent.metadata()))  # as written to agent.json
    assert {k: grid_signature(env)[k] for k in info["grid"]} == info["grid"]
    assert meta["thermal_limit_scale"] == info["thermal_limit_scale"] == 0.85
    assert meta["action_sets"] == info["action_sets"] and meta["n_actions"] == info["n_actions"]
    assert [len(k) for k in meta["kept_actions"]] == info["kept_actions"]
    assert meta["factorization"] == info["factorization"] and not info["centralized"]
    assert info["training"]["seed"] == meta["seed"]
    assert info["training"]["config_file"] == "experiments/configs/pretrained_case14.toml"
    # the shipped numbers are those of the run it comes from: ahead of do-nothing
    rows = {r["run"]: r for r in info["evaluation"]["bundled"]}
    alone = [r for name, r in rows.items() if name.endswith("-top0")]
    assert len(alone) == 1
    assert alone[0]["survived_fraction_mean"] > rows["do-nothing"]["survived_fraction_mean"]


def test_case14_acts_in_the_evaluation_loop(tmp_path, capsys):
    out = tmp_path / "eval"
    args = ["--agents", "pretrained:case14", "--baselines", "do-nothing", "--env",
            "l2rpn_case14_sandbox", "--thermal-limit-scale", "0.85", "--episodes", "1",
            "--max-steps", "120", "--out", str(out), "--workers", "1", "--no-progress"]  # fmt: skip
    assert cli.run(evaluate_main, args) == 0
    runs = pd.read_csv(out / "run_summary.csv").set_index("run")
    assert set(runs.index) == {"pretrained-case14", "do-nothing"}
    assert runs.loc["pretrained-case14", "decisions_mean"] > 0  # it did decide
    config = json.loads((out / "run_config.json").read_text())
    agent = next(r for r in config["runs"] if r["kind"] == "agent")
    assert agent["source"] == str(pretrained.root() / "case14")


@pytest.mark.parametrize("name", ["nope", "", "case14/.."])
def test_unknown_pretrained_name_is_a_one_line_error(name, tmp_path, capsys):
    args = ["--agents", f"pretrained:{name}", "--baselines", "none", "--out", str(tmp_path / "o")]
    assert cli.run(evaluate_main, args) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: unknown pretrained agent {name!r}; available: ")
    assert "case14" in err and err.count("\n") == 1
    with pytest.raises(UserError, match="unknown pretrained agent"):
        pretrained.load(name)


def test_export_ships_the_run_agent_byte_for_byte(tmp_path, monkeypatch):
    from experiments import pretrained as ship
    from experiments.pretrained import export
    from experiments.runs import config_hash, load_config

    config = tmp_path / "one.toml"
    config.write_text(files("experiments").joinpath("configs/pretrained_case14.toml").read_text())
    cfg = load_config("training", "quick", config)
    run = tmp_path / "training" / f"{cfg['profile']}-{config_hash(cfg)}"
    final = run / "train" / f"distributed-s{cfg['seeds'][0]}" / "final"
    final.mkdir(parents=True)
    for name in (META_FILE, WEIGHTS_FILE):
        shutil.copy(pretrained.root() / "case14" / name, final / name)
    body = {k: v for k, v in cfg.items() if not k.startswith("_")}
    (run / "config.json").write_text(json.dumps(body))
    (run / "versions.json").write_text("{}")
    rows = [
        {"run": "do-nothing"},
        {"run": "centralized-s1"},
        {"run": f"distributed-s{cfg['seeds'][0]}-top0"},
    ]
    (run / "results.json").write_text(json.dumps({"evaluation": {"bundled": rows}}))
    meta = json.loads((final / META_FILE).read_text())
    meta["env"].update(env="/tmp/x/scenarios", env_path="/tmp/x/scenarios")  # as trained
    (final / META_FILE).write_text(json.dumps(meta))
    target = export(run, "mine", config, dest=tmp_path / "dest", commit="abc")
    assert (target / WEIGHTS_FILE).read_bytes() == (final / WEIGHTS_FILE).read_bytes()
    # agent.json: the same but for the training env, portable (no local folder)
    shipped = json.loads((target / META_FILE).read_text())
    assert "/tmp/x" not in (target / META_FILE).read_text() and shipped["env"]["env_path"] is None
    command = ("python -m distributed_grid2op.scenarios --source l2rpn_case14_sandbox --n 400 "
               "--steps 575 --seed 90566 --thermal-limit-scale 0.85 --no-ramp-limits --out SCENARIOS")  # fmt: skip
    assert shipped["env"]["env"] == command
    assert {**shipped, "env": meta["env"]} == meta
    info = json.loads((target / pretrained.INFO_FILE).read_text())
    assert "/tmp/x" not in (target / pretrained.INFO_FILE).read_text()  # the training folder
    assert info["training"]["git_commit"] == "abc" and info["thermal_limit_scale"] == 0.85
    assert info["training"]["git_dirty"] is False and info["training"]["train_env"] == command
    # a tree with uncommitted changes is refused, or shipped and recorded as such
    monkeypatch.setattr(ship, "git_state", lambda: {"commit": "def", "dirty": True})
    with pytest.raises(UserError, match="uncommitted changes.*--allow-dirty"):
        export(run, "mine", config, dest=tmp_path / "dirty")
    info = json.loads((export(run, "mine", config, dest=tmp_path / "dirty", allow_dirty=True)
                       / pretrained.INFO_FILE).read_text())  # fmt: skip
    assert (info["training"]["git_commit"], info["training"]["git_dirty"]) == ("def", True)
    assert [r["run"] for r in info["evaluation"]["bundled"]] == ["do-nothing", rows[2]["run"]]
    other = tmp_path / "other.toml"
    other.write_text(config.read_text().replace("episodes = 100", "episodes = 101"))
    with pytest.raises(UserError, match="was not made by"):
        export(run, "mine", other, dest=tmp_path / "dest", commit="abc")
