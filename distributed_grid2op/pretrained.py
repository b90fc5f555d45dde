"""Trained agents shipped with the package: ``pretrained:NAME`` wherever an agent folder goes.

``distributed_grid2op/data/pretrained/<NAME>/`` is an ordinary agent folder (``agent.json`` and
``weights.pt``, exactly as training wrote its ``final/``) plus ``pretrained.json``: where it
comes from (grid and env, thermal limit scale, action sets, training command, config and seed,
git commit of the training code) and what it measured (its evaluation against the baselines).
Evaluation reads it through the same path as any trained agent's folder
(`agents.hierarchical.read_agent_files`): `checkpoints.find_agent` maps ``pretrained:NAME``
to the folder (the name helpers live there, re-exported here).

    python -m distributed_grid2op.evaluate --agents pretrained:case14 \\
        --env l2rpn_case14_sandbox --thermal-limit-scale 0.85

    from distributed_grid2op import pretrained
    agent = pretrained.load("case14")  # on its own env: agent.env (case14, limits x 0.85)
"""

from __future__ import annotations

import json

from distributed_grid2op.checkpoints import PRETRAINED_INFO as INFO_FILE
from distributed_grid2op.checkpoints import PRETRAINED_PREFIX as PREFIX
from distributed_grid2op.checkpoints import pretrained_dir as agent_dir
from distributed_grid2op.checkpoints import pretrained_names as available
from distributed_grid2op.checkpoints import pretrained_root as root
from distributed_grid2op.checkpoints import resolve_pretrained as resolve

__all__ = ["INFO_FILE", "PREFIX", "agent_dir", "available", "info", "load", "make_env", "resolve",
           "root"]  # fmt: skip


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
