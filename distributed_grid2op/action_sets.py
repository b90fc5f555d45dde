"""Action sets: what an agent may choose, as objects.

An action set is a gymnasium space (discrete or box), a legality mask, and a translation of
a choice into a grid2op action. A cluster owns action sets over its own elements; the
learner only ever sees the space and the mask. Topology (do-nothing plus set-bus topologies
of the cluster's substations) is the first kind; redispatch, curtailment and storage are
box sets over generators and storage units.

A new action type is one class with the `ActionSet` interface plus an entry in
`ACTION_SETS`, registered by the class's own module (see docs/CONVENTIONS.md).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
from gymnasium import spaces

from distributed_grid2op import grid
from distributed_grid2op.errors import UserError


class ActionSet(ABC):
    """The choices of one agent: a space, a legality mask, a translation to grid2op."""

    kind: str = ""

    @property
    @abstractmethod
    def space(self) -> spaces.Space:
        """The gymnasium space of a choice."""

    @abstractmethod
    def mask(self, substation: int = -1) -> np.ndarray | None:
        """Legal choices now (discrete sets; None for box sets: every value is made legal)."""

    @abstractmethod
    def to_grid2op(self, choice, observation=None):
        """The grid2op action of ``choice`` (an index, or a vector for box sets, which need
        the current ``observation`` to make it legal)."""

    def describe(self) -> dict:
        """JSON summary (kind and size)."""
        return {"kind": self.kind, "size": int(getattr(self.space, "n", 0) or 0)}


class TopologyActionSet(ActionSet):
    """Do-nothing (index 0) plus set-bus topologies of some substations.

    Args:
        actions: grid2op actions, index 0 must be do-nothing.
        substations: substation of each action (-1 for do-nothing), shape (n,).
    """

    kind = "topology"

    def __init__(self, actions: list, substations):
        self.actions = list(actions)
        self.substations = np.asarray(substations, dtype=int)
        if len(self.actions) != len(self.substations) or self.substations[0] != -1:
            raise ValueError("a topology action set starts with do-nothing (substation -1)")

    @classmethod
    def from_env(cls, env, substations, action_file=None) -> TopologyActionSet:
        """Do-nothing plus, per substation, every unitary topology (grid2op's enumeration) or
        the topologies a reduced action file (`distributed_grid2op.actions`) keeps for it."""
        if action_file is None:
            check_enumerable(env, substations)
        actions, owner = [env.action_space()], [-1]
        for s in substations:
            topo = (
                grid.unitary_topologies(env, s)
                if action_file is None
                else action_file.grid2op_actions(env, s)
            )
            actions += topo
            owner += [int(s)] * len(topo)
        return cls(actions, owner)

    @property
    def n(self) -> int:
        return len(self.actions)

    @property
    def space(self) -> spaces.Discrete:
        return spaces.Discrete(self.n)

    def mask(self, substation: int = -1) -> np.ndarray:
        """Do-nothing plus the actions on ``substation`` (every action if -1)."""
        if substation == -1:
            return np.ones(self.n, dtype=bool)
        mask = self.substations == substation
        mask[0] = True
        return mask

    def to_grid2op(self, choice, observation=None):
        i = int(choice)
        if not 0 <= i < self.n:
            raise UserError(f"action index {i} out of range [0, {self.n})")
        return self.actions[i]

    def describe(self) -> dict:
        subs, counts = np.unique(self.substations[1:], return_counts=True)
        return {"kind": self.kind, "size": self.n,
                "per_substation": {int(s): int(c) for s, c in zip(subs, counts)}}  # fmt: skip


#: unitary topologies of an action set beyond which the full enumeration is refused
MAX_ENUMERATED = 20_000


def check_enumerable(env, substations) -> None:
    """`UserError` pointing at the reduction command when every unitary topology of
    ``substations`` is too many to enumerate and simulate (the 118-bus grids: 72 814)."""
    sizes = np.asarray(env.sub_info)[list(substations)]
    bound = int(np.sum(2.0 ** (sizes - 1)))  # grid2op's unitary set-bus count is below this
    if bound > MAX_ENUMERATED:
        raise UserError(
            f"up to {bound} unitary topologies on {len(sizes)} substations: too many to "
            "enumerate; reduce them first with `python -m distributed_grid2op.actions --env ... "
            "--out actions.json` and pass --action-set actions.json"
        )


#: action-set kinds by name (a new kind: one class + one entry, made by its own module when it
#: is imported, e.g. ``distributed_grid2op.continuous`` adds "box"; this module imports none of
#: them, so that no import cycle runs through the registry)
ACTION_SETS: dict[str, type[ActionSet]] = {"topology": TopologyActionSet}
