"""``vidseg make-tiny-model``: a random-weight CogVideoX to try and test vidseg offline."""

from __future__ import annotations

from pathlib import Path

import typer

from vidseg.cli._app import app, handle_errors
from vidseg.cli.progress import console


@app.command("make-tiny-model")
@handle_errors
def make_tiny_model_command(
    directory: Path = typer.Argument(..., help="Folder to write the model into (diffusers layout).", show_default=False),
    rope: bool = typer.Option(False, "--rope", help="A CogVideoX-5B-like variant (RoPE, DPM scheduler)."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors."),
) -> None:
    """Write a tiny random-weight CogVideoX (a few hundred KB) that --model DIR loads like the real one.

    Its masks are meaningless: it exists to try the pipeline and run the tests without downloading weights.
    """
    from vidseg.models.tiny import make_tiny_model

    path = make_tiny_model(directory, rope=rope)
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    console.print(f"[green]wrote[/] tiny random-weight model to {path} ({size / 1e6:.1f} MB); "
                  f"use it with --model {path}", highlight=False)
