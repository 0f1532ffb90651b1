"""User-facing errors: one clear line, no traceback.

Every check on user input (config keys, names, paths, files) raises ``UserError``;
the CLIs (`train.py`, `evaluate.py`, `python -m envs.collect`) catch it through
:func:`run_cli` and print just its message, exiting with status 2.
"""

from __future__ import annotations

import os
import sys
from typing import Callable, Iterable

from envs.errors import EnvUserError, nearest


class UserError(EnvUserError):
    """Bad input from the user; the message is a single self-contained line.

    Subclasses ``envs``' error so one ``except EnvUserError`` catches both.
    """


def unknown(kind: str, value: str, choices: Iterable[str]) -> UserError:
    """A ``UserError`` for an unknown name, suggesting the nearest valid ones."""
    choices = sorted(choices)
    close = nearest(value, choices)
    hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
    return UserError(f"unknown {kind} {value!r}{hint}; valid: {', '.join(choices)}")


def run_cli(main: Callable[[list[str]], int | None], argv: list[str] | None = None) -> None:
    """Run ``main(argv)``; a ``UserError`` becomes one line on stderr and exit code 2.

    ``--debug`` anywhere in argv (or ``GRIDSLAB_DEBUG=1``) re-raises with the traceback.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("GRIDSLAB_DEBUG") == "1"
    argv = [a for a in argv if a != "--debug"]
    try:
        code = main(argv)
    except EnvUserError as err:
        if debug:
            raise
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted; finished results are kept and a re-run resumes", file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)
