"""Read and validate ``factorization.json`` (format 1, see ARCHITECTURE.md).

`distributed_grid2op` never imports `clustering`: the file format is the contract.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from distributed_grid2op.errors import UserError

FORMAT = 1


@dataclass(frozen=True)
class Cluster:
    """One sub-problem: the substations its agent controls and the lines it watches."""

    substations: tuple[int, ...]
    lines: tuple[int, ...]


@dataclass(frozen=True)
class FactorizationFile:
    """A validated factorization: every substation and line in exactly one cluster."""

    clusters: tuple[Cluster, ...]
    env: str | None = None
    method: str | None = None
    params: dict | None = None
    source: str = "<memory>"

    @property
    def n_sub(self) -> int:
        return sum(len(c.substations) for c in self.clusters)

    @property
    def n_line(self) -> int:
        return sum(len(c.lines) for c in self.clusters)

    def cluster_of_substation(self) -> dict[int, int]:
        """Map substation id -> cluster index."""
        return {s: i for i, c in enumerate(self.clusters) for s in c.substations}

    def centralized(self) -> FactorizationFile:
        """The same grid as one cluster (the centralised baseline)."""
        subs = tuple(sorted(s for c in self.clusters for s in c.substations))
        lines = tuple(sorted(ln for c in self.clusters for ln in c.lines))
        return FactorizationFile((Cluster(subs, lines),), self.env, "centralized", {}, self.source)

    def to_dict(self) -> dict:
        return {
            "format": FORMAT,
            "env": self.env,
            "method": self.method,
            "params": self.params or {},
            "clusters": [
                {"substations": list(c.substations), "lines": list(c.lines)} for c in self.clusters
            ],
        }


def _ids(value, what: str, where: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        raise UserError(f"{where}: {what} must be a list of integers")
    return tuple(value)


def parse_factorization(
    data: dict, *, n_sub: int | None = None, n_line: int | None = None, source: str = "<memory>"
) -> FactorizationFile:
    """Validate a decoded factorization; with grid sizes, check the partition is total."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise UserError(f"{source}: not a factorization file of format {FORMAT}")
    raw = data.get("clusters")
    if not isinstance(raw, list) or not raw:
        raise UserError(f"{source}: 'clusters' must be a non-empty list")
    clusters = []
    for i, c in enumerate(raw):
        if not isinstance(c, dict):
            raise UserError(f"{source}: cluster {i} must be an object with substations and lines")
        clusters.append(
            Cluster(
                _ids(c.get("substations"), "substations", f"{source}: cluster {i}"),
                _ids(c.get("lines"), "lines", f"{source}: cluster {i}"),
            )
        )
    for kind, size in (("substations", n_sub), ("lines", n_line)):
        ids = [x for c in clusters for x in getattr(c, kind)]
        dup = sorted({x for x in ids if ids.count(x) > 1})
        if dup:
            raise UserError(f"{source}: {kind} {dup} appear in more than one cluster")
        if size is not None:
            unknown = sorted(x for x in ids if not 0 <= x < size)
            missing = sorted(set(range(size)) - set(ids))
            if unknown:
                raise UserError(f"{source}: unknown {kind} {unknown} (the grid has {size})")
            if missing:
                raise UserError(f"{source}: {kind} {missing} are in no cluster")
    return FactorizationFile(
        tuple(clusters), data.get("env"), data.get("method"), data.get("params"), source
    )


def load_factorization(path: str | Path | None = None, *, env=None) -> FactorizationFile:
    """Load ``path`` (default: the thesis case14 partition shipped with the package).

    With ``env``, check that every substation and line of its grid is in exactly one cluster.
    """
    if path is None:
        text = (
            resources.files("distributed_grid2op")
            .joinpath("data/thesis_case14_factorization.json")
            .read_text()
        )
        source = "thesis_case14_factorization.json"
    else:
        source = str(path)
        try:
            text = Path(path).read_bytes().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise UserError(f"{source}: not UTF-8 text (byte {exc.start})") from exc
        except OSError as exc:
            raise UserError(f"cannot read factorization file {source}: {exc.strerror}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{source}: malformed JSON ({exc.msg} at line {exc.lineno})") from exc
    sizes = {} if env is None else {"n_sub": int(env.n_sub), "n_line": int(env.n_line)}
    fact = parse_factorization(data, source=source, **sizes)
    if env is not None:
        _warn_other_env(fact, env)
    return fact


def _env_names(env) -> set[str]:
    """Names the env answers to: its name, its folder's name and the source it was generated
    from (``generation.json`` of `distributed_grid2op.scenarios`)."""
    names = {str(getattr(env, "env_name", "") or "")}
    try:
        folder = Path(env.get_path_env())
    except Exception:  # noqa: BLE001 - an env without a folder: its name only
        return names - {""}
    names.add(folder.name)
    try:
        source = json.loads((folder / "generation.json").read_text(encoding="utf-8"))["source"]
        names.add(Path(str(source)).name)
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return names - {""}


def _warn_other_env(fact: FactorizationFile, env) -> None:
    """Warn when the file was made for another grid of the same size (the sizes matched)."""
    if not isinstance(fact.env, str) or not fact.env:
        return
    names = _env_names(env)
    if names and Path(fact.env).name not in names:
        warnings.warn(
            f"{fact.source} was made for env {fact.env!r}, not for "
            f"{sorted(names)[0]!r} (a grid of the same size: the clusters may not fit it)",
            UserWarning,
            stacklevel=3,
        )
