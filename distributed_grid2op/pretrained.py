"""Trained agents shipped with the package: ``pretrained:NAME`` wherever an agent folder goes.

``distributed_grid2op/data/pretrained/<NAME>/`` is an ordinary agent folder (``agent.json`` and
``weights.pt``, exactly as training wrote its ``final/``) plus ``pretrained.json``: where it
comes from (grid and env, thermal limit scale, action sets, training command, config and seed,
git commit of the training code) and what it measured (its evaluation against the baselines).
Evaluation reads it through the same path as any trained agent's folder
(`agents.hierarchical.read_agent_files`); this module only maps a name to that folder.

    python -m distributed_grid2op.evaluate --agents pretrained:case14 \\
        --env l2rpn_case14_sandbox --thermal-limit-scale 0.85

    from distributed_grid2op import pretrained
    agent = pretrained.load("case14")  # on its own env: agent.env (case14, limits x 0.85)
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from distributed_grid2op.errors import UserError

PREFIX = "pretrained:"
INFO_FILE = "pretrained.json"


def root() -> Path:
    """The folder holding one sub-folder per shipped agent."""
    return Path(str(resources.files("distributed_grid2op").joinpath("data/pretrained")))


def available() -> list[str]:
    """Names of the shipped agents, sorted."""
    folder = root()
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if (p / INFO_FILE).is_file())


def agent_dir(name: str) -> Path:
    """The agent folder of the shipped agent ``name``; `UserError` naming the available ones."""
    if name not in available():
        raise UserError(
            f"unknown pretrained agent {name!r}; available: {', '.join(available()) or 'none'}"
        )
    return root() / name


def resolve(source: str | Path) -> str | Path:
    """``pretrained:NAME`` -> the shipped agent's folder; anything else unchanged."""
    text = str(source)
    return agent_dir(text[len(PREFIX) :]) if text.startswith(PREFIX) else source


def info(name: str) -> dict:
    """The shipped agent's ``pretrained.json`` (provenance and measured results)."""
    return json.loads((agent_dir(name) / INFO_FILE).read_text())


def make_env(name: str, **kwargs):
    """The env the shipped agent ``name`` is evaluated on (its grid and thermal limit scale)."""
    from distributed_grid2op.envs import make_env as make

    meta = info(name)
    return make(meta["env"], thermal_limit_scale=meta["thermal_limit_scale"], **kwargs)


def load(name: str, env=None):
    """The shipped agent ``name`` as a `HierarchicalAgent` on ``env`` (default: `make_env`,
    then ``agent.env``); `UserError` if ``env`` is another grid."""
    from distributed_grid2op.agents.hierarchical import load_agent

    return load_agent(agent_dir(name), make_env(name) if env is None else env)
