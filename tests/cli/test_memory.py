"""Memory does not grow with a video's length: ``vidseg predict`` on a clip 4x longer peaks at the same resident size."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import moving_square_frames, write_video

pytest.importorskip("av")
if not hasattr(os, "wait4"):
    pytest.skip("the peak resident size of a child process needs os.wait4 (POSIX)", allow_module_level=True)


def peak_rss_mb(video: Path, model: Path, out: Path, reader: str, videos_out: bool = False) -> float:
    """``vidseg predict`` in a child process (all its memory, native decoders included): its peak resident MB.
    ``videos_out``: also write overlay.mp4 and saliency.mp4 (the defaults), else the masks alone."""
    command = [sys.executable, "-c", "from vidseg.cli.main import main; main()", "predict", str(video), "--model",
               str(model), "--classes", "dog", "--out", str(out), "--no-crf", "-q", "--set", f"video.reader={reader}",
               *(() if videos_out else ("--no-overlay", "--no-export-heatmaps"))]
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    stderr = child.stderr.read().decode()
    child.stderr.close()
    assert os.waitstatus_to_exitcode(status) == 0, stderr
    return usage.ru_maxrss / 1024


@pytest.mark.parametrize("reader, videos_out", [
    ("auto", False),
    ("auto", True),  # the overlay and heatmap encoders stream too
])
def test_peak_memory_does_not_grow_with_the_length(tiny_model_dir, tmp_path, reader, videos_out):
    short, long = (write_video(tmp_path / f"{n}.mp4", moving_square_frames(n, 720, 1280), fps=24) for n in (60, 240))
    peaks = [peak_rss_mb(video, tiny_model_dir, tmp_path / "out", reader, videos_out) for video in (short, long)]
    # 180 more 720p frames are 500 MB as RGB: memory that held frames, or a decoder's per-frame state, shows far
    # above this 10 % margin for allocator noise.
    assert peaks[1] <= 1.1 * peaks[0], f"peak resident MB: {peaks[0]:.0f} for 60 frames, {peaks[1]:.0f} for 240"
