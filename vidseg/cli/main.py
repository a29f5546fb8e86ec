"""``vidseg`` command line: a thin typer layer over the Python API (see ``vidseg.cli._app``)."""

from __future__ import annotations

import sys
from typing import Optional

from vidseg.cli import predict as _predict  # noqa: F401  (registers the command)
from vidseg.cli import tiny as _tiny  # noqa: F401
from vidseg.cli._app import app

# Options that take several values after one flag (``--classes person dog``); see ``expand_multi_value``.
MULTI_VALUE_OPTIONS = ("--classes",)


def expand_multi_value(argv: list[str]) -> list[str]:
    """``--classes a b --out x`` → ``--classes a --classes b --out x`` (click options take one value each).

    The values of such an option run until the next token that starts with ``-``.
    """
    out: list[str] = []
    current: str | None = None
    for token in argv:
        if token.startswith("-"):
            current = token if token in MULTI_VALUE_OPTIONS else None
            if current is None or token != current:
                out.append(token)
            continue
        if current is not None:
            out.extend([current, token])
        else:
            out.append(token)
    return out


def main(argv: Optional[list[str]] = None) -> None:
    """Console-script entry point."""
    args = expand_multi_value(list(sys.argv[1:] if argv is None else argv))
    app(args=args, prog_name="vidseg")
