"""Turn a config table into command-line options (the experiments call the CLIs' ``main``)."""

from __future__ import annotations


def to_argv(options: dict) -> list[str]:
    """``{"thermal_limit_scale": 0.85, "centralized": True}`` -> ``["--thermal-limit-scale", "0.85", "--centralized"]``."""
    argv: list[str] = []
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            argv.append(flag)
        elif value is False or value is None:
            continue
        elif isinstance(value, list):
            for v in value:
                argv += [flag, str(v)]
        else:
            argv += [flag, str(value)]
    return argv
