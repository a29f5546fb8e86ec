"""``--start`` / ``--end``: a time range of a video gives the masks of the same range cut out beforehand."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import assert_one_line_error, moving_square_frames, run_cli
from vidseg.errors import ConfigError
from vidseg.video.read import parse_time

av = pytest.importorskip("av")
FPS = 24


def write_gop_video(path: Path, num_frames: int = 48) -> Path:
    """A keyframe every 12 frames and no B-frames, so a cut at a keyframe decodes to the very same frames."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS, options={"g": "12", "bf": "0", "keyint_min": "12"})
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        for frame in moving_square_frames(num_frames, 64, 96):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return path


def cut_by_packets(source: Path, path: Path, start_s: float, end_s: float) -> Path:
    """What ``ffmpeg -ss START -to END -c copy`` does at keyframe boundaries: the packets shown in [start, end)."""
    with av.open(str(source)) as src, av.open(str(path), "w") as dst:
        stream_in = src.streams.video[0]
        stream_out = dst.add_stream_from_template(stream_in)
        for packet in src.demux(stream_in):
            if packet.pts is not None and start_s <= float(packet.pts * stream_in.time_base) < end_s - 1e-6:
                packet.stream = stream_out
                dst.mux(packet)
    return path


def masks(folder: Path) -> tuple[list[str], np.ndarray]:
    files = sorted((folder / "masks").glob("*.png"))
    return [f.name for f in files], np.stack([np.asarray(Image.open(f)) for f in files])


def test_start_end_give_the_masks_of_a_clip_cut_beforehand(tiny_model_dir, tmp_path):
    video = write_gop_video(tmp_path / "full.mp4")
    cut = cut_by_packets(video, tmp_path / "cut.mp4", 0.5, 1.5)  # frames 12..35
    common = ("--classes", "person", "dog", "--model", tiny_model_dir, "--no-overlay", "--no-export-heatmaps", "-q")
    ranged = run_cli("predict", video, "--start", "0:00.5", "--end", "1.5", "--out", tmp_path / "ranged", *common)
    assert ranged.exit_code == 0, ranged.output
    whole = run_cli("predict", cut, "--out", tmp_path / "cut", *common)
    assert whole.exit_code == 0, whole.output

    names, ranged_masks = masks(tmp_path / "ranged" / "full")
    cut_names, cut_masks = masks(tmp_path / "cut" / "cut")
    assert names == cut_names == [f"{i:05d}.png" for i in range(24)]  # numbered by the frames of the range
    np.testing.assert_array_equal(ranged_masks, cut_masks)
    np.testing.assert_array_equal(np.load(tmp_path / "ranged" / "full" / "saliency.npz")["saliency"],
                                  np.load(tmp_path / "cut" / "cut" / "saliency.npz")["saliency"])
    labels = json.loads((tmp_path / "ranged" / "full" / "labels.json").read_text())
    assert labels["num_frames"] == 24
    assert labels["range"] == {"first_frame": 12, "last_frame": 35, "source_frames": 48, "start_s": 0.5,
                               "end_s": 1.5, "asked": {"start": 0.5, "end": 1.5}}
    assert json.loads((tmp_path / "cut" / "cut" / "labels.json").read_text())["range"]["first_frame"] == 0

    # The saved maps remember the range: post-processing again from saliency.npz reads the same frames.
    from vidseg.result import SaliencyResult

    result = SaliencyResult.load(tmp_path / "ranged" / "full" / "saliency.npz", video)
    assert (result.info.num_frames, result.info.first_frame) == (24, 12)


@pytest.mark.parametrize("args, words", [
    (("--start", "5"), ("no frame from 5.0 s", "2.0 s long")),
    (("--start", "1:75"), ("--start", "mm:ss")),
    (("--start", "1.5", "--end", "0:01"), ("must come after",)),
])
def test_bad_time_ranges_fail_in_one_line(tiny_model_dir, tmp_path, args, words):
    video = write_gop_video(tmp_path / "full.mp4")
    result = run_cli("predict", video, "--classes", "dog", "--model", tiny_model_dir, "--out", tmp_path / "out", *args)
    assert_one_line_error(result, 2, *words)
    assert not (tmp_path / "out" / "full").exists()


def test_parse_time_reads_seconds_and_clock_times():
    assert [parse_time(v) for v in ("90", "12.5", "1:30", "0:00.5", "1:02:03.5", 7)] == [90, 12.5, 90, 0.5, 3723.5, 7]
    for bad in ("", "1:60", "-2", "a:b", "1::2", "1:2:3:4"):
        with pytest.raises(ConfigError, match="mm:ss|0 or more"):
            parse_time(bad)
