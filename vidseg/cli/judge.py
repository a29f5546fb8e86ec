"""``vidseg judge-scores RESULTS.jsonl``: the MeViS LLM judge's scores (method.md §14), per method, from an OpenAI
Batch API output file."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from vidseg.cli import options as opt
from vidseg.cli._app import app, handle_errors


@app.command("judge-scores")
@handle_errors
def judge_scores_command(
    results: Path = typer.Argument(..., show_default=False,
                                   help="The batch output .jsonl (one line per request, custom_id <clip>::<key>)."),
    json_path: Optional[Path] = typer.Option(None, "--json", show_default=False,
                                             help="Also write the table and every request's scores to this JSON."),
    debug: bool = opt.DebugOpt,
) -> None:
    """Print the mean of each criterion (SL, TL, PR, SS, OBJ; 1-5) per method, as a markdown table: each cell is
    mean (scored/requests); "failed" counts requests with an error, a non-200 status or no answer."""
    from vidseg.evaluation.judge import format_judge_table, judge_scores
    from vidseg.files import write_json_atomic

    scores = judge_scores(results)
    typer.echo(format_judge_table(scores))
    if json_path is not None:
        write_json_atomic(json_path, scores.to_dict())
        typer.echo(f"wrote {json_path}")
