"""The ``actions.json`` contract: a reduced set of unitary set-bus topologies, format-versioned.

```json
{"format": 1, "env": "l2rpn_case14_sandbox",
 "grid": {"n_sub": 14, "n_line": 20, "sub_info": [3, 6, ...], "n_busbar_per_sub": 2},
 "scoring": {"env": "l2rpn_case14_sandbox", "thermal_limit_scale": 0.85, "states": [...],
             "seed": 0, "ranking": "...", ...},
 "actions": [{"substation": 1, "set_bus": [1, 1, 2, 1, 2, 2],
              "score": {"relieved": 5, "mean_relief": 0.031, "best_relief": 0.12}}, ...],
 "timings": {...}}
```

``set_bus`` holds the local bus (1 or 2) of every element of the substation, in grid2op's order
of the substation's elements (``sub_info[substation]`` entries). ``scoring`` records how the
set was chosen (env, thermal limit scale, the stressed states, the seed, the ranking rule);
``timings`` is the only field that differs between two runs with the same options.
Readers accept format 1; a later format adds fields and keeps these.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from distributed_grid2op.errors import UserError

FORMAT = 1
SUPPORTED_FORMATS = (1,)


def grid_summary(env) -> dict:
    """What identifies a grid in ``actions.json``: sizes and elements per substation."""
    return {
        "n_sub": int(env.n_sub),
        "n_line": int(env.n_line),
        "sub_info": [int(x) for x in env.sub_info],
        "n_busbar_per_sub": int(getattr(env, "n_busbar_per_sub", 2)),
    }


def write_action_file(
    path,
    *,
    env_name: str,
    grid: dict,
    scoring: dict,
    actions: list[dict],
    timings: dict | None = None,
) -> Path:
    """Atomically write ``actions.json``; ``actions`` are ``{"substation", "set_bus", "score"}``
    records (validated against ``grid`` first, so a written file always loads)."""
    from distributed_grid2op.io import write_json

    doc = {
        "format": FORMAT,
        "env": str(env_name),
        "grid": dict(grid),
        "scoring": dict(scoring),
        "actions": [
            {
                "substation": int(a["substation"]),
                "set_bus": [int(v) for v in a["set_bus"]],
                "score": dict(a.get("score", {})),
            }
            for a in actions
        ],
    }
    if timings is not None:
        doc["timings"] = dict(timings)
    _validate(doc, str(path))
    return write_json(path, doc)


@dataclass
class ActionFile:
    """A loaded ``actions.json``: per action its substation and set-bus vector."""

    path: str
    env: str
    grid: dict
    scoring: dict
    substations: np.ndarray  # (n,) int
    set_bus: list[np.ndarray] = field(default_factory=list)  # n vectors of local buses
    scores: list[dict] = field(default_factory=list)
    format: int = FORMAT

    def __len__(self) -> int:
        return len(self.set_bus)

    def action_dict(self, i: int) -> dict:
        """The grid2op action dict of action ``i``."""
        return {
            "set_bus": {
                "substations_id": [(int(self.substations[i]), self.set_bus[i].astype(int).tolist())]
            }
        }

    def to_grid2op(self, action_space, indices=None) -> list:
        """The grid2op actions (all, or those of ``indices``) in file order."""
        idx = range(len(self)) if indices is None else indices
        return [action_space(self.action_dict(int(i))) for i in idx]

    def by_substation(self) -> dict[int, list[int]]:
        """Indices of the actions of each substation (substations in increasing order)."""
        out: dict[int, list[int]] = {}
        for i, s in enumerate(self.substations):
            out.setdefault(int(s), []).append(i)
        return dict(sorted(out.items()))

    def for_substations(self, subs) -> list[int]:
        """Indices of the actions on any of ``subs`` (file order)."""
        keep = {int(s) for s in subs}
        return [i for i, s in enumerate(self.substations) if int(s) in keep]

    def grid2op_actions(self, env, substation: int) -> list:
        """The grid2op actions of one substation (file order); what an action set of a
        cluster takes instead of every unitary topology of that substation."""
        return self.to_grid2op(env.action_space, self.for_substations([substation]))

    def to_dict(self) -> dict:
        """The file's content (without timings): agents embed it in their metadata, so a
        saved agent carries its action set."""
        return {
            "format": self.format,
            "env": self.env,
            "grid": dict(self.grid),
            "scoring": dict(self.scoring),
            "actions": [
                {"substation": int(s), "set_bus": v.astype(int).tolist(), "score": dict(sc)}
                for s, v, sc in zip(self.substations, self.set_bus, self.scores)
            ],
        }


def load_action_file(path, env=None) -> ActionFile:
    """Read and validate ``actions.json``; with ``env``, check it describes the env's grid.

    Every problem (missing, unreadable, not UTF-8, not JSON, malformed, wrong grid) is a
    `UserError` naming the file.
    """
    name = str(path)
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError as exc:
        raise UserError(f"{name}: no such action file") from exc
    except IsADirectoryError as exc:
        raise UserError(f"{name}: is a folder, not an action file") from exc
    except OSError as exc:
        raise UserError(f"{name}: cannot read the action file ({exc.strerror})") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{name}: not UTF-8 text (byte {exc.start})") from exc
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{name}: not valid JSON (line {exc.lineno}: {exc.msg})") from exc
    return parse_action_file(doc, env, source=name)


def parse_action_file(doc, env=None, source: str = "<memory>") -> ActionFile:
    """An `ActionFile` from the parsed JSON ``doc`` (validated; `UserError` naming ``source``)."""
    name = source
    _validate(doc, name)
    if env is not None:
        check_grid(doc["grid"], env, name)
    return ActionFile(
        path=name,
        env=str(doc["env"]),
        grid=dict(doc["grid"]),
        scoring=dict(doc["scoring"]),
        substations=np.asarray([int(a["substation"]) for a in doc["actions"]], dtype=np.int64),
        set_bus=[np.asarray(a["set_bus"], dtype=np.int64) for a in doc["actions"]],
        scores=[dict(a.get("score", {})) for a in doc["actions"]],
        format=int(doc["format"]),
    )


def check_grid(grid: dict, env, name: str = "action file") -> None:
    """`UserError` unless ``grid`` (a file's ``"grid"``) is the env's grid."""
    mine = grid_summary(env)
    for key in ("n_sub", "n_line", "sub_info"):
        if grid.get(key) != mine[key]:
            what = "elements per substation" if key == "sub_info" else key
            raise UserError(
                f"{name}: made for another grid ({what} {_short(grid.get(key))} in the file, "
                f"{_short(mine[key])} in the env)"
            )


def _short(value) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _validate(doc, name: str) -> None:
    def bad(msg: str):
        raise UserError(f"{name}: not a valid action file ({msg})")

    if not isinstance(doc, dict):
        bad("the top level must be a JSON object")
    fmt = doc.get("format")
    if not _is_int(fmt):
        bad('no integer "format"')
    if fmt not in SUPPORTED_FORMATS:
        raise UserError(
            f"{name}: action file format {fmt} is not supported (this version reads "
            f"{', '.join(map(str, SUPPORTED_FORMATS))})"
        )
    if not isinstance(doc.get("env"), str):
        bad('"env" must be a string')
    if not isinstance(doc.get("scoring"), dict):
        bad('"scoring" must be an object')
    grid = doc.get("grid")
    if not isinstance(grid, dict):
        bad('"grid" must be an object')
    n_sub, n_line, sub_info = grid.get("n_sub"), grid.get("n_line"), grid.get("sub_info")
    if not (_is_int(n_sub) and n_sub > 0 and _is_int(n_line) and n_line >= 0):
        bad('"grid" needs integer "n_sub" > 0 and "n_line"')
    if not (
        isinstance(sub_info, list)
        and len(sub_info) == n_sub
        and all(_is_int(x) and x > 0 for x in sub_info)
    ):
        bad('"grid.sub_info" must list the positive element count of every substation')
    n_bus = grid.get("n_busbar_per_sub", 2)
    if not (_is_int(n_bus) and n_bus >= 1):
        bad('"grid.n_busbar_per_sub" must be a positive integer')
    actions = doc.get("actions")
    if not isinstance(actions, list):
        bad('"actions" must be a list')
    for i, a in enumerate(actions):
        if not isinstance(a, dict):
            bad(f"action {i} is not an object")
        s = a.get("substation")
        if not (_is_int(s) and 0 <= s < n_sub):
            bad(f"action {i}: substation must be an integer in [0, {n_sub})")
        vec = a.get("set_bus")
        if not (isinstance(vec, list) and len(vec) == sub_info[s]):
            bad(f"action {i}: set_bus must list {sub_info[s]} buses (substation {s})")
        if not all(_is_int(v) and 1 <= v <= n_bus for v in vec):
            bad(f"action {i}: set_bus values must be local buses 1..{n_bus}")
        if "score" in a and not isinstance(a["score"], dict):
            bad(f"action {i}: score must be an object")
