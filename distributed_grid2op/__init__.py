"""Grid2op side of the toolkit: offline envs, decomposed multi-agent envs, agents, training
and evaluation. Importing it has no side effects (no env is made, nothing is read)."""
