"""One seed makes numpy, torch and child seeds reproducible (never the global numpy state)."""

from __future__ import annotations

import numpy as np


def seed_everything(seed: int) -> np.random.Generator:
    """Seed torch (if imported by the caller's path) and return a fresh numpy Generator."""
    import torch

    torch.manual_seed(int(seed))
    return np.random.default_rng(int(seed))


def child_seeds(seed: int, n: int) -> list[int]:
    """``n`` independent, reproducible 31-bit seeds derived from ``seed`` (SeedSequence)."""
    states = np.random.SeedSequence(int(seed)).generate_state(n, dtype=np.uint32)
    return [int(s) >> 1 for s in states]
