"""``python -m experiments.pretrained RUN --name NAME``: ship an agent a reproduction trained.

``RUN`` is the folder of a training reproduction with one variant and one training seed, e.g.
``python -m experiments.reproduce training --config experiments/configs/pretrained_case14.toml
--out runs/pretrained`` -> ``runs/pretrained/training/full-<hash>`` (``--config``: that file,
checked against the run's hash). Its agent (``final/``: ``weights.pt`` copied byte for byte,
``agent.json`` with its training env made portable, `portable_agent_meta`) goes into
``distributed_grid2op/data/pretrained/NAME/`` (``--dest``) with ``pretrained.json``: the grid,
env and thermal limit scale it is evaluated on, its action sets, the training command, config,
seed, git commit and whether the tree had uncommitted changes, the command that generates its
training scenarios (never a local path), the SHA-256 of the weights, and the run's evaluation
rows of this agent and the baselines. The folder is written as a whole (atomically). A tree
with uncommitted changes to tracked files is refused unless ``--allow-dirty`` (then recorded).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

from distributed_grid2op.checkpoints import META_FILE, WEIGHTS_FILE
from distributed_grid2op.cli import ArgumentParser, run
from distributed_grid2op.errors import UserError
from distributed_grid2op.io import atomic_dir, write_json
from distributed_grid2op.pretrained import INFO_FILE
from experiments._argv import to_argv
from experiments.runs import config_hash, load_config

FORMAT = 1
DEST = "distributed_grid2op/data/pretrained"


def git_state() -> dict:
    """``{"commit": HEAD's full hash, "dirty": whether tracked files have uncommitted
    changes}`` of the working tree (both None outside git)."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()  # fmt: skip
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, check=True).stdout  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": None}
    return {"commit": head or None, "dirty": bool(status.strip())}


def train_env(cfg: dict) -> str:
    """Where a training reproduction's scenarios come from, portably: the command that
    generates them (its ``[scenarios]`` table) or the env named in its config, never a local
    folder."""
    options = cfg.get("scenarios")
    if options:
        options = {k: v for k, v in options.items() if k not in ("workers", "quiet")}
        return " ".join(["python -m distributed_grid2op.scenarios", *to_argv(options),
                         "--out", "SCENARIOS"])  # fmt: skip
    return str(cfg.get("env", {}).get("env", "l2rpn_case14_sandbox"))


def portable_agent_meta(meta: dict, env: str) -> dict:
    """``agent.json`` without the local paths of the machine that trained it: its env becomes
    ``env`` (`train_env`) and its env folder None. Nothing that loading checks changes."""
    return {**meta, "env": {**meta["env"], "env": env, "env_path": None}}


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: not a finished training reproduction ({exc})") from exc


def provenance(run_dir: Path, name: str, config: str, git: dict) -> tuple[dict, dict, Path]:
    """``pretrained.json`` of the one agent of training reproduction ``run_dir`` (``git``: its
    `git_state`), the agent's portable ``agent.json`` and its folder; `UserError` unless
    ``config`` is the config file of that run."""
    cfg = _read_json(run_dir / "config.json")
    file_cfg = load_config("training", cfg.get("profile", "quick"), config)
    if f"{file_cfg['profile']}-{config_hash(file_cfg)}" != run_dir.name:
        raise UserError(f"{run_dir} was not made by {config} (its folder would be "
                        f"{file_cfg['profile']}-{config_hash(file_cfg)})")  # fmt: skip
    results = _read_json(run_dir / "results.json")
    seeds = [int(s) for s in cfg.get("seeds", [cfg["seed"]])]
    if len(cfg.get("variant", [])) != 1 or len(seeds) != 1:
        raise UserError(f"{run_dir}: ship a run with one variant and one seed (its config has "
                        f"{len(cfg.get('variant', []))} variants, seeds {seeds})")  # fmt: skip
    variant, seed = cfg["variant"][0]["name"], seeds[0]
    run_name = f"{variant}-s{seed}"
    folder = run_dir / "train" / run_name / "final"
    meta = _read_json(folder / META_FILE)
    weights = (folder / WEIGHTS_FILE).read_bytes()
    bundled = next((e for e in cfg["evaluate"] if e["name"] == "bundled"), cfg["evaluate"][0])
    evaluation = {
        table: [r for r in rows if not r["run"].startswith(("distributed-", "centralized-"))
                or r["run"].startswith(run_name)]
        for table, rows in results.get("evaluation", {}).items()
    }  # fmt: skip
    info = {
        "format": FORMAT,
        "name": name,
        "env": bundled.get("env", cfg.get("env", {}).get("env", "l2rpn_case14_sandbox")),
        "thermal_limit_scale": float(cfg.get("env", {}).get("thermal_limit_scale", 1.0)),
        "grid": {k: meta["env"][k] for k in ("n_sub", "n_line", "sub_info")},
        "factorization": meta["factorization"],
        "centralized": meta["centralized"],
        "action_sets": meta["action_sets"],
        "n_actions": meta["n_actions"],
        "kept_actions": [len(k) for k in meta["kept_actions"] or []],
        "learner": meta["learner"],
        "danger": meta["danger"],
        "top_k": meta["top_k"],
        "training": {
            "command": f"python -m experiments.reproduce training --config {config} "
            f"--out runs/pretrained && python -m experiments.pretrained "
            f"runs/pretrained/training/{run_dir.name} --name {name} --config {config}",
            "config_file": str(config),
            "config": cfg,
            "variant": variant,
            "seed": seed,
            "git_commit": git.get("commit"),
            "git_dirty": git.get("dirty"),
            "versions": _read_json(run_dir / "versions.json"),
            "train_env": train_env(cfg),
            "train_split": cfg.get("train", {}).get("scenarios", "train"),
        },
        "weights_sha256": hashlib.sha256(weights).hexdigest(),
        "evaluation": evaluation,
    }
    return info, portable_agent_meta(meta, info["training"]["train_env"]), folder


def export(run_dir, name: str, config, dest=DEST, commit: str | None = None,
           allow_dirty: bool = False) -> Path:  # fmt: skip
    """Copy the agent of ``run_dir`` (made by ``config``) into ``dest/name`` with its
    ``pretrained.json``. ``commit``: the training code's commit (default: this tree's, which
    must have no uncommitted changes to tracked files unless ``allow_dirty``: then recorded)."""
    run_dir = Path(run_dir)
    git = {"commit": commit, "dirty": False} if commit else git_state()
    if git["dirty"] and not allow_dirty:
        raise UserError(
            f"the working tree at {git['commit']} has uncommitted changes: commit them, or pass "
            "--allow-dirty (pretrained.json then records git_dirty: true)"
        )
    info, meta, folder = provenance(run_dir, name, str(config), git)
    target = Path(dest) / name
    with atomic_dir(target) as tmp:
        (tmp / WEIGHTS_FILE).write_bytes((folder / WEIGHTS_FILE).read_bytes())
        write_json(tmp / META_FILE, meta)
        write_json(tmp / INFO_FILE, info)
    return target


def main(argv=None) -> int:
    p = ArgumentParser(prog="python -m experiments.pretrained", description=__doc__.splitlines()[0])
    p.add_argument("run", help="a training reproduction folder (one variant, one seed)")
    p.add_argument("--name", required=True, help="the shipped agent's name (pretrained:NAME)")
    p.add_argument("--config", required=True, help="the run's config file (checked by its hash)")
    p.add_argument("--dest", default=DEST, help=f"where shipped agents live (default: {DEST})")
    p.add_argument("--commit", help="git commit of the training code (default: this tree's)")
    p.add_argument("--allow-dirty", action="store_true",
                   help="ship from a tree with uncommitted changes (recorded as git_dirty)")  # fmt: skip
    args = p.parse_args(argv)
    target = export(args.run, args.name, args.config, args.dest, args.commit, args.allow_dirty)
    size = sum(f.stat().st_size for f in target.iterdir())
    print(f"wrote {target} ({size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main))
