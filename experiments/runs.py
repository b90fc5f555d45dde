"""Run folders for reproductions: config in, hashed folder out, provenance and report written.

A run folder is ``OUT/<experiment>/<profile>-<hash of the config>``: a changed config
gets a new folder instead of overwriting an earlier result, and rerunning the same config
recomputes into the same folder (the results are identical for the same seed).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
import tomllib
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata, resources
from pathlib import Path

from distributed_grid2op.errors import UserError
from distributed_grid2op.io import ensure_writable_dir, write_json, write_text
from distributed_grid2op.pretrained import agent_dir

EXPERIMENTS = ("synthetic", "factorization", "training")
PROFILES = ("quick", "full")
PACKAGES = (
    "numpy",
    "scipy",
    "scikit-learn",
    "torch",
    "grid2op",
    "lightsim2grid",
    "pandas",
    "numba",
)


def load_config(experiment: str, profile: str, path: str | Path | None = None) -> dict:
    """The TOML config of ``experiment`` at ``profile`` (or the file at ``path``)."""
    if experiment not in EXPERIMENTS:
        raise UserError(
            f"unknown experiment {experiment!r}; choose one of {', '.join(EXPERIMENTS)}"
        )
    if path is None:
        if profile not in PROFILES:
            raise UserError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
        text = (
            resources.files("experiments")
            .joinpath(f"configs/{experiment}_{profile}.toml")
            .read_text()
        )
        source = f"experiments/configs/{experiment}_{profile}.toml"
    else:
        source = str(path)
        try:
            text = Path(path).read_bytes().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise UserError(f"{source}: not UTF-8 text (byte {exc.start})") from exc
        except OSError as exc:
            raise UserError(f"cannot read config {source}: {exc.strerror}") from exc
    try:
        cfg = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{source}: invalid TOML ({exc})") from exc
    validate_config(experiment, cfg, source)
    cfg.setdefault("profile", profile)
    cfg["_source"] = source
    return cfg


# ---------------------------------------------------------------------------- config schemas
_NUMBER = (int, float)
_TABLES = "array of tables"
# experiment -> top-level key -> (expected type, required)
SCHEMAS: dict[str, dict[str, tuple]] = {
    "synthetic": {
        "seed": (int, True),
        "k": (_NUMBER, True),
        "n_permutations": (int, True),
        "quantiles": (list, True),
        "figure_quantiles": (list, True),
        "mdp": (_TABLES, True),
        "profile": (str, False),
    },
    "factorization": {
        "seed": (int, True),
        "pipeline": (dict, True),
        "variant": (_TABLES, True),
        "profile": (str, False),
    },
    "training": {
        "seed": (int, True),
        "seeds": (list, False),
        "scenarios": (dict, False),
        "env": (dict, False),
        "train": (dict, True),
        "variant": (_TABLES, True),
        "evaluate": (_TABLES, True),
        "pretrained": (list, False),
        "smoke": (bool, False),
        "profile": (str, False),
    },
}
MDP_KEYS = {
    "copy": {"name", "kind", "n_state", "n_action", "blocks", "steps"},
    "random": {"name", "kind", "n_state", "n_action", "n_blocks", "steps"},
}


def _type_ok(value, expected) -> bool:
    if expected == _TABLES:
        return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)
    if expected is int or expected == _NUMBER:
        return isinstance(value, expected) and not isinstance(value, bool)
    return isinstance(value, expected)


def _type_name(expected) -> str:
    if expected == _TABLES:
        return "a non-empty array of tables ([[...]])"
    if expected == _NUMBER:
        return "a number"
    return {int: "an integer", str: "a string", list: "a list", dict: "a table",
            bool: "true or false"}[expected]  # fmt: skip


def _check_keys(table: dict, schema: dict, where: str) -> None:
    unknown = sorted(k for k in table if k not in schema)
    if unknown:
        raise UserError(
            f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(schema))}"
        )
    missing = sorted(k for k, (_, required) in schema.items() if required and k not in table)
    if missing:
        raise UserError(f"{where}: missing key(s) {', '.join(missing)}")
    for key, (expected, _) in schema.items():
        if key in table and not _type_ok(table[key], expected):
            raise UserError(f"{where}: {key} must be {_type_name(expected)}")


def _names(tables: list[dict], where: str) -> None:
    names = [t.get("name") for t in tables]
    if not all(isinstance(n, str) and n for n in names):
        raise UserError(f"{where}: every table needs a name (a non-empty string)")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise UserError(f"{where}: duplicate name(s) {', '.join(dup)}")


def validate_config(experiment: str, cfg: dict, source: str = "config") -> None:
    """Check a decoded experiment config against its schema; `UserError` naming the unknown,
    missing or mistyped key (before anything runs)."""
    _check_keys(cfg, SCHEMAS[experiment], source)
    if experiment == "synthetic":
        _names(cfg["mdp"], f"{source} [[mdp]]")
        for spec in cfg["mdp"]:
            where = f"{source} [[mdp]] {spec['name']}"
            kind = spec.get("kind")
            if kind not in MDP_KEYS:
                raise UserError(f"{where}: kind must be one of {', '.join(MDP_KEYS)}, got {kind!r}")
            schema = {k: ((list if k == "blocks" else str if k in ("name", "kind") else int), True)
                      for k in MDP_KEYS[kind]}  # fmt: skip
            _check_keys(spec, schema, where)
        for key in ("quantiles", "figure_quantiles"):
            if not all(_type_ok(q, _NUMBER) and 0 <= q < 1 for q in cfg[key]):
                raise UserError(f"{source}: {key} must be numbers in [0, 1)")
    elif experiment == "factorization":
        from clustering.power_grid.__main__ import FactorizeConfig

        FactorizeConfig.from_mapping(cfg["pipeline"], f"{source} [pipeline]")
        _names(cfg["variant"], f"{source} [[variant]]")
        for variant in cfg["variant"]:
            options = {**cfg["pipeline"], **{k: v for k, v in variant.items() if k != "name"}}
            FactorizeConfig.from_mapping(options, f"{source} [[variant]] {variant['name']}")
    elif experiment == "training":
        from distributed_grid2op.evaluation import EvaluateConfig
        from distributed_grid2op.main import TrainConfig
        from distributed_grid2op.scenarios.__main__ import ScenariosConfig

        if "scenarios" in cfg:
            where = f"{source} [scenarios]"
            ScenariosConfig.from_mapping({"out": "scenarios", **cfg["scenarios"]}, where)
        if "seeds" in cfg and not all(_type_ok(s, int) for s in cfg["seeds"]):
            raise UserError(f"{source}: seeds must be a list of integers")
        for name in cfg.get("pretrained", []):
            agent_dir(str(name))  # an unknown name is an error before anything runs
        env = dict(cfg.get("env", {}))
        _names(cfg["variant"], f"{source} [[variant]]")
        for variant in cfg["variant"]:
            options = {**env, **cfg["train"], **{k: v for k, v in variant.items() if k != "name"}}
            TrainConfig.from_mapping(
                {**options, "seed": cfg["seed"], "out": "train"},
                source=f"{source} [train] + variant {variant['name']}",
            )
        _names(cfg["evaluate"], f"{source} [[evaluate]]")
        for ev in cfg["evaluate"]:
            options = {**env, **{k: v for k, v in ev.items() if k not in ("name", "description")}}
            EvaluateConfig.from_mapping(
                {**options, "agents": ["agent"], "seed": cfg["seed"], "out": "evaluation"},
                source=f"{source} [[evaluate]] {ev['name']}",
            )


def config_hash(cfg: dict) -> str:
    """First 10 hex digits of the SHA-256 of the canonical JSON of the config (source excluded)."""
    body = {k: v for k, v in cfg.items() if not k.startswith("_")}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:10]


def versions() -> dict:
    """Versions of Python, the key packages and the machine, for every report."""
    out = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
    }
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


@dataclass
class Run:
    """One reproduction run: its folder, config, timings, numbers and report sections."""

    experiment: str
    cfg: dict
    root: Path
    timings: dict = field(default_factory=dict)
    numbers: dict = field(default_factory=dict)
    sections: list = field(default_factory=list)

    @classmethod
    def create(cls, out: str | Path, experiment: str, cfg: dict) -> Run:
        root = ensure_writable_dir(Path(out) / experiment / f"{cfg['profile']}-{config_hash(cfg)}")
        run = cls(experiment, cfg, root)
        write_json(root / "config.json", {k: v for k, v in cfg.items() if not k.startswith("_")})
        write_json(root / "versions.json", versions())
        return run

    @contextmanager
    def stage(self, name: str):
        """Time a stage; the timing goes into ``timings.json`` and the report."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = round(time.perf_counter() - start, 2)

    def section(self, title: str, text: str = "", figures: list[str | Path] = ()):
        """Add a report section with markdown text and figures (paths inside the run folder)."""
        rel = [os.path.relpath(Path(f), self.root) for f in figures]
        self.sections.append((title, text, rel))

    def finish(self) -> Path:
        """Write ``results.json`` (numbers), ``timings.json`` and ``report.md``; return the report."""
        write_json(self.root / "results.json", self.numbers)
        write_json(self.root / "timings.json", self.timings)
        v = versions()
        lines = [
            f"# {self.experiment} ({self.cfg['profile']} profile)",
            "",
            f"Config `{self.cfg.get('_source', '?')}` (hash `{config_hash(self.cfg)}`, copy in `config.json`); "
            f"seed {self.cfg.get('seed')}. Python {v['python']}, grid2op {v['grid2op']}, "
            f"lightsim2grid {v['lightsim2grid']}, torch {v['torch']}, {v['cpus']} CPUs.",
            "",
        ]
        for title, text, figs in self.sections:
            lines += [f"## {title}", "", text.strip(), ""]
            lines += [f"![{Path(f).stem}]({f})" for f in figs]
            lines.append("")
        lines += ["## Timings (s)", "", "| stage | seconds |", "|---|---|"]
        lines += [f"| {k} | {v:.1f} |" for k, v in self.timings.items()]
        return write_text(self.root / "report.md", "\n".join(lines) + "\n")


def markdown_table(rows: list[dict], floatfmt: str = ".3f") -> str:
    """A list of dicts as a markdown table (columns from the first row)."""
    if not rows:
        return "(no rows)"
    cols = list(rows[0])

    def fmt(v):
        return format(v, floatfmt) if isinstance(v, float) else str(v)

    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    out += ["| " + " | ".join(fmt(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(out)
