"""``vidseg eval PRED ROOT``: score VSPW-layout predictions exactly as the official VSPW scripts do.

``eval_command`` is a plain function with typer defaults; ``vidseg.cli.main`` registers it as ``eval``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from vidseg.cli import options as opt
from vidseg.cli.progress import stage_progress

# Results go to stdout (progress and errors go to stderr).
stdout = Console()


def eval_command(
    pred: Path = typer.Argument(..., help="Prediction folder: PRED/<video>/<GT mask name>.png, one per GT mask.",
                                show_default=False),
    root: Path = typer.Argument(..., help="VSPW root holding data/<video>/mask/ and the split file.",
                                show_default=False),
    split: str = typer.Option("val.txt", "--split", help="Split file: a name inside ROOT or a path."),
    json_path: Optional[Path] = typer.Option(
        None, "--json", help="Also write the metrics and per-class IoU to this JSON file.", show_default=False,
    ),
    id_space: str = typer.Option(
        "contiguous", "--id-space",
        help="contiguous: predictions 0..123 against the README-mapped GT (raw 0 and 255 ignored); "
             "raw: predictions 1..124 against raw masks, like the official evaluator_test.py.",
    ),
    quiet: bool = opt.QuietOpt,
    debug: bool = opt.DebugOpt,
) -> dict[str, Any]:
    """Print mIoU, FWIoU, mAcc, pixel accuracy, VC8 and VC16 of PRED against ROOT's GT, and the IoU of each class
    present in the GT or the predictions."""
    from vidseg.evaluation import evaluate_predictions
    from vidseg.files import write_json_atomic

    with stage_progress(enabled=not quiet) as progress:
        progress.start("check predictions")

        def on_video(done: int, total: int) -> None:
            if done == 1:
                progress.start("score videos", total=total)
            progress.advance()

        results = evaluate_predictions(pred, root, split=split, id_space=id_space, on_video=on_video)
    stdout.print(metrics_table(results))
    stdout.print(protocol_line(results["protocol"]), highlight=False)
    stdout.print(per_class_table(results))
    if json_path is not None:
        write_json_atomic(json_path, results)
        stdout.print(f"wrote {json_path}", highlight=False)
    return results


def protocol_line(protocol: dict[str, Any] | None) -> str:
    """Which class protocol the predictions were made with, as their label_log.json says."""
    if protocol is None:
        return "classes: unknown (no label_log.json from vidseg label in the prediction folder)"
    name = protocol.get("name")
    if name == "classes-from-gt":
        what = "each video's GT classes (--classes-from-gt: the oracle protocol)"
    elif name == "vocabulary":
        what = f"the whole vocabulary {protocol.get('vocabulary')} ({protocol.get('num_classes')} classes)"
    elif name == "fixed classes":
        what = f"one fixed list of {protocol.get('num_classes')} classes"
    else:
        what = "different protocols in different shards"
    threshold = protocol.get("presence_threshold", "n/a")
    return f"classes: {what}; presence threshold {threshold}"


def _percent(value: float) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{100 * value:.2f}"


def metrics_table(results: dict[str, Any]) -> Table:
    """The headline metrics, in percent."""
    table = Table(title=f"VSPW {results['split']}: {results['num_videos']} videos, {results['num_frames']} frames "
                        f"({results['id_space']} ids)")
    for key in ("mIoU", "FWIoU", "mAcc", "pAcc", "VC8", "VC16"):
        table.add_column(key, justify="right")
    table.add_row(*(_percent(results[k]) for k in ("mIoU", "FWIoU", "mAcc", "pAcc", "VC8", "VC16")))
    return table


def per_class_table(results: dict[str, Any]) -> Table:
    """IoU and accuracy of every class present in the GT or the predictions (only GT-present ones enter mIoU)."""
    table = Table(title="per class (in %; * = not in the GT, so not part of mIoU)")
    for column, justify in (("id", "right"), ("class", "left"), ("IoU", "right"), ("Acc", "right"),
                            ("GT share", "right")):
        table.add_column(column, justify=justify)
    total = max(results["num_pixels"], 1)
    for name, row in results["per_class"].items():
        if not row["gt_pixels"] and not row["pred_pixels"]:
            continue
        marker = "" if row["gt_pixels"] else "*"
        table.add_row(str(row["id"]), name + marker, _percent(row["iou"]), _percent(row["acc"]),
                      f"{100 * row['gt_pixels'] / total:.2f}")
    return table
