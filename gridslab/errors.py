"""User-facing errors: one clear line, no traceback.

Every check on user input (config keys, names, paths, files) raises ``UserError``; the
CLIs (`train.py`, `evaluate.py`, `python -m envs.collect`) run through ``run_cli``
(``envs.errors``), which prints just its message and exits with status 2.
"""

from __future__ import annotations

from typing import Iterable

from envs.errors import EnvUserError, nearest, run_cli, unknown_message

__all__ = ["UserError", "nearest", "run_cli", "unknown"]


class UserError(EnvUserError):
    """Bad input from the user; the message is a single self-contained line.

    Subclasses ``envs``' error so one ``except EnvUserError`` catches both.
    """


def unknown(kind: str, value: str, choices: Iterable[str]) -> UserError:
    """A ``UserError`` for an unknown name, suggesting the nearest valid ones."""
    return UserError(unknown_message(kind, value, choices))
