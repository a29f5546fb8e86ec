"""``vidseg label``: pseudo-label every video of a dataset, resumably, where the VSPW evaluation reads them."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from vidseg.cli import options as opt
from vidseg.registry import EXPORT_FORMATS
from vidseg.cli._app import app, dataset_event_printer, end_dataset_run, handle_errors, split_class_names
from vidseg.cli.progress import stage_progress


@app.command()
@handle_errors
@opt.with_model_options
def label(
    root: Path = typer.Argument(
        ..., show_default=False,
        help="A VSPW tree (data/<video>/origin/*.jpg), a folder of frame folders, a folder of videos, or a text file "
             "listing video paths.",
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Prediction folder: OUT/<video>/<frame or mask stem>.png.",
                             show_default=False),
    split: Optional[str] = typer.Option(None, "--split", help="VSPW split file (name inside ROOT or a path), e.g. val.txt."),
    classes: Optional[list[str]] = typer.Option(
        None, "--classes", "-c", show_default=False, help="Class names for every video, e.g. --classes person car.",
    ),
    classes_file: Optional[Path] = typer.Option(None, "--classes-file", help="File with one class name per line."),
    classes_from_vocab: Optional[str] = typer.Option(
        None, "--classes-from-vocab", help="Every video is asked for a dataset's whole class list: vspw (its 124 "
                                           "classes; absent ones get no pixel, see --presence-threshold).",
    ),
    classes_from_gt: bool = typer.Option(
        False, "--classes-from-gt",
        help="Each video's classes are the VSPW classes present in its GT masks (the zero-shot protocol).",
    ),
    shard: str = typer.Option("0/1", "--shard", help="i/n: this process labels every n-th video starting at i (0-based)."),
    export_id_space: Optional[str] = opt.setting_option("export.id_space"),
    export_format: str = opt.setting_option(
        "export.format", "vspw", help=f"{EXPORT_FORMATS.choices()}: vspw single-channel VSPW ids, palette PNGs, coco "
                                      "RLE JSON per video, npz the soft saliency.",
    ),
    ray: bool = typer.Option(
        False, "--ray", help="Run on Ray: one model actor per GPU, videos dispatched longest first, failures retried "
                             "(needs vidseg[ray]). Starts a local cluster unless --ray-address is given.",
    ),
    ray_address: Optional[str] = typer.Option(
        None, "--ray-address", help="Join this Ray cluster (e.g. auto, or ray://head:10001); implies --ray.",
    ),
    actors: Optional[int] = typer.Option(
        None, "--actors", help="With --ray: model actors. Default: one per --gpus-per-actor GPUs, 1 without GPUs.",
    ),
    gpus_per_actor: float = typer.Option(
        1.0, "--gpus-per-actor", help="With --ray: GPUs per model actor; fractional (0.5) shares a GPU between small "
                                      "models.",
    ),
    retries: int = typer.Option(2, "--retries", help="With --ray: tries after a video's first failure."),
    settings: dict = None,  # the MODEL_OPTIONS (see with_model_options)
    quiet: bool = opt.QuietOpt,
    debug: bool = opt.DebugOpt,
) -> None:
    """Label every video of ROOT. Rerunning the same command skips finished videos and redoes unfinished ones; a
    video that fails is reported and skipped; a summary and OUT/label_log.json list what happened."""
    from vidseg.datasets import discover_videos
    from vidseg.datasets.vocabulary import VOCABULARIES, load_vocabulary
    from vidseg.runners import RayLabeler, label_videos, parse_shard, shard_videos
    from vidseg.datasets.vspw import label_to_vspw_ids
    from vidseg.errors import ConfigError, DatasetError
    from vidseg.files import check_writable
    from vidseg.pipeline import VideoSegmenter

    given = [bool(classes), classes_file is not None, classes_from_vocab is not None, classes_from_gt]
    if sum(given) != 1:
        raise ConfigError("give the classes with exactly one of --classes, --classes-file, --classes-from-vocab or "
                          "--classes-from-gt")
    vocabulary = None
    if classes_from_vocab is not None:
        if classes_from_vocab not in VOCABULARIES:
            raise ConfigError(f"--classes-from-vocab {classes_from_vocab!r} is not a vocabulary vidseg knows; choose "
                              f"{', '.join(VOCABULARIES)} (or give your list with --classes-file)")
        vocabulary = classes_from_vocab
        fixed = list(load_vocabulary(vocabulary).names)
    elif classes_file is not None:
        vocabulary = str(classes_file)
        fixed = list(load_vocabulary(classes_file).names)
    else:
        fixed = split_class_names(classes) if classes else None
    shard_index = parse_shard(shard)
    videos = discover_videos(root, split=split)
    if classes_from_gt:
        no_gt = [v.name for v in shard_videos(videos, shard_index) if v.mask_dir is None]
        if no_gt:
            raise DatasetError(f"--classes-from-gt needs GT masks, but {', '.join(no_gt[:3])} have none")
    check_writable(out)
    cfg = opt.build_config(settings, {"export.format": export_format, "export.overlay": False,
                                      "export.id_space": export_id_space})
    if cfg.export.format == "vspw" and fixed is not None:
        label_to_vspw_ids(fixed, cfg.export.id_space)  # fail now, not per video, on non-VSPW class names

    use_ray = ray or ray_address is not None
    labeler = None
    if use_ray:  # before any model work: a missing Ray or a bad count is one line
        labeler = RayLabeler(cfg, address=ray_address, num_actors=actors, gpus_per_actor=gpus_per_actor,
                             retries=retries)
    on_event = dataset_event_printer()

    with stage_progress(enabled=not quiet) as progress:
        if labeler is not None:
            summary = labeler.run(videos, out, classes=fixed, shard=shard_index, progress=progress,
                                  on_event=on_event, vocabulary=vocabulary)
        else:
            progress.start(f"load {cfg.model.source}")
            segmenter = VideoSegmenter.from_pretrained(config=cfg)
            progress.finish()
            summary = label_videos(segmenter, videos, out, classes=fixed, shard=shard_index, progress=progress,
                                   on_event=on_event, vocabulary=vocabulary)
    end_dataset_run(summary)

