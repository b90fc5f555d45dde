"""Read and validate ``factorization.json`` (formats 1 and 2, see ARCHITECTURE.md).

Format 1: per cluster its ``substations`` and ``lines``. Format 2 (continuous control) adds
per cluster its ``generators`` and ``storages`` (ids; every cluster lists both, and every
unit is in exactly one cluster). A format 1 file gets its units from the substations
(`FactorizationFile.with_units`: a unit belongs to the cluster owning its substation).
`FactorizationFile.to_dict` writes format 2 when the clusters carry units, else format 1.

`distributed_grid2op` never imports `clustering`: the file format is the contract.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path

from distributed_grid2op.errors import UserError

FORMAT = 1
#: format of a file whose clusters carry generators and storage units
UNITS_FORMAT = 2
READABLE_FORMATS = (FORMAT, UNITS_FORMAT)
UNIT_KINDS = ("generators", "storages")


@dataclass(frozen=True)
class Cluster:
    """One sub-problem: the substations its agent controls, the lines it watches and, in
    format 2, the generators and storage units it controls (None: not given)."""

    substations: tuple[int, ...]
    lines: tuple[int, ...]
    generators: tuple[int, ...] | None = None
    storages: tuple[int, ...] | None = None

    def to_dict(self) -> dict:
        d = {"substations": list(self.substations), "lines": list(self.lines)}
        if self.generators is not None:
            d.update(generators=list(self.generators), storages=list(self.storages or ()))
        return d


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

    @property
    def has_units(self) -> bool:
        """Whether the clusters carry generators and storage units (format 2)."""
        return self.clusters[0].generators is not None

    def cluster_of_substation(self) -> dict[int, int]:
        """Map substation id -> cluster index."""
        return {s: i for i, c in enumerate(self.clusters) for s in c.substations}

    def with_units(self, gen_to_subid, storage_to_subid) -> FactorizationFile:
        """The clusters with their units: each generator and storage unit in the cluster
        owning its substation (``gen_to_subid``, ``storage_to_subid``: the grid's
        ``type(env).gen_to_subid`` and ``storage_to_subid``). Units already given are kept."""
        if self.has_units:
            return self
        owner = self.cluster_of_substation()
        units = {}
        for kind, to_sub in zip(UNIT_KINDS, (gen_to_subid, storage_to_subid)):
            subs = [int(s) for s in to_sub]
            lost = sorted({s for s in subs if s not in owner})
            if lost:
                raise UserError(
                    f"{self.source}: substations {lost} of some {kind} are in no cluster"
                )
            units[kind] = [tuple(u for u, s in enumerate(subs) if owner[s] == i)
                           for i in range(len(self.clusters))]  # fmt: skip
        clusters = tuple(
            replace(c, generators=g, storages=st)
            for c, g, st in zip(self.clusters, units["generators"], units["storages"])
        )
        return replace(self, clusters=clusters)

    def centralized(self) -> FactorizationFile:
        """The same grid as one cluster (the centralised baseline)."""
        subs = tuple(sorted(s for c in self.clusters for s in c.substations))
        lines = tuple(sorted(ln for c in self.clusters for ln in c.lines))
        units = {}
        if self.has_units:
            units = {k: tuple(sorted(u for c in self.clusters for u in getattr(c, k)))
                     for k in UNIT_KINDS}  # fmt: skip
        return FactorizationFile((Cluster(subs, lines, **units),), self.env, "centralized", {},
                                 self.source)  # fmt: skip

    def to_dict(self) -> dict:
        """The file's content: format 2 when the clusters carry units, else format 1."""
        return {
            "format": UNITS_FORMAT if self.has_units else FORMAT,
            "env": self.env,
            "method": self.method,
            "params": self.params or {},
            "clusters": [c.to_dict() for c in self.clusters],
        }


def _ids(value, what: str, where: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        raise UserError(f"{where}: {what} must be a list of integers")
    return tuple(value)


def parse_factorization(
    data: dict,
    *,
    n_sub: int | None = None,
    n_line: int | None = None,
    n_gen: int | None = None,
    n_storage: int | None = None,
    source: str = "<memory>",
) -> FactorizationFile:
    """Validate a decoded factorization (format 1 or 2); with grid sizes, check that the
    partition is total (units only in format 2)."""
    fmt = data.get("format") if isinstance(data, dict) else None
    if fmt not in READABLE_FORMATS or isinstance(fmt, bool):
        raise UserError(f"{source}: not a factorization file of format 1 or 2")
    raw = data.get("clusters")
    if not isinstance(raw, list) or not raw:
        raise UserError(f"{source}: a factorization file of format {fmt} needs a non-empty "
                        "'clusters' list")  # fmt: skip
    clusters = []
    for i, c in enumerate(raw):
        where = f"{source}: cluster {i}"
        if not isinstance(c, dict):
            raise UserError(f"{where} must be an object with substations and lines")
        units = {}
        if fmt == UNITS_FORMAT:
            absent = [k for k in UNIT_KINDS if k not in c]
            if absent:
                raise UserError(f"{where} has no {' and no '.join(absent)} (format 2 lists both)")
            units = {k: _ids(c[k], k, where) for k in UNIT_KINDS}
        clusters.append(
            Cluster(
                _ids(c.get("substations"), "substations", where),
                _ids(c.get("lines"), "lines", where),
                **units,
            )  # fmt: skip
        )
    sizes = [("substations", n_sub), ("lines", n_line)]
    if fmt == UNITS_FORMAT:
        sizes += [("generators", n_gen), ("storages", n_storage)]
    for kind, size in sizes:
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

    With ``env``, check that every substation and line of its grid (and in format 2 every
    generator and storage unit) is in exactly one cluster.
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
    sizes = {}
    if env is not None:
        sizes = {"n_sub": int(env.n_sub), "n_line": int(env.n_line), "n_gen": int(env.n_gen),
                 "n_storage": int(env.n_storage)}  # fmt: skip
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
    try:  # the scenarios command records its --source in the settings
        source = json.loads((folder / "generation.json").read_text(encoding="utf-8"))
        names.add(Path(str(source["settings"]["source"])).name)
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
