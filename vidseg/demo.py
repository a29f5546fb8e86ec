"""``vidseg demo``: a Gradio web app over the library pipeline (the optional extra ``vidseg[demo]``).

Upload a video, type class names, pick the map kind, inversion and upsampler: the page shows each stage's progress,
then the overlay video, the per-class heatmap video, the class summary, and the masks (zip) and ``saliency.npz`` to
download. The model loads once per server (``VideoSegmenter``); jobs queue one at a time on it. Each job runs
``compute_saliency`` and ``export_labels`` — what ``vidseg predict`` runs — into its own folder.

For scripts there is one API endpoint, ``/segment``: (video file, classes as one comma-separated string) ->
(overlay video file, zip of the palette masks), e.g. with ``gradio_client``::

    from gradio_client import Client, handle_file
    overlay, masks_zip = Client("http://127.0.0.1:7860/").predict(handle_file("clip.mp4"), "person, dog",
                                                                   api_name="/segment")

Bad input gets the CLI's one-line error in the page, never a traceback.
"""

from __future__ import annotations

import copy
import logging
import shutil
import tempfile
import threading
import zipfile
from pathlib import Path
from typing import Any

from vidseg.errors import MissingDependencyError, VidsegError, first_line

logger = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'vidseg[demo]'"
# The settings the page offers as dropdowns (YAML name -> label); the choices are each setting's registry.
PAGE_SETTINGS = {"maps.kind": "Map", "inversion.method": "Inversion", "upsample.method": "Upsampler"}
JOBS_KEPT = 20  # finished jobs whose files stay downloadable; older ones are removed


def import_gradio() -> Any:
    try:
        import gradio
    except ImportError:
        raise MissingDependencyError(f"the web demo needs Gradio, which is not installed: {INSTALL_HINT}") from None
    return gradio


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
    """Runs segmentation jobs on one loaded segmenter; each job's files live in their own folder under ``root``."""

    def __init__(self, segmenter: Any, root: str | Path | None = None):
        self.segmenter = segmenter
        self.root = Path(root) if root else Path(tempfile.mkdtemp(prefix="vidseg-demo-"))
        self._lock = threading.Lock()  # the queue runs one job at a time; this guards direct API callers too
        self._count = 0

    def settings_for(self, choices: dict[str, str | None] | None = None) -> Any:
        """The server's config with the page's ``choices`` (``PAGE_SETTINGS`` by YAML name; None keeps the server's),
        validated like ``--set`` overrides."""
        from vidseg.config import set_setting

        config = copy.deepcopy(self.segmenter.config)
        for name, value in (choices or {}).items():
            if value:
                set_setting(config, name, value)
        config.export.format, config.export.overlay, config.export.heatmaps = "palette", True, True
        config.validate()
        return config

    def segment(self, video: str | Path | None, classes: str, *, settings: dict[str, str | None] | None = None,
                progress: Any = None) -> dict[str, Any]:
        """One job: returns the paths of ``overlay``, ``heatmaps`` (or None), ``masks_zip`` and ``saliency`` and the
        ``summary`` rows ``[class, present, frames labelled, mean area %, peak saliency]``."""
        from vidseg.errors import ConfigError
        from vidseg.export import HEATMAP_FILE, MASKS_DIR, OVERLAY_FILE, SALIENCY_FILE
        from vidseg.export.summary import ClassSummary
        from vidseg.models.text import check_classes

        if not video:
            raise ConfigError("no video: upload one first")
        if not (classes or "").strip():
            raise ConfigError("no classes: type the names to segment, e.g. person, dog")
        names = check_classes(classes.split(","))
        config = self.settings_for(settings)
        with self._lock:
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
        self._forget_old_jobs()
        summary = [[row.name, "yes" if row.present else "no", row.frames, round(row.area, 1), round(row.peak, 2)]
                   for row in ClassSummary.rows(folder / "labels.json")]
        heatmaps = folder / HEATMAP_FILE
        return {"overlay": folder / OVERLAY_FILE, "heatmaps": heatmaps if heatmaps.exists() else None,
                "masks_zip": masks_zip, "saliency": folder / SALIENCY_FILE, "summary": summary}

    def _forget_old_jobs(self) -> None:
        jobs = sorted(p for p in self.root.glob("job*") if p.is_dir())
        for old in jobs[:-JOBS_KEPT]:
            shutil.rmtree(old, ignore_errors=True)


def build_demo(jobs: DemoJobs) -> Any:
    """The Gradio app (``gr.Blocks``) over ``jobs``; ``launch_demo`` serves it."""
    from vidseg.config import VidsegConfig, get_setting, setting_fields

    gr = import_gradio()
    fields = setting_fields(VidsegConfig())
    config = jobs.segmenter.config

    def page_choices(name: str) -> list[str]:
        """A dropdown's choices: the setting's registry, and for the map kind only those the backbone gives."""
        if name == "maps.kind":
            return list(jobs.segmenter.model.map_kinds)
        return list(fields[name].metadata["choices"].names())

    def page_error(exc: BaseException) -> Exception:
        if isinstance(exc, VidsegError):
            return gr.Error(first_line(exc), print_exception=False)
        logger.exception("demo job failed")
        return gr.Error(f"internal error: {type(exc).__name__}: {first_line(exc)} (see the server's log)",
                        print_exception=False)

    # Gradio finds the progress tracker by the default of a named parameter: one parameter per page setting.
    def run_page(video, classes, maps_kind, inversion_method, upsample_method, progress=gr.Progress()):
        choices = (maps_kind, inversion_method, upsample_method)
        try:
            out = jobs.segment(video, classes, settings=dict(zip(PAGE_SETTINGS, choices)),
                               progress=GradioProgress(progress))
        except Exception as exc:  # shown as one line in the page
            raise page_error(exc) from None
        names = ", ".join(row[0] for row in out["summary"])
        return (str(out["overlay"]), str(out["heatmaps"]) if out["heatmaps"] else None, out["summary"],
                [str(out["masks_zip"]), str(out["saliency"])], f"Segmented: {names}")

    def run_api(video, classes):
        try:
            out = jobs.segment(video, classes)
        except Exception as exc:
            raise page_error(exc) from None
        return str(out["overlay"]), str(out["masks_zip"])

    with gr.Blocks(title="vidseg") as demo:
        gr.Markdown("# vidseg\nSegment a video by class name, with no training: IMAP / GramCol maps read from "
                    f"the attention of `{jobs.segmenter.model.source}`.")
        with gr.Row():
            with gr.Column():
                video = gr.Video(label="Video", sources=["upload"], elem_id="video-in")
                classes = gr.Textbox(label="Classes (comma-separated)", placeholder="person, dog",
                                     elem_id="classes")
                with gr.Row():
                    dropdowns = [gr.Dropdown(page_choices(name), value=get_setting(config, name), label=label)
                                 for name, label in PAGE_SETTINGS.items()]
                run = gr.Button("Segment", variant="primary", elem_id="run")
            with gr.Column():
                status = gr.Markdown(elem_id="status")
                overlay = gr.Video(label="Overlay", elem_id="overlay", autoplay=True, loop=True)
                heatmaps = gr.Video(label="Heatmaps (probability per class)", elem_id="heatmaps", autoplay=True,
                                    loop=True)
                summary = gr.Dataframe(headers=["class", "present", "frames labelled",
                                                "mean area % (where labelled)", "peak saliency"], label="Classes", elem_id="summary",
                                       interactive=False)
                files = gr.File(label="Downloads: masks (zip) and saliency.npz", file_count="multiple",
                                elem_id="downloads")
        run.click(run_page, [video, classes, *dropdowns],
                  [overlay, heatmaps, summary, files, status], api_visibility="private")
        # The scripted endpoint: a hidden trigger with exactly the API's inputs and outputs.
        api_overlay, api_zip = gr.Video(visible=False), gr.File(visible=False)
        gr.Button(visible=False).click(run_api, [video, classes], [api_overlay, api_zip], api_name="segment")
    return demo


def launch_demo(segmenter: Any, *, host: str = "127.0.0.1", port: int = 7860, root: str | Path | None = None,
                block: bool = True) -> Any:
    """Serve the demo for ``segmenter`` (loaded once); jobs queue one at a time. Returns the Gradio app."""
    jobs = DemoJobs(segmenter, root)
    demo = build_demo(jobs)
    demo.queue(default_concurrency_limit=1)
    demo.launch(server_name=host, server_port=port, prevent_thread_lock=not block, show_error=False,
                allowed_paths=[str(jobs.root)], quiet=True)
    return demo
