"""``vidseg`` command line: a thin typer layer over the Python API (see ``vidseg.cli._app``)."""

from __future__ import annotations

import sys
from typing import Optional

from vidseg.cli._app import app, handle_errors

# Each module registers its command on the app; the import order is the order `vidseg --help` lists them.
from vidseg.cli import predict as _predict  # noqa: E402,F401,I001
from vidseg.cli import localize as _localize  # noqa: E402,F401
from vidseg.cli import label as _label  # noqa: E402,F401
from vidseg.cli import calibrate as _calibrate  # noqa: E402,F401
from vidseg.cli.evaluate import eval_command  # noqa: E402

app.command("eval")(handle_errors(eval_command))
from vidseg.cli import judge as _judge  # noqa: E402,F401
from vidseg.cli import classes as _classes  # noqa: E402,F401
from vidseg.cli import demo as _demo  # noqa: E402,F401
from vidseg.cli import tiny as _tiny  # noqa: E402,F401

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
