"""``vidseg demo``: a Gradio web app over the library pipeline (the optional extra ``vidseg[demo]``).

Upload a video (or press one of the toy clips rendered at start-up), type class names, optionally a Start / End
time, pick the map kind, inversion and upsampler: the page shows each stage's progress, then the overlay video, the
per-class heatmap video, the class summary, and the masks (zip) and ``saliency.npz`` to download. The model loads
once per server (``VideoSegmenter``); jobs run one at a time on it. Each job runs ``compute_saliency`` and
``export_labels`` — what ``vidseg predict`` runs — into its own folder.

A server others reach is bounded by ``DemoLimits``: the upload size, the seconds of video per job, the jobs waiting
behind the running one (more are told the demo is busy), and how long a job's files stay. ``launch_demo(auth=...)``
asks for a user name and password.

For scripts there is one API endpoint, ``/segment``: (video file, classes as one comma-separated string, optional
start and end times) -> (overlay video file, zip of the palette masks), e.g. with ``gradio_client``::

    from gradio_client import Client, handle_file
    overlay, masks_zip = Client("http://127.0.0.1:7860/").predict(handle_file("clip.mp4"), "person, dog",
                                                                   api_name="/segment")

Bad input gets the CLI's one-line error in the page, naming the upload and never a path on the server.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import re
import shutil
import tempfile
import threading
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

from vidseg.errors import ConfigError, MissingDependencyError, VidsegError, first_line

logger = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'vidseg[demo]'"
# The settings the page offers as dropdowns (YAML name -> label); the choices are each setting's registry.
PAGE_SETTINGS = {"maps.kind": "Map", "inversion.method": "Inversion", "upsample.method": "Upsampler"}
EXAMPLE_SEEDS = (0, 1, 2)  # toy clips on the page, rendered when the server starts
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


class DemoBusyError(VidsegError):
    """As many jobs are waiting as the server allows; the visitor should try again later."""


@dataclass
class DemoLimits:
    """What one demo server lets its visitors do (``vidseg demo --max-upload-mb ...``)."""

    max_upload_mb: float = 200.0  # larger uploads are refused by the server before they are stored
    max_seconds: float = 60.0  # seconds of video per job, from Start to End; longer ones are refused
    max_waiting: int = 4  # jobs waiting behind the running one; one more is told the demo is busy
    keep_minutes: float = 60.0  # a finished job's files (and the uploads) are removed after this long
    jobs_kept: int = 20  # and at most this many finished jobs keep their files

    @property
    def cleanup_s(self) -> float:
        """How often old files are looked for: every minute, or more often when they are kept for less than 4."""
        return max(1.0, min(60.0, self.keep_minutes * 15))

    def validate(self) -> None:
        if self.max_upload_mb <= 0 or self.max_seconds <= 0 or self.keep_minutes <= 0:
            raise ConfigError(f"the demo's upload size ({self.max_upload_mb} MB), seconds per job "
                              f"({self.max_seconds}) and minutes kept ({self.keep_minutes}) must be positive")
        if self.max_waiting < 0 or self.jobs_kept < 1:
            raise ConfigError(f"the demo's waiting jobs ({self.max_waiting}) must be >= 0 and its jobs kept "
                              f"({self.jobs_kept}) >= 1")


def parse_auth(values: Sequence[str]) -> list[tuple[str, str]]:
    """Credentials from ``user:password`` strings or files holding one per line (blank lines and ``#`` comments
    skipped); the password is everything after the first colon."""
    pairs: list[tuple[str, str]] = []
    for value in values:
        path = Path(value)
        if path.is_file():
            try:
                text = path.read_text()
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError(f"cannot read the --auth file {path}: {first_line(exc)}") from None
            lines = [(f"{path.name} line {n}", line.strip()) for n, line in enumerate(text.splitlines(), 1)
                     if line.strip() and not line.lstrip().startswith("#")]
            if not lines:
                raise ConfigError(f"--auth file {path} holds no user:password line")
        else:
            lines = [("--auth", value)]
        for where, line in lines:
            user, sep, password = line.partition(":")
            if not (sep and user.strip() and password):
                raise ConfigError(f"{where}: give user:password (or a file of such lines), not {line!r}"
                                  if where == "--auth" else f"{where}: expected user:password")
            pairs.append((user.strip(), password))
    return pairs


def import_gradio() -> Any:
    try:
        import gradio
    except ImportError:
        raise MissingDependencyError(f"the web demo needs Gradio, which is not installed: {INSTALL_HINT}") from None
    return gradio


def visitor_text(text: str, upload: str | Path | None = None) -> str:
    """``text`` as a visitor may see it: the upload named by its file name, and no other path of the server (any
    absolute path is cut to its last part)."""
    if upload:
        text = text.replace(str(upload), Path(upload).name)
    return re.sub(r"(?<![\w.~:/])/(?:[^/\s'\"]+/)+", "", text)


class GradioProgress:
    """``vidseg.progress.Progress`` drawn by Gradio's progress bar: the stage name, and its steps when counted."""

    def __init__(self, bar: Any):
        self.bar, self.stage, self.total, self.done = bar, "", None, 0

    def lane(self) -> "GradioProgress":
        return self

    def start(self, stage: str, total: int | None = None) -> None:
        self.stage, self.total, self.done = stage, total, 0
        self.bar(0.0 if total else None, desc=stage)

    def advance(self, n: int = 1) -> None:
        self.done += n
        if self.total:
            self.bar((self.done, self.total), desc=self.stage)

    def finish(self) -> None:
        pass


class DemoJobs:
    """Runs segmentation jobs on one loaded segmenter, one at a time, within ``limits``; each job's files live in
    their own folder under ``root``."""

    def __init__(self, segmenter: Any, root: str | Path | None = None, limits: DemoLimits | None = None):
        self.segmenter = segmenter
        self.limits = limits or DemoLimits()
        self.limits.validate()
        self.root = Path(root) if root else Path(tempfile.mkdtemp(prefix="vidseg-demo-"))
        self._run_lock = threading.Lock()  # one job on the model at a time, whatever calls (page, API, script)
        self._state_lock = threading.Lock()  # guards the count of jobs admitted
        self._admitted = 0  # the running job and those waiting for it
        self._count = 0  # jobs started, numbering their folders (under the run lock)

    def settings_for(self, choices: dict[str, str | None] | None = None) -> Any:
        """The server's config with the page's ``choices`` (by YAML name, e.g. ``PAGE_SETTINGS``; None or "" keeps
        the server's), validated like ``--set`` overrides."""
        from vidseg.config import set_setting

        config = copy.deepcopy(self.segmenter.config)
        for name, value in (choices or {}).items():
            if value:
                set_setting(config, name, value)
        config.export.format, config.export.overlay, config.export.heatmaps = "palette", True, True
        config.validate()
        return config

    def segment(self, video: str | Path | None, classes: str, *, start: str | None = None, end: str | None = None,
                settings: dict[str, str | None] | None = None, progress: Any = None) -> dict[str, Any]:
        """One job on ``video`` from ``start`` to ``end`` (seconds or mm:ss; empty: its start / end): returns the
        paths of ``overlay``, ``heatmaps`` (or None), ``masks_zip`` and ``saliency`` and the ``summary`` rows
        ``[class, present, frames labelled, mean area %, peak saliency]``.

        Raises VidsegError (its message fit for a visitor: ``visitor_text``) for bad input, a video longer than
        ``limits.max_seconds``, and ``DemoBusyError`` when ``limits.max_waiting`` jobs already wait."""
        try:
            return self._segment(video, classes, start or None, end or None, settings, progress)
        except VidsegError as exc:
            if visitor_text(str(exc), video) == str(exc):
                raise
            raise type(exc)(visitor_text(first_line(exc), video)) from None

    def _segment(self, video: str | Path | None, classes: str, start: str | None, end: str | None,
                 settings: dict[str, str | None] | None, progress: Any) -> dict[str, Any]:
        from vidseg.export import HEATMAP_FILE, MASKS_DIR, OVERLAY_FILE, SALIENCY_FILE
        from vidseg.export.summary import ClassSummary
        from vidseg.models.text import check_classes
        from vidseg.progress import NoProgress
        from vidseg.video.read import parse_time

        progress = progress or NoProgress()
        if not video:
            raise ConfigError("no video: upload one first")
        if not (classes or "").strip():
            raise ConfigError("no classes: type the names to segment, e.g. person, dog")
        names = check_classes(classes.split(","))
        for label, value in (("Start", start), ("End", end)):
            if value is not None:
                parse_time(value, label)  # the page's names for them, before validate() names the settings
        config = self.settings_for({**(settings or {}), "video.start": start, "video.end": end})
        self._check_length(Path(video), config)
        with self._admission() as ahead:
            if ahead:
                progress.start(f"waiting for {ahead} job{'s' if ahead > 1 else ''} ahead")
            with self._run_lock:
                self.forget_old_jobs()
                self._count += 1
                job = self.root / f"job{self._count:05d}"
                segmenter = self.segmenter.with_config(config)
                result = segmenter.compute_saliency(video, names, progress=progress)
                folder = segmenter.export_labels(result, job / Path(video).stem, progress=progress)
        masks_zip = job / f"{folder.name}_masks.zip"
        with zipfile.ZipFile(masks_zip, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for mask in sorted((folder / MASKS_DIR).glob("*.png")):
                archive.write(mask, f"{folder.name}/{mask.name}")
            archive.write(folder / "labels.json", f"{folder.name}/labels.json")
        summary = [[row.name, "yes" if row.present else "no", row.frames, round(row.area, 1), round(row.peak, 2)]
                   for row in ClassSummary.rows(folder / "labels.json")]
        heatmaps = folder / HEATMAP_FILE
        return {"overlay": folder / OVERLAY_FILE, "heatmaps": heatmaps if heatmaps.exists() else None,
                "masks_zip": masks_zip, "saliency": folder / SALIENCY_FILE, "summary": summary}

    def _check_length(self, video: Path, config: Any) -> None:
        """Refuse a job over ``limits.max_seconds`` of video, naming the upload and how to cut it."""
        from vidseg.video.read import format_time, open_video

        v = config.video
        with open_video(video, reader=v.reader, frame_folder_fps=v.frame_folder_fps, start=v.start,
                        end=v.end) as reader:
            info = reader.info
        seconds = info.num_frames / info.fps
        limit = self.limits.max_seconds
        if seconds > limit + 0.5 / info.fps:  # half a frame of slack: a clip of exactly the limit passes
            part = "" if v.start is None and v.end is None else " from Start to End"
            raise ConfigError(f"{video.name} is {format_time(seconds)} long{part}; this demo segments at most "
                              f"{format_time(limit)} per job: set Start and End to a part of it")

    @contextlib.contextmanager
    def _admission(self) -> Iterator[int]:
        """Admit a job, yielding how many are ahead of it, or raise DemoBusyError when the queue is full."""
        with self._state_lock:
            if self._admitted > self.limits.max_waiting:
                waiting = self._admitted - 1
                raise DemoBusyError(f"the demo is busy: one job is running and {waiting} waiting, the most it "
                                    f"queues; try again in a few minutes")
            ahead = self._admitted
            self._admitted += 1
        try:
            yield ahead
        finally:
            with self._state_lock:
                self._admitted -= 1

    def forget_old_jobs(self) -> None:
        """Remove the files of jobs beyond ``limits.jobs_kept`` and of those older than ``limits.keep_minutes``."""
        jobs = sorted(p for p in self.root.glob("job*") if p.is_dir())
        oldest = time.time() - self.limits.keep_minutes * 60
        for i, job in enumerate(jobs):
            try:
                stale = i < len(jobs) - self.limits.jobs_kept or job.stat().st_mtime < oldest
            except FileNotFoundError:
                continue
            if stale:
                shutil.rmtree(job, ignore_errors=True)

    def example_clips(self, seeds: Sequence[int] = EXAMPLE_SEEDS) -> list[list[str]]:
        """Toy clips for the page's examples, rendered once under ``root/examples``: ``[[video, classes], ...]``
        with the clip's shapes as the classes."""
        from vidseg.toyworld import render_clip, write_toy_clip

        examples = []
        for seed in seeds:
            clip = render_clip(seed)
            path = self.root / "examples" / f"toy{seed}.mp4"
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                write_toy_clip(path, clip)
            examples.append([str(path), ", ".join(dict.fromkeys(clip.classes))])
        return examples


def build_demo(jobs: DemoJobs) -> Any:
    """The Gradio app (``gr.Blocks``) over ``jobs``; ``launch_demo`` serves it."""
    from vidseg.config import VidsegConfig, get_setting, setting_fields
    from vidseg.video.read import format_time

    gr = import_gradio()
    fields = setting_fields(VidsegConfig())
    config = jobs.segmenter.config
    limits = jobs.limits

    def page_choices(name: str) -> list[str]:
        """A dropdown's choices: the setting's registry, and for the map kind only those the backbone gives."""
        if name == "maps.kind":
            return list(jobs.segmenter.model.map_kinds)
        return list(fields[name].metadata["choices"].names())

    def page_error(exc: BaseException, video: str | None) -> Exception:
        if isinstance(exc, VidsegError):  # DemoJobs.segment has named the upload already
            return gr.Error(first_line(exc), print_exception=False)
        logger.exception("demo job failed")
        return gr.Error(visitor_text(f"internal error: {type(exc).__name__}: {first_line(exc)} (see the server's "
                                     f"log)", video), print_exception=False)

    # Gradio finds the progress tracker by the default of a named parameter: one parameter per page setting.
    def run_page(video, classes, start, end, maps_kind, inversion_method, upsample_method, progress=gr.Progress()):
        choices = (maps_kind, inversion_method, upsample_method)
        try:
            out = jobs.segment(video, classes, start=start, end=end, settings=dict(zip(PAGE_SETTINGS, choices)),
                               progress=GradioProgress(progress))
        except Exception as exc:  # shown as one line in the page
            raise page_error(exc, video) from None
        names = ", ".join(row[0] for row in out["summary"])
        return (str(out["overlay"]), str(out["heatmaps"]) if out["heatmaps"] else None, out["summary"],
                [str(out["masks_zip"]), str(out["saliency"])], f"Segmented: {names}")

    def run_api(video, classes, start=None, end=None):  # None defaults: optional for gradio_client
        try:
            out = jobs.segment(video, classes, start=start, end=end)
        except Exception as exc:
            raise page_error(exc, video) from None
        return str(out["overlay"]), str(out["masks_zip"])

    # Uploads and returned files copied into Gradio's cache go after the same time as the job folders.
    with gr.Blocks(title="vidseg", delete_cache=(round(limits.cleanup_s), round(limits.keep_minutes * 60))) as demo:
        gr.Markdown("# vidseg\nSegment a video by class name, with no training: IMAP / GramCol maps read from "
                    f"the attention of `{visitor_text(jobs.segmenter.model.source)}`. Up to "
                    f"{limits.max_upload_mb:g} MB and {format_time(limits.max_seconds)} of video per job: set Start "
                    f"and End to segment part of a longer one.")
        with gr.Row():
            with gr.Column():
                video = gr.Video(label="Video", sources=["upload"], elem_id="video-in")
                classes = gr.Textbox(label="Classes (comma-separated)", placeholder="person, dog",
                                     elem_id="classes")
                with gr.Row():
                    start = gr.Textbox(label="Start (seconds or mm:ss)", placeholder="0", elem_id="start")
                    end = gr.Textbox(label="End", placeholder="the end", elem_id="end")
                with gr.Row():
                    dropdowns = [gr.Dropdown(page_choices(name), value=get_setting(config, name), label=label)
                                 for name, label in PAGE_SETTINGS.items()]
                run = gr.Button("Segment", variant="primary", elem_id="run")
                gr.Examples(jobs.example_clips(), [video, classes], label="Toy clips: pick one, then Segment",
                            elem_id="examples")
            with gr.Column():
                status = gr.Markdown(elem_id="status")
                overlay = gr.Video(label="Overlay", elem_id="overlay", autoplay=True, loop=True)
                heatmaps = gr.Video(label="Heatmaps (probability per class)", elem_id="heatmaps", autoplay=True,
                                    loop=True)
                summary = gr.Dataframe(headers=["class", "present", "frames labelled", "mean area % (where labelled)",
                                                "peak saliency"], label="Classes", elem_id="summary",
                                       interactive=False)
                files = gr.File(label="Downloads: masks (zip) and saliency.npz", file_count="multiple",
                                elem_id="downloads")
        run.click(run_page, [video, classes, start, end, *dropdowns],
                  [overlay, heatmaps, summary, files, status], api_visibility="private")
        # The scripted endpoint: a hidden trigger with exactly the API's inputs and outputs.
        api_overlay, api_zip = gr.Video(visible=False), gr.File(visible=False)
        gr.Button(visible=False).click(run_api, [video, classes, start, end], [api_overlay, api_zip],
                                       api_name="segment")
    return demo


def launch_demo(segmenter: Any, *, host: str = "127.0.0.1", port: int = 7860, root: str | Path | None = None,
                limits: DemoLimits | None = None, auth: Sequence[tuple[str, str]] = (), block: bool = True) -> Any:
    """Serve the demo for ``segmenter`` (loaded once) within ``limits``, asking for one of the ``auth``
    (user, password) pairs when given. Jobs run one at a time; a thread removes old job files. Returns the app."""
    jobs = DemoJobs(segmenter, root, limits)
    if host not in LOOPBACK_HOSTS and not auth:
        logger.warning("serving on %s with no --auth: anyone who reaches this port can run jobs; add --auth "
                       "user:password", host)
    demo = build_demo(jobs)
    # Every event reaches DemoJobs at once: it runs one job at a time and answers "busy" beyond its queue, which a
    # Gradio queue (that holds events silently) would not.
    demo.queue(default_concurrency_limit=None)
    threading.Thread(target=_forget_old_jobs_every, args=(jobs,), name="vidseg-demo-cleanup", daemon=True).start()
    demo.launch(server_name=host, server_port=port, prevent_thread_lock=not block, show_error=False,
                allowed_paths=[str(jobs.root)], quiet=True, auth=list(auth) or None,
                auth_message="vidseg demo: sign in with the user name and password you were given",
                max_file_size=int(jobs.limits.max_upload_mb * 1024 * 1024))
    return demo


def _forget_old_jobs_every(jobs: DemoJobs) -> None:
    while True:
        time.sleep(jobs.limits.cleanup_s)
        jobs.forget_old_jobs()
