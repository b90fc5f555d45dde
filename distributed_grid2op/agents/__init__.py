"""Agents: the hierarchical agent (rules + CAPA picker + one PPO learner per cluster).

`load_agent(path, env)` rebuilds a trained agent from a training output or checkpoint folder.
"""

from distributed_grid2op.agents.hierarchical import HierarchicalAgent, load_agent
from distributed_grid2op.agents.ppo import PPOConfig, PPOLearner

__all__ = ["HierarchicalAgent", "PPOConfig", "PPOLearner", "load_agent"]
