"""The one error type for bad user input (a single clear line), and the CLI wrapper that
prints it. Both live here because ``envs`` imports without torch and never imports
``gridslab``; gridslab's ``UserError`` subclasses ``EnvUserError``, so ``run_cli`` serves
``train.py``, ``evaluate.py`` and the ``python -m envs...`` tools alike.
"""

from __future__ import annotations

import difflib
import os
import sys
from typing import Callable, Iterable


class EnvUserError(ValueError):
    """Bad input to an environment (unknown name, camera, resolution...)."""


def nearest(value: str, choices: Iterable[str], n: int = 3) -> list[str]:
    """Up to ``n`` choices closest to ``value``: only those scoring near the best match,
    so a shared prefix ("robosuite/...") does not drag in every name."""
    scored = sorted(((difflib.SequenceMatcher(None, value, c).ratio(), c) for c in choices), reverse=True)
    if not scored or scored[0][0] < 0.6:
        return []
    best = scored[0][0]
    return [c for score, c in scored[:n] if score >= best - 0.05]


def unknown_message(kind: str, value: str, choices: Iterable[str]) -> str:
    """ "unknown KIND 'value' (did you mean ...?); valid: a, b, c" with the near matches."""
    choices = sorted(choices)
    close = nearest(value, choices)
    hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
    return f"unknown {kind} {value!r}{hint}; valid: {', '.join(choices)}"


def unknown_name(kind: str, value: str, choices: Iterable[str]) -> EnvUserError:
    """An ``EnvUserError`` for an unknown ``kind`` name, with near matches and the valid list."""
    return EnvUserError(unknown_message(kind, value, choices))


def run_cli(main: Callable[[list[str]], int | None], argv: list[str] | None = None) -> None:
    """Run ``main(argv)``; an ``EnvUserError`` (or gridslab ``UserError``) becomes one line on
    stderr and exit code 2.

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
