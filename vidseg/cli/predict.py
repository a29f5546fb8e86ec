"""``vidseg predict``: label maps for every frame of one or more videos."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from vidseg.cli import options as opt
from vidseg.cli._app import app, check_videos, handle_errors, split_class_names
from vidseg.cli.progress import console, stage_progress


@app.command()
@handle_errors
@opt.with_model_options
def predict(
    videos: list[Path] = typer.Argument(..., help="Video files (any container) or folders of frames.", show_default=False),
    classes: Optional[list[str]] = typer.Option(
        None, "--classes", "-c", show_default=False,
        help="Class names to segment, e.g. --classes person dog (or person,dog). Label i = i-th class, 0 = background.",
    ),
    out: Path = typer.Option(Path("out"), "--out", "-o", help="Output folder; each video writes OUT/<video stem>/."),
    export_format: Optional[str] = opt.setting_option("export.format"),
    export_overlay: Optional[bool] = opt.setting_option("export.overlay"),
    export_heatmaps: Optional[bool] = opt.setting_option("export.heatmaps"),
    video_start: Optional[str] = opt.setting_option("video.start"),
    video_end: Optional[str] = opt.setting_option("video.end"),
    settings: dict = None,  # the MODEL_OPTIONS (see with_model_options)
    quiet: bool = opt.QuietOpt,
    debug: bool = opt.DebugOpt,
) -> None:
    """Segment VIDEOS by class name: OUT/<stem>/masks/00000.png ... (one per input frame, input resolution),
    labels.json (with a per-class summary, also printed), saliency.npz, overlay.mp4, saliency.mp4 and preview.png."""
    from vidseg.files import check_writable
    from vidseg.models.text import check_classes
    from vidseg.pipeline import VideoSegmenter

    # Everything that can be checked without the model is checked first, so bad input fails in a second.
    names = check_classes(split_class_names(classes))
    cfg = opt.build_config(settings, {"export.format": export_format, "export.overlay": export_overlay,
                                      "export.heatmaps": export_heatmaps, "video.start": video_start,
                                      "video.end": video_end})
    check_videos(videos, cfg.video)
    check_writable(out)
    with stage_progress(enabled=not quiet) as progress:
        progress.start(f"load {cfg.model.source}")
        segmenter = VideoSegmenter.from_pretrained(config=cfg)
        progress.finish()
        started = time.perf_counter()
        for folder in segmenter.predict(videos, names, out, progress=progress):
            console.print(f"[green]wrote[/] {escape(str(folder))}  ({time.perf_counter() - started:.1f} s)",
                          highlight=False)
            if not quiet:
                console.print(class_table(folder))


def class_table(folder: Path) -> Table:
    """The per-class summary that ``labels.json`` holds, as a table; "—" where a maps-only export made no labels."""
    from vidseg.export.summary import ClassSummary

    num_frames = json.loads((folder / "labels.json").read_text())["num_frames"]
    rows = ClassSummary.rows(folder / "labels.json")
    table = Table(title=f"{folder.name}: {num_frames} frames", title_justify="left")
    for column in ("class", "present (score)", "frames labelled", "mean area % (where labelled)", "peak saliency"):
        table.add_column(column, justify="left" if column == "class" else "right")
    for row in rows:
        score = "" if row.presence_score is None else f" ({row.presence_score:.2f})"
        table.add_row(escape(row.name), ("yes" if row.present else "no") + score,
                      "—" if row.frames is None else f"{row.frames}", "—" if row.area is None else f"{row.area:.1f}",
                      f"{row.peak:.2f}")
    if any(row.frames is None for row in rows):
        table.caption = "—: a maps-only export makes no labels, so their frames and area are unknown"
        table.caption_justify = "left"
    return table
