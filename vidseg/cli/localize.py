"""``vidseg localize``: where and when each concept (nouns and motion verbs alike) is present in videos."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from vidseg.cli import options as opt
from vidseg.cli._app import app, check_videos, dataset_event_printer, end_dataset_run, handle_errors, split_class_names
from vidseg.cli.progress import console, stage_progress


@app.command()
@handle_errors
@opt.with_model_options
def localize(
    videos: Optional[list[Path]] = typer.Argument(None, help="Video files (any container) or folders of frames.",
                                                  show_default=False),
    concepts: Optional[list[str]] = typer.Option(
        None, "--concepts", show_default=False,
        help='Nouns and verbs to localize, comma-separated or repeated, e.g. --concepts "man, walking, dog".',
    ),
    out: Path = typer.Option(Path("out"), "--out", "-o", help="Output folder; each video writes OUT/<video stem>/."),
    localize_threshold: Optional[float] = opt.setting_option("localize.threshold"),
    localize_min_active_s: Optional[float] = opt.setting_option("localize.min_active_s"),
    localize_max_gap_s: Optional[float] = opt.setting_option("localize.max_gap_s"),
    export_heatmaps: Optional[bool] = opt.setting_option("export.heatmaps", help="Write saliency.mp4. Default: on."),
    video_start: Optional[str] = opt.setting_option("video.start"),
    video_end: Optional[str] = opt.setting_option("video.end"),
    mevis: Optional[Path] = typer.Option(
        None, "--mevis", help="The MeViS protocol: a folder of the official MeViS_504 JSON shards; each clip's "
                              "caption is the prompt and its concepts, then verbs, the concepts. Needs --videos.",
    ),
    mevis_videos: Optional[Path] = typer.Option(None, "--videos", help="With --mevis: the folder holding the clips "
                                                                       "(found by file name)."),
    shard: str = typer.Option("0/1", "--shard", help="With --mevis: i/n, this process takes every n-th clip from i."),
    judge_inputs: bool = typer.Option(False, "--judge-inputs", help="With --mevis: also the LLM judge's three grids "
                                                                    "per clip and OUT/judge_requests.jsonl."),
    judge_prompt_from: Optional[Path] = typer.Option(
        None, "--judge-prompt-from", help="With --judge-inputs: your checkout of the official IMAP repository, "
                                          "whose eval_compressed.py holds the judge's system prompt.",
    ),
    settings: dict = None,  # the MODEL_OPTIONS (see with_model_options)
    quiet: bool = opt.QuietOpt,
    debug: bool = opt.DebugOpt,
) -> None:
    """Localize CONCEPTS in VIDEOS, in space and in time: OUT/<stem>/masks/<concept>/00000.png ... (0 / 255 per
    input frame, empty where the concept is inactive), curves.csv and curves.png (each concept's strength over
    time), saliency.mp4 and localize.json (each concept's active frame ranges, in frames and seconds).

    With --mevis JSON_DIR --videos VIDEO_DIR: every clip of the official MeViS_504 shards, resumably, with the
    official npy/<key>.npy maps beside those files (and the judge's inputs with --judge-inputs)."""
    from vidseg.errors import ConfigError
    from vidseg.files import check_writable
    from vidseg.localize import check_concepts
    from vidseg.pipeline import VideoSegmenter

    # Everything that can be checked without the model is checked first, so bad input fails in a second.
    if mevis is not None or mevis_videos is not None or judge_inputs or judge_prompt_from is not None:
        localize_mevis_command(videos, concepts, out, mevis, mevis_videos, shard, judge_inputs, judge_prompt_from,
                               settings, {"localize.threshold": localize_threshold,
                                          "localize.min_active_s": localize_min_active_s,
                                          "localize.max_gap_s": localize_max_gap_s,
                                          "export.heatmaps": export_heatmaps}, quiet)
        return
    if not videos:
        raise ConfigError("no video given; pass one or more videos, e.g. vidseg localize clip.mp4 --concepts "
                          "\"dog, running\"")
    if not concepts:
        raise ConfigError("no concepts given; pass the nouns and verbs to localize, e.g. --concepts \"dog, running\"")
    names = check_concepts(split_class_names(concepts))
    cfg = opt.build_config(settings, {"localize.threshold": localize_threshold,
                                      "localize.min_active_s": localize_min_active_s,
                                      "localize.max_gap_s": localize_max_gap_s, "export.heatmaps": export_heatmaps,
                                      "video.start": video_start, "video.end": video_end})
    check_videos(videos, cfg.video)
    check_writable(out)
    with stage_progress(enabled=not quiet) as progress:
        progress.start(f"load {cfg.model.source}")
        segmenter = VideoSegmenter.from_pretrained(config=cfg)
        progress.finish()
        started = time.perf_counter()
        for folder in segmenter.localize(videos, names, out, progress=progress):
            console.print(f"[green]wrote[/] {escape(str(folder))}  ({time.perf_counter() - started:.1f} s)",
                          highlight=False)
            if not quiet:
                console.print(interval_table(folder))


def localize_mevis_command(videos, concepts, out: Path, json_dir: Optional[Path], video_dir: Optional[Path],
                           shard: str, judge_inputs: bool, prompt_from: Optional[Path], settings: dict,
                           extra: dict, quiet: bool) -> None:
    """The --mevis batch run (``vidseg.runners.mevis.localize_mevis``)."""
    from vidseg.datasets.mevis import mevis_clips
    from vidseg.errors import ConfigError
    from vidseg.evaluation.judge import read_judge_prompt
    from vidseg.files import check_writable
    from vidseg.pipeline import VideoSegmenter
    from vidseg.runners import parse_shard
    from vidseg.runners.mevis import JudgeOptions, localize_mevis

    if json_dir is None or video_dir is None:
        raise ConfigError("the MeViS protocol needs both --mevis JSON_DIR and --videos VIDEO_DIR")
    if videos or concepts:
        raise ConfigError("with --mevis the clips and their concepts come from the shards; leave out VIDEOS and "
                          "--concepts")
    if judge_inputs != (prompt_from is not None):
        raise ConfigError("--judge-inputs needs --judge-prompt-from CHECKOUT_DIR (the judge's system prompt is read "
                          "from the official repository; vidseg does not ship it), and the other way round")
    shard_index = parse_shard(shard)
    clips = mevis_clips(json_dir, video_dir)
    judge = JudgeOptions(read_judge_prompt(prompt_from)) if judge_inputs else None
    check_writable(out)
    cfg = opt.build_config(settings, extra)

    with stage_progress(enabled=not quiet) as progress:
        progress.start(f"load {cfg.model.source}")
        segmenter = VideoSegmenter.from_pretrained(config=cfg)
        progress.finish()
        summary = localize_mevis(segmenter, clips, out, shard=shard_index, judge=judge,
                                 on_event=dataset_event_printer(), progress=progress)
    end_dataset_run(summary)


def interval_table(folder: Path) -> Table:
    """Each concept's active intervals from ``localize.json``, as a table."""
    summary = json.loads((folder / "localize.json").read_text())
    table = Table(title=f"{folder.name}: {summary['num_frames']} frames", title_justify="left")
    for column in ("concept", "active (seconds)", "frames active", "peak strength"):
        table.add_column(column, justify="left" if column in ("concept", "active (seconds)") else "right")
    for c in summary["concepts"]:
        spans = ", ".join(f"{a:.2f}-{b:.2f}" for a, b in c["active_seconds"]) or "—"
        table.add_row(escape(c["concept"]), spans, str(c["frames_active"]), f"{c['peak_strength']:.2f}")
    return table
