"""``vidseg classes``: the VSPW class names, their ids and every name each answers to."""

from __future__ import annotations

from typing import Optional

import typer

from vidseg.cli._app import app, handle_errors


@app.command("classes")
@handle_errors
def list_classes(
    search: Optional[str] = typer.Argument(None, help="Show only classes with a name containing this text."),
) -> None:
    """List the 124 VSPW classes on stdout: contiguous id (0..123, what --id-space contiguous writes), raw mask
    value, raw name, the prompt --classes-from-gt uses, and every name --classes accepts (case-insensitive)."""
    from vidseg.datasets.vspw import alternatives, vspw_classes

    needle = (search or "").lower().replace("_", " ")
    rows = []
    for c in vspw_classes():
        accepted = list(dict.fromkeys(n.replace("_", " ").lower() for n in (c.name, *alternatives(c.name), c.prompt)))
        if needle in " | ".join(accepted):
            rows.append((str(c.id), str(c.raw_id), c.name, c.prompt, ", ".join(accepted)))
    header = ("id", "raw", "name", "prompt", "accepted by --classes")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    for row in [header, *rows]:
        typer.echo("  ".join([row[0].rjust(widths[0]), row[1].rjust(widths[1]), row[2].ljust(widths[2]),
                              row[3].ljust(widths[3]), row[4]]).rstrip())
