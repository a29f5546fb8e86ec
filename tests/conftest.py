"""Shared fixtures: the tiny random CogVideoX written and loaded through the real code path, and test videos."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

# Never reach for the hub in tests; the tiny model is loaded from disk like a real local folder.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
requires_shared = pytest.mark.skipif(not SHARED.exists(), reason="../shared (real videos and frames) is absent")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight CogVideoX-2B-like model folder (no RoPE), written once per test run."""
    from vidseg.models.tiny import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="session")
def tiny_wan_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight Wan2.1 folder (cross-attention, umT5-style encoder, flow scheduler)."""
    from vidseg.models.tiny import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny_wan") / "model", family="wan")


@pytest.fixture(scope="session")
def tiny_hunyuan_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight HunyuanVideo folder (LLaMA and CLIP encoders, dual- and single-stream blocks)."""
    from vidseg.models.tiny import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny_hunyuan") / "model", family="hunyuan")


@pytest.fixture(scope="session")
def tiny_rope_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny CogVideoX-5B-like model folder (RoPE, DPM scheduler)."""
    from vidseg.models.tiny import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny_rope") / "model", rope=True)


def moving_square_frames(num_frames: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """uint8 [T, H, W, 3]: a bright square sliding over a textured background (something for codecs to encode)."""
    rng = np.random.default_rng(seed)
    background = rng.integers(40, 90, size=(height, width, 3), dtype=np.uint8)
    frames = np.repeat(background[None], num_frames, axis=0)
    side = max(4, min(height, width) // 3)
    for t in range(num_frames):
        x = int((width - side) * t / max(num_frames - 1, 1))
        y = (height - side) // 2
        frames[t, y:y + side, x:x + side] = (230, 60, 40)
    return frames


def write_video(path: Path, frames: np.ndarray, fps: float = 24.0, codec: str = "libx264", *,
                rotation: int = 0, times_ms: list[int] | None = None) -> Path:
    """Encode uint8 RGB frames [T, H, W, 3] with PyAV (libx264 → mp4, libvpx-vp9 → webm, libsvtav1 → AV1).

    ``rotation``: a display matrix of that many degrees counter-clockwise (as phones write: players show the
    frames turned). ``times_ms``: each frame's presentation time in milliseconds (a variable frame rate).
    """
    import av
    from fractions import Fraction

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        if rotation:
            stream.set_display_rotation(rotation)
        if times_ms is not None:
            stream.time_base = Fraction(1, 1000)
            stream.codec_context.time_base = Fraction(1, 1000)
        for i, frame in enumerate(frames):
            video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
            if times_ms is not None:
                video_frame.pts, video_frame.time_base = times_ms[i], Fraction(1, 1000)
            for packet in stream.encode(video_frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.fixture
def video_factory(tmp_path: Path) -> Callable[..., Path]:
    """``video_factory(name, num_frames=20, height=72, width=128, fps=24, codec="libx264")`` → path of a new video."""

    def make(name: str = "clip.mp4", num_frames: int = 20, height: int = 72, width: int = 128,
             fps: float = 24.0, codec: str = "libx264") -> Path:
        return write_video(tmp_path / name, moving_square_frames(num_frames, height, width), fps, codec)

    return make


@pytest.fixture(autouse=True, scope="session")
def _single_thread_torch():
    """The tiny model's ops are microseconds: with several torch threads on a busy 2-core machine, thread
    hand-off dominates (about 100x slower). Benchmarks set their own thread counts."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def run_cli(*args: str):
    """``vidseg ARGS`` in this process (typer's runner), as the console script parses them."""
    from typer.testing import CliRunner

    from vidseg.cli.main import app, expand_multi_value

    return CliRunner().invoke(app, expand_multi_value([str(a) for a in args]))


def assert_one_line_error(result, code: int, *words: str) -> None:
    assert result.exit_code == code, result.output
    text = result.output.strip()
    assert "Traceback" not in text
    lines = [line for line in text.splitlines() if line.strip()]
    assert lines[-1].startswith("error:"), text
    for word in words:
        assert word.lower() in text.lower(), text
