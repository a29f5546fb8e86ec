"""``vidseg demo``: serve the Gradio web demo (the ``vidseg[demo]`` extra) on one loaded model."""

from __future__ import annotations

import typer

from vidseg.cli import options as opt
from vidseg.cli._app import app, handle_errors
from vidseg.cli.progress import console, stage_progress


@app.command()
@handle_errors
@opt.with_model_options
def demo(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0: every interface)."),
    port: int = typer.Option(7860, "--port", help="Port to listen on."),
    settings: dict = None,  # the MODEL_OPTIONS (see with_model_options)
    debug: bool = opt.DebugOpt,
) -> None:
    """Serve a web page to segment uploaded videos (and the /segment API for gradio_client). The model loads once;
    jobs queue. The options set the server's defaults; the page picks map kind, inversion and upsampler."""
    from vidseg.demo import import_gradio, launch_demo
    from vidseg.pipeline import VideoSegmenter

    import_gradio()  # one line if the extra is missing, before loading anything
    cfg = opt.build_config(settings)
    with stage_progress() as progress:
        progress.start(f"load {cfg.model.source}")
        segmenter = VideoSegmenter.from_pretrained(config=cfg)
        progress.finish()
    console.print(f"vidseg demo on http://{host}:{port}/  (Ctrl-C stops it)", highlight=False)
    launch_demo(segmenter, host=host, port=port)
