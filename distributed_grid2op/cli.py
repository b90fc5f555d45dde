"""The one convention for command-line entry points.

User mistakes (`UserError`, a bad option, an unreadable or unwritable file) print one line
``error: ...`` on stderr and exit with code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from distributed_grid2op.errors import UserError

USER_ERRORS: tuple[type[BaseException], ...] = (UserError, FileNotFoundError, PermissionError)


class ArgumentParser(argparse.ArgumentParser):
    """argparse with a one-line error (no usage dump) and exit code 2."""

    def error(self, message: str):  # noqa: D102 - argparse API
        self.exit(2, f"error: {self.prog}: {message}\n")


def run(
    main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None
) -> int:
    """Call ``main(argv)``; map user errors to exit code 2 with a one-line message."""
    try:
        return int(main(argv) or 0)
    except USER_ERRORS as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if isinstance(exc, OSError) and exc.filename is not None and str(exc.filename) not in msg:
            msg = f"{msg}: {exc.filename}"
        print(f"error: {msg}", file=sys.stderr)
        return 2
    except (OSError, EOFError, ValueError, LookupError) as exc:
        msg = _env_data_error(exc, sys.argv[1:] if argv is None else argv)
        if msg is None:
            raise
        print(f"error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: rerun with the same options to resume", file=sys.stderr)
        return 130


def _env_data_error(exc: BaseException, argv: Sequence[str]) -> str | None:
    """A failure caused by a corrupted chronic file of an env folder named on the command line:
    the file and what is wrong with it (``None``: not that, a bug keeps its traceback).

    Checked only after a failure (it reads every chronic file of the env folders in ``argv``),
    so exceptions raised inside worker processes are explained the same way."""
    from pathlib import Path

    from distributed_grid2op.chronics import find_bad_chronic_file

    for arg in dict.fromkeys(str(a) for a in argv):
        if arg.startswith("-"):
            arg = arg.split("=", 1)[-1] if "=" in arg else ""
        try:
            folder = Path(arg).expanduser()
            if not arg or not (folder / "chronics").is_dir():
                continue
        except (OSError, ValueError):
            continue
        found = find_bad_chronic_file(folder)
        if found is not None:
            path, problem = found
            return f"corrupted chronic file {path}: {problem}"
    return None


def _number(kind, text, what: str):
    try:
        return kind(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None


def positive_int(text: str) -> int:
    """argparse type: an integer > 0."""
    value = _number(int, text, "a positive integer")
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite float > 0 (e.g. ``--thermal-limit-scale``)."""
    value = _number(float, text, "a finite number > 0")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    value = _number(int, text, "an integer >= 0")
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def unit_float(text: str) -> float:
    """argparse type: a float in [0, 1] (quantiles, thresholds)."""
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {text}")
    return value


def danger_threshold(text: str) -> float:
    """argparse type: the danger threshold on max rho, in (0, 1] (every command checks it so)."""
    value = float(text)
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text}")
    return value


def optional_level(text):
    """argparse type: a max-rho level in (0, 1], or ``none`` (None: the rule is off)."""
    if text is None or str(text).strip().lower() == "none":
        return None
    return danger_threshold(str(text))


def add_executor_arguments(
    parser: argparse.ArgumentParser, default_workers: int | None = 1
) -> None:
    """``--workers N`` and ``--ray [ADDRESS]``: every command with workers takes these.

    ``default_workers=None`` means: the available CPUs (with ``--ray``: the cluster's CPUs),
    capped by the number of tasks.
    """
    default = "CPUs" if default_workers is None else str(default_workers)
    parser.add_argument(
        "--workers",
        type=positive_int,
        default=default_workers,
        help=f"parallel workers (default {default}; results do not depend on it)",
    )
    parser.add_argument(
        "--ray",
        nargs="?",
        const="local",
        default=None,
        metavar="ADDRESS",
        help="run the workers as Ray actors: alone, on a local Ray; with 'auto' or HOST:PORT, "
        "on that Ray cluster (needs the extra: pip install '.[ray]')",
    )


def executor_from_args(args, n_tasks: int | None = None):
    """The `distributed_grid2op.execution.Executor` the options of `add_executor_arguments` ask for."""
    from distributed_grid2op.execution import executor_for

    return executor_for(args.workers, getattr(args, "ray", None), n_tasks)
