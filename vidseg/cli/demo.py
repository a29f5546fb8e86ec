"""``vidseg demo``: serve the Gradio web demo (the ``vidseg[demo]`` extra) on one loaded model."""

from __future__ import annotations

from typing import Optional

import typer

from vidseg.cli import options as opt
from vidseg.cli._app import app, handle_errors
from vidseg.cli.progress import console, stage_progress
from vidseg.demo import DemoLimits  # light: Gradio is imported when the demo is built


@app.command()
@handle_errors
@opt.with_model_options
def demo(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0: every interface; then "
                                                          "give --auth)."),
    port: int = typer.Option(7860, "--port", help="Port to listen on."),
    auth: Optional[list[str]] = typer.Option(
        None, "--auth", help="user:password a visitor signs in with, or a file of such lines (repeatable). Default: "
                             "no sign-in."),
    max_upload_mb: float = typer.Option(DemoLimits.max_upload_mb, "--max-upload-mb",
                                        help="Largest upload accepted, MB."),
    max_seconds: float = typer.Option(DemoLimits.max_seconds, "--max-seconds",
                                      help="Most seconds of video per job (from Start to End); longer ones are "
                                           "refused."),
    max_waiting: int = typer.Option(DemoLimits.max_waiting, "--max-waiting",
                                    help="Jobs that may wait behind the running one; more are told the demo is busy."),
    keep_minutes: float = typer.Option(DemoLimits.keep_minutes, "--keep-minutes",
                                       help="Minutes a job's files and uploads are kept."),
    settings: dict = None,  # the MODEL_OPTIONS (see with_model_options)
    debug: bool = opt.DebugOpt,
) -> None:
    """Serve a web page to segment uploaded videos (and the /segment API for gradio_client). The model loads once;
    jobs run one at a time. The options set the server's defaults; the page picks map kind, inversion, upsampler
    and the time range."""
    from vidseg.demo import import_gradio, launch_demo, parse_auth
    from vidseg.pipeline import VideoSegmenter

    import_gradio()  # one line if the extra is missing, before loading anything
    limits = DemoLimits(max_upload_mb=max_upload_mb, max_seconds=max_seconds, max_waiting=max_waiting,
                        keep_minutes=keep_minutes)
    limits.validate()
    credentials = parse_auth(auth or [])
    cfg = opt.build_config(settings)
    with stage_progress() as progress:
        progress.start(f"load {cfg.model.source}")
        segmenter = VideoSegmenter.from_pretrained(config=cfg)
        progress.finish()
    signed = f", sign-in for {len(credentials)} user{'s' if len(credentials) > 1 else ''}" if credentials else ""
    console.print(f"vidseg demo on http://{host}:{port}/  ({limits.max_upload_mb:g} MB, {limits.max_seconds:g} s per "
                  f"job{signed}; Ctrl-C stops it)", highlight=False)
    launch_demo(segmenter, host=host, port=port, limits=limits, auth=credentials)
