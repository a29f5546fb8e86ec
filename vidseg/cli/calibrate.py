"""``vidseg calibrate``: fit the presence threshold and background logit of the loaded model on labeled videos."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from vidseg.cli import options as opt
from vidseg.cli._app import app, handle_errors
from vidseg.cli.progress import console, stage_progress


@app.command()
@handle_errors
@opt.with_model_options
def calibrate(
    root: Path = typer.Argument(..., show_default=False,
                                help="A VSPW-layout tree with GT: data/<video>/origin/ frames and data/<video>/mask/."),
    out: Path = typer.Option(..., "--out", "-o", show_default=False,
                             help="YAML file to write the fitted settings to (give it to --config)."),
    split: Optional[str] = typer.Option(None, "--split", help="Split file naming the videos (in ROOT or a path), "
                                                              "e.g. val.txt. Default: every video."),
    classes_file: Optional[Path] = typer.Option(
        None, "--classes-file", help="The vocabulary: one class name per line, line k = GT mask value k (0 is no "
                                     "class, 255 void). Default: VSPW's 124 classes.",
    ),
    max_videos: Optional[int] = typer.Option(None, "--max-videos", help="Use the first N videos (in name order)."),
    settings: dict = None,  # the MODEL_OPTIONS (see with_model_options)
    quiet: bool = opt.QuietOpt,
    debug: bool = opt.DebugOpt,
) -> None:
    """Fit presence.threshold and probs.background for the loaded model on ROOT's labeled videos, asked for the
    whole vocabulary, and write them to OUT for --config; prints the scores before and after."""
    from vidseg.calibrate import fit_calibration, read_truth
    from vidseg.datasets import discover_videos
    from vidseg.datasets.vocabulary import load_vocabulary
    from vidseg.errors import ConfigError, DatasetError
    from vidseg.files import write_bytes_atomic
    from vidseg.pipeline import VideoSegmenter

    vocabulary = load_vocabulary(classes_file if classes_file is not None else "vspw")
    videos = [v for v in discover_videos(root, split=split) if v.mask_dir is not None]
    if not videos:
        raise DatasetError(f"{root} holds no videos with GT masks (data/<video>/mask/*.png); calibrate needs labels")
    if max_videos is not None:
        if max_videos < 1:
            raise ConfigError(f"--max-videos is {max_videos}; give at least 1")
        videos = videos[:max_videos]
    if out.is_dir():
        raise ConfigError(f"--out {out} is a folder; give the YAML file to write, e.g. calibrated.yaml")
    cfg = opt.build_config(settings)
    names = list(vocabulary.names)
    with stage_progress(enabled=not quiet) as progress:
        progress.start(f"load {cfg.model.source}")
        segmenter = VideoSegmenter.from_pretrained(config=cfg)
        progress.finish()
        labeled = [read_truth(video, vocabulary, result)
                   for video, result in zip(videos, _results(segmenter, videos, names, progress))]

        def step(message: str) -> None:
            progress.start(message)

        calibration = fit_calibration(labeled, cfg, on_step=step)
        progress.finish()
    source = f"{root}" + (f" (split {split})" if split else "")
    write_bytes_atomic(out, calibration.config_yaml(model=cfg.model.source, source=source).encode())
    console.print(f"before: {calibration.before.line()}", highlight=False)
    console.print(f"after:  {calibration.after.line()}", highlight=False)
    threshold = "null (keep every class)" if calibration.threshold is None else f"{calibration.threshold:.4f}"
    console.print(f"[green]wrote[/] {escape(str(out))}: presence.threshold {threshold}, probs.background "
                  f"{calibration.background:g}; use it with --config {escape(str(out))}", highlight=False)


def _results(segmenter, videos, names, progress):
    """Each video's saliency for the whole vocabulary, failing on the first video that fails."""
    for _, result in segmenter.iter_saliency([(v.source, names) for v in videos], progress=progress):
        if isinstance(result, Exception):
            raise result
        yield result
