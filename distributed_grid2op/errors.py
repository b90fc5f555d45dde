"""Exceptions for user mistakes: every CLI turns them into one line on stderr and exit 2."""


class UserError(ValueError):
    """Bad input from the user (unknown env, bad file, invalid option)."""


class UnknownEnvError(UserError):
    """An env name that is neither a bundled test env nor a grid2op env folder."""
