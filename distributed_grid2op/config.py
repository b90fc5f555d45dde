"""One configuration object per command: its CLI, its TOML tables and its Python API derive
from one dataclass.

A command's settings are a dataclass deriving from `Config` whose fields are declared with
`option` (default, help, how a text value is parsed and checked). From it:

- ``Config.add_arguments(parser)`` adds one ``--flag`` per field (booleans: ``--flag``;
  a field that defaults to True: ``--no-flag``);
- ``Config.from_args(args)`` builds the object from parsed options;
- ``Config.from_mapping(mapping, source)`` builds it from a TOML table or a dict, naming
  unknown keys and bad values in a `UserError` (so a config file with a typo is refused
  before anything runs);
- ``config.to_dict()`` is the JSON record written next to the outputs.

The same parsing function checks a value whatever its origin (CLI text or TOML value).
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from distributed_grid2op.errors import UserError


def option(default: Any = None, help: str = "", *, parse=None, choices=None, cli: bool = True,
           metavar: str | None = None, results: bool = True, nargs=None,
           required: bool = False, append: bool = False):  # fmt: skip
    """A config field.

    Args:
        default: the default value (lists and dicts are copied per instance).
        help: the ``--help`` text.
        parse: text -> value, raising ``ValueError``/``argparse.ArgumentTypeError`` on bad
            input (the CLI's ``type``; also applied to TOML values).
        choices: allowed values.
        cli: add a command-line flag for it.
        metavar: the flag's metavar.
        results: the field changes results (a resumed run must keep it; ``--workers``,
            progress bars and output paths do not).
        nargs: argparse ``nargs`` (a list given as several words, e.g. ``--agents A B``).
        required: the option must be given (CLI and tables).
        append: a repeatable flag collecting a list (``--quantile 0.6 --quantile 0.8``; in a
            table: a list).
    """
    meta = {"help": help, "parse": parse, "choices": choices, "cli": cli, "metavar": metavar,
            "results": results, "nargs": nargs, "required": required, "append": append}  # fmt: skip
    if isinstance(default, list | dict):
        return dataclasses.field(default_factory=lambda d=default: type(d)(d), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def parse_bool(text) -> bool:
    """``true/false/yes/no/1/0`` (any case) or a bool."""
    if isinstance(text, bool):
        return text
    value = str(text).strip().lower()
    if value in ("true", "yes", "1", "on"):
        return True
    if value in ("false", "no", "0", "off"):
        return False
    raise argparse.ArgumentTypeError(f"must be true or false, got {text!r}")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


@dataclasses.dataclass
class Config:
    """Base of the command configs (see the module docstring)."""

    @classmethod
    def options(cls) -> list[dataclasses.Field]:
        return list(dataclasses.fields(cls))

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """One flag per field with ``cli=True``."""
        for f in cls.options():
            m = f.metadata
            if not m.get("cli", True):
                continue
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            if isinstance(default, bool):
                if default:
                    parser.add_argument(_flag("no_" + f.name), dest=f.name, action="store_false",
                                        help=m["help"])  # fmt: skip
                else:
                    parser.add_argument(_flag(f.name), dest=f.name, action="store_true",
                                        help=m["help"])  # fmt: skip
                continue
            extra = {"nargs": m["nargs"]} if m.get("nargs") else {}
            if m.get("required"):
                extra["required"] = True
            if m.get("append"):
                extra["action"] = "append"
            parser.add_argument(_flag(f.name), dest=f.name, type=m.get("parse"),
                                choices=m.get("choices"), default=default, metavar=m.get("metavar"),
                                help=f"{m['help']} (default: {default})", **extra)  # fmt: skip

    @classmethod
    def from_args(cls, args: argparse.Namespace, **extra):
        """The config of parsed options (fields without a flag keep their default or ``extra``)."""
        values = {f.name: getattr(args, f.name) for f in cls.options() if hasattr(args, f.name)}
        return cls(**{**values, **extra}).validate()

    @classmethod
    def from_mapping(cls, mapping: dict, source: str = "config"):
        """The config of a TOML table / dict; `UserError` naming unknown keys and bad values."""
        if not isinstance(mapping, dict):
            raise UserError(f"{source}: expected a table of options, got {type(mapping).__name__}")
        known = {f.name: f for f in cls.options()}
        unknown = sorted(k for k in mapping if k not in known)
        if unknown:
            raise UserError(
                f"{source}: unknown option(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(known))}"
            )
        missing = sorted(
            k for k, f in known.items() if f.metadata.get("required") and k not in mapping
        )
        if missing:
            raise UserError(f"{source}: missing option(s) {', '.join(missing)}")
        values = {}
        for key, value in mapping.items():
            values[key] = _convert(known[key], value, f"{source}: {key}")
        return cls(**values).validate()

    def validate(self):
        """Cross-field checks (subclasses); returns self."""
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def result_options(self) -> dict:
        """The options that change results (what a resumed run must keep)."""
        return {
            f.name: getattr(self, f.name) for f in self.options() if f.metadata.get("results", True)
        }

    def replace(self, **changes):
        return dataclasses.replace(self, **changes).validate()


def _convert(f: dataclasses.Field, value, where: str):
    m = f.metadata
    default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
    try:
        if isinstance(default, bool):
            return parse_bool(value)
        parse = m.get("parse")
        if value is None:
            if default is not None:
                raise ValueError(f"needs a value (default {default!r})")
            return None
        if isinstance(default, dict) and not isinstance(value, dict):
            raise ValueError(f"must be a table, got {type(value).__name__}")
        if m.get("nargs") or m.get("append"):  # a list of words: each parsed
            words = value if isinstance(value, list) else [value]
            value = [parse(str(w)) if parse else str(w) for w in words]
        else:
            if isinstance(value, list) and not isinstance(default, list):
                value = ",".join(map(str, value))
            if parse is not None and not isinstance(value, dict | list):
                value = parse(value if isinstance(value, str) else str(value))
            elif isinstance(value, list) and parse is not None:
                value = parse(",".join(map(str, value)))
        if m.get("choices") and value not in m["choices"]:
            raise argparse.ArgumentTypeError(f"must be one of {', '.join(map(str, m['choices']))}")
        return value
    except (ValueError, TypeError, argparse.ArgumentTypeError) as exc:
        raise UserError(f"{where}: {exc}") from exc


def learner_arguments(parser: argparse.ArgumentParser, learners: dict) -> None:
    """``--<learner>-<field>`` for every hyper-parameter of every registered learner."""
    for name, entry in sorted(learners.items()):
        group = parser.add_argument_group(f"{name} hyper-parameters ({entry.config.__name__})")
        for f in dataclasses.fields(entry.config):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            group.add_argument(_flag(f"{name}_{f.name}"), dest=f"learner__{name}__{f.name}",
                               type=_parser_like(default), default=None, metavar="V",
                               help=f"default {default}")  # fmt: skip


def learner_overrides(args: argparse.Namespace) -> dict[str, dict]:
    """``{learner: {field: value}}`` of the ``--<learner>-<field>`` flags that were given."""
    out: dict[str, dict] = {}
    for key, value in vars(args).items():
        if key.startswith("learner__") and value is not None:
            _, name, field_name = key.split("__", 2)
            out.setdefault(name, {})[field_name] = value
    return out


def _parser_like(default):
    """A text parser producing values of the type of ``default``."""
    if isinstance(default, bool):
        return parse_bool
    if isinstance(default, int):
        return int
    if isinstance(default, float) or default is None:
        return _optional_float
    if isinstance(default, tuple | list):
        return lambda text: tuple(int(v) for v in str(text).split(",") if v.strip())
    return str


def _optional_float(text):
    if str(text).strip().lower() == "none":
        return None
    return float(text)


def coerce_learner_config(entry, overrides: dict, source: str):
    """The learner's config dataclass with ``overrides`` applied; `UserError` on unknown
    fields or values of the wrong type."""
    fields = {f.name: f for f in dataclasses.fields(entry.config)}
    unknown = sorted(k for k in overrides if k not in fields)
    if unknown:
        raise UserError(
            f"{source}: unknown {entry.config.__name__} field(s) {', '.join(unknown)}; "
            f"known: {', '.join(sorted(fields))}"
        )
    base = entry.config().to_dict()
    values = {}
    for key, value in overrides.items():
        parse = _parser_like(base[key])
        try:
            values[key] = parse(
                ",".join(map(str, value)) if isinstance(value, list | tuple) else value
            )
        except (ValueError, TypeError, argparse.ArgumentTypeError) as exc:
            raise UserError(f"{source}: {key}: {exc}") from exc
    return entry.config.from_dict({**base, **values})
