"""Opt-in monkeypatches of grid2op behaviour (never applied at import)."""
