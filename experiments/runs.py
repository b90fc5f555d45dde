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
            text = Path(path).read_text()
        except OSError as exc:
            raise UserError(f"cannot read config {source}: {exc.strerror}") from exc
    try:
        cfg = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{source}: invalid TOML ({exc})") from exc
    cfg.setdefault("profile", profile)
    cfg["_source"] = source
    return cfg


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
