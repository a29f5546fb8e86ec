"""The typer app every subcommand registers on, and the error handling they share.

Library errors (``VidsegError``) become one ``error: ...`` line on stderr and the error's exit code; Ctrl-C exits
with 130. ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Optional

import typer

from vidseg.cli.progress import console
from vidseg.errors import VidsegError

app = typer.Typer(
    name="vidseg",
    help="Segment real videos by class name with no training, from a video diffusion transformer's own attention "
         "(IMAP / GramCol on CogVideoX and Wan2.1). Exit codes: 0 done, 1 a failure while running, 2 bad input or "
         "settings (nothing was started), 130 interrupted.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def handle_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Turn library errors into one line and an exit code; keep tracebacks for bugs."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        debug = kwargs.get("debug", False)
        try:
            return command(*args, **kwargs)
        except VidsegError as exc:
            if debug:
                raise
            console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            console.print("[bold red]interrupted[/]: nothing half-written was left behind")
            raise typer.Exit(130) from None

    return wrapper


def split_class_names(values: Optional[list[str]]) -> list[str]:
    """Class names from repeated ``--classes`` values, each of which may also be comma-separated."""
    names: list[str] = []
    for value in values or []:
        names.extend(value.split(",") if "," in value else [value])
    return names
