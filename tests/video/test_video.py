"""Video reading (decord / PyAV / frame folders) and frame sampling, windows, blending and resizing."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import REPO
from vidseg.errors import ConfigError, MissingDependencyError, VideoReadError
from vidseg.video import read as video_read
from vidseg.video.read import open_video
from vidseg.video.sample import (
    blend_windows,
    crop_to_valid,
    fit_frames,
    frame_interpolation,
    latent_index,
    plan_sampling,
)

av = pytest.importorskip("av")
SHARED = REPO.parent / "shared"
HAS_DECORD = video_read._import_optional("decord") is not None

# Frame i is a flat grey of level 20 + 10 i (wrapping after 22 frames), so its index survives lossy coding as the
# frame mean.
NUM_TEST_FRAMES = 20


def frame_level(i: int) -> int:
    return 20 + (10 * i) % 220


def write_video(path: Path, codec: str, num_frames: int = NUM_TEST_FRAMES, fps: int = 15,
                size: tuple[int, int] = (48, 64), container_options: dict | None = None, noise: bool = False) -> Path:
    """Grey frames of ``frame_level(i)``, or random noise (large packets of similar size) with ``noise``."""
    if codec not in av.codecs_available:
        pytest.skip(f"the bundled FFmpeg has no {codec} encoder")
    height, width = size
    rng = np.random.default_rng(0)
    with av.open(str(path), "w", options=container_options or {}) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(num_frames):
            frame = (rng.integers(0, 256, (height, width, 3), dtype=np.uint8) if noise
                     else np.full((height, width, 3), frame_level(i), np.uint8))
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def decoded_levels(frames: np.ndarray) -> np.ndarray:
    return frames.reshape(len(frames), -1).mean(axis=1)


def read_all(reader, batch_size: int = 7) -> np.ndarray:
    starts, batches = [], []
    for start, batch in reader.iter_frames(batch_size):
        assert 1 <= len(batch) <= batch_size
        starts.append(start)
        batches.append(batch)
    assert starts == list(range(0, len(reader), batch_size))
    return np.concatenate(batches)


def av1_encoder() -> str:
    for codec in ("libsvtav1", "libaom-av1", "librav1e"):
        if codec in av.codecs_available:
            return codec
    pytest.skip("the bundled FFmpeg has no AV1 encoder")


@pytest.mark.parametrize("codec, suffix", [
    ("libx264", ".mp4"), ("mpeg4", ".mp4"), ("libvpx-vp9", ".webm"), ("libx264", ".mkv"), ("libx264", ".mov"),
    ("av1", ".mp4"),
])
@pytest.mark.parametrize("reader", ["auto", "pyav"])
def test_reads_every_container_exactly(tmp_path, codec, suffix, reader):
    codec = av1_encoder() if codec == "av1" else codec
    path = write_video(tmp_path / f"clip{suffix}", codec)
    with open_video(path, reader) as video:
        info = video.info
        assert (info.num_frames, info.width, info.height) == (NUM_TEST_FRAMES, 64, 48)
        assert info.fps == pytest.approx(15.0)
        assert info.frame_names[:2] == ["00000", "00001"] and len(info.frame_names) == NUM_TEST_FRAMES
        frames = read_all(video)
        assert frames.shape == (NUM_TEST_FRAMES, 48, 64, 3) and frames.dtype == np.uint8
        np.testing.assert_allclose(decoded_levels(frames), [frame_level(i) for i in range(NUM_TEST_FRAMES)], atol=4)
        picks = [13, 0, 19, 5, 5, 12]
        np.testing.assert_array_equal(video.read(picks), frames[picks])
        assert video.read([]).shape == (0, 48, 64, 3)
        with pytest.raises(IndexError):
            video.read([NUM_TEST_FRAMES])
        with pytest.raises(ValueError, match="batch_size"):
            video.iter_frames(0)


def test_av1_falls_back_to_pyav(tmp_path):
    path = write_video(tmp_path / "clip.mp4", av1_encoder())
    with open_video(path) as video:
        assert video.info.backend == "pyav"
    if HAS_DECORD:
        with pytest.raises(VideoReadError, match="--reader pyav"):
            open_video(path, "decord")


@pytest.mark.skipif(not HAS_DECORD, reason="decord is not installed")
def test_decord_and_pyav_agree(tmp_path):
    path = write_video(tmp_path / "clip.mp4", "libx264", num_frames=40, container_options={"movflags": "faststart"})
    with open_video(path, "decord") as decord_video, open_video(path, "pyav") as pyav_video:
        assert decord_video.info.backend == "decord" and pyav_video.info.backend == "pyav"
        assert len(decord_video) == len(pyav_video) == 40
        np.testing.assert_array_equal(read_all(decord_video), read_all(pyav_video))
    with open_video(path) as video:  # auto reads with PyAV, whose memory stays flat over a long video
        assert video.info.backend == "pyav"


def test_pyav_seeks_across_keyframes(tmp_path):
    # A short GOP makes read() seek to several keyframes; results must match a sequential decode.
    path = tmp_path / "gop.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=15, options={"g": "6", "bf": "2"})
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(NUM_TEST_FRAMES):
            frame = np.full((48, 64, 3), frame_level(i), np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    with open_video(path, "pyav") as video:
        assert len(video._keyframes) > 2
        frames = read_all(video, batch_size=4)
        picks = [19, 2, 14, 8, 9, 3]
        np.testing.assert_array_equal(video.read(picks), frames[picks])


def test_pyav_reads_forward_without_seeking_back(tmp_path, monkeypatch):
    # Consecutive chunks (post-processing) and overlapping windows (the model) must decode each frame once: a seek
    # back to the keyframe per chunk made a long video decode its GOPs many times over.
    path = tmp_path / "gop.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=15, options={"g": "12", "bf": "2"})
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(40):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.full((48, 64, 3), frame_level(i), np.uint8),
                                                                   format="rgb24")))
        container.mux(stream.encode())
    with open_video(path, "pyav") as video:
        expected = read_all(video)
        starts = []
        decode_from = video._decode_from
        monkeypatch.setattr(video, "_decode_from", lambda start: starts.append(start) or decode_from(start))
        chunks = np.concatenate([video.read(range(s, min(s + 5, 40))) for s in range(0, 40, 5)])
        np.testing.assert_array_equal(chunks, expected)
        assert starts == [0]
        windows = [range(s, s + 9) for s in range(0, 32, 7)]
        starts.clear()
        for window, frames in zip(windows, video.read_windows(windows)):
            np.testing.assert_array_equal(frames, expected[list(window)])
        assert starts == [0]  # one pass: the overlaps were kept, not read again
        np.testing.assert_array_equal(video.read([3, 30]), expected[[3, 30]])  # and it still seeks when it must


def test_cut_off_file_keeps_present_frames(tmp_path, caplog):
    # moov first (faststart), then half the media data: 20 of 40 packets remain, the last one cut off.
    path = write_video(tmp_path / "full.mp4", "libx264", num_frames=40, container_options={"movflags": "faststart"},
                       noise=True)
    data = path.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    with open_video(cut) as video:
        assert video.info.backend == "pyav"
        assert 0 < len(video) < 40
        frames = read_all(video)
        assert len(frames) == len(video)
        np.testing.assert_array_equal(video.read([len(video) - 1, 0]), frames[[len(video) - 1, 0]])


def test_error_missing_file(tmp_path):
    with pytest.raises(VideoReadError, match="does not exist"):
        open_video(tmp_path / "nope.mp4")


def test_error_folder_without_frames(tmp_path):
    (tmp_path / "notes.txt").write_text("no frames here")
    with pytest.raises(VideoReadError, match="no .jpg/.jpeg/.png frames"):
        open_video(tmp_path)


def test_error_empty_file(tmp_path):
    (tmp_path / "empty.mp4").touch()
    with pytest.raises(VideoReadError, match="empty file"):
        open_video(tmp_path / "empty.mp4")


@pytest.mark.parametrize("reader", ["auto", "pyav"] + (["decord"] if HAS_DECORD else []))
def test_error_text_file_named_mp4(tmp_path, reader):
    path = tmp_path / "text.mp4"
    path.write_text("this is not a video\n" * 20)
    with pytest.raises(VideoReadError) as info:
        open_video(path, reader)
    assert "\n" not in str(info.value)


def test_error_truncated_mp4(tmp_path):
    # moov at the end (the default): cutting the file removes the index, so nothing can be read.
    path = write_video(tmp_path / "full.mp4", "libx264")
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(VideoReadError, match="not a readable video"):
        open_video(cut)


def test_error_zero_frames(tmp_path):
    # Keep the header (ftyp + moov, which announces 40 frames) but drop all media data.
    data = write_video(tmp_path / "full.mp4", "libx264", num_frames=40,
                       container_options={"movflags": "faststart"}).read_bytes()
    pos = 0
    while data[pos + 4:pos + 8] != b"mdat":
        pos += struct.unpack(">I", data[pos:pos + 4])[0]
    (tmp_path / "header_only.mp4").write_bytes(data[:pos + 8])
    with pytest.raises(VideoReadError, match="no video frames"):
        open_video(tmp_path / "header_only.mp4")


def test_error_no_video_stream(tmp_path):
    path = tmp_path / "audio.mkv"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        container.mux(stream.encode(frame))
        container.mux(stream.encode())
    with pytest.raises(VideoReadError, match="no video stream"):
        open_video(path)


def test_unknown_reader(tmp_path):
    path = write_video(tmp_path / "clip.mp4", "libx264")
    with pytest.raises(ConfigError, match="auto, decord, pyav"):
        open_video(path, "opencv")


def test_missing_backends(tmp_path, monkeypatch):
    path = write_video(tmp_path / "clip.mp4", "libx264")
    monkeypatch.setattr(video_read, "_import_optional", lambda name: None)
    for reader in ("auto", "pyav", "decord"):
        with pytest.raises(MissingDependencyError, match="pip install"):
            open_video(path, reader)


def test_decord_missing_uses_pyav(tmp_path, monkeypatch):
    path = write_video(tmp_path / "clip.mp4", "libx264")
    real_import = video_read._import_optional
    monkeypatch.setattr(video_read, "_import_optional", lambda name: None if name == "decord" else real_import(name))
    with open_video(path) as video:
        assert video.info.backend == "pyav" and len(video) == NUM_TEST_FRAMES


def test_frame_folder(tmp_path):
    from PIL import Image

    for i in (1, 2, 10):  # natural order: frame1, frame2, frame10
        Image.fromarray(np.full((24, 32, 3), frame_level(i), np.uint8)).save(tmp_path / f"frame{i}.png")
    Image.fromarray(np.full((24, 32, 3), frame_level(3), np.uint8)).save(tmp_path / "frame3.JPG")
    (tmp_path / "readme.txt").write_text("ignored")
    with open_video(tmp_path, frame_folder_fps=5) as video:
        info = video.info
        assert (info.num_frames, info.width, info.height, info.fps, info.backend) == (4, 32, 24, 5.0, "frames")
        assert info.frame_names == ["frame1", "frame2", "frame3", "frame10"]
        frames = read_all(video, batch_size=3)
        np.testing.assert_allclose(decoded_levels(frames), [frame_level(i) for i in (1, 2, 3, 10)], atol=2)
        np.testing.assert_array_equal(video.read([3, 0]), frames[[3, 0]])
    assert open_video(tmp_path).info.fps == 15.0
    Image.fromarray(np.zeros((10, 10, 3), np.uint8)).save(tmp_path / "frame11.png")
    with open_video(tmp_path) as video, pytest.raises(VideoReadError, match="share one size"):
        video.read([4])


@pytest.mark.skipif(not SHARED.exists(), reason="../shared data is not present")
@pytest.mark.parametrize("reader", ["auto", "pyav"])
def test_real_video(reader):
    with open_video(SHARED / "data" / "videos" / "01_dog.mp4", reader) as video:
        info = video.info
        assert (info.num_frames, info.width, info.height) == (289, 1280, 720)
        assert info.fps == pytest.approx(30000 / 1001)
        last = video.read([288, 0])
        assert last.shape == (2, 720, 1280, 3)
        np.testing.assert_array_equal(video.read([0]), last[1:])


# --- sampling -----------------------------------------------------------------------------------------------------


def test_sampling_30fps_to_8fps():
    plan = plan_sampling(100, 30.0, sample_fps=8, window_frames=49, window_overlap=8)
    # Sampled frame k is the frame nearest to k / 8 s: round(3.75 k), halves up; 99 / 3.75 = 26.4 -> 27 frames.
    assert plan.sampled_frames.tolist() == [0, 4, 8, 11, 15, 19, 23, 26, 30, 34, 38, 41, 45, 49, 53, 56, 60, 64, 68,
                                            71, 75, 79, 83, 86, 90, 94, 98]
    assert len(plan.windows) == 1 and plan.window_frames == 49
    window = plan.windows[0]
    assert window[:27].tolist() == list(range(27))
    assert window[27:31].tolist() == [25, 24, 23, 22]  # ping-pong padding
    assert (plan.window_weights[0][27:] == 0).all() and (plan.window_weights[0][:27] > 0).all()


def test_sampling_keeps_every_frame_when_asked_or_when_slow():
    assert plan_sampling(20, 30.0, sample_fps=0, window_frames=9, window_overlap=2).num_sampled == 20
    assert plan_sampling(20, 6.0, sample_fps=8, window_frames=9, window_overlap=2).num_sampled == 20


def test_short_video_padded_by_ping_pong():
    plan = plan_sampling(10, 15.0, sample_fps=0, window_frames=49, window_overlap=8)
    forth, back = list(range(1, 10)), list(range(8, -1, -1))
    expected = [0] + forth + back + forth + back + forth + [8, 7, 6]
    assert plan.windows[0].tolist() == expected
    one = plan_sampling(1, 15.0, sample_fps=8, window_frames=9, window_overlap=2)
    assert one.windows[0].tolist() == [0] * 9 and one.window_weights[0].tolist() == [1] + [0] * 8


def test_long_video_windows_overlap_and_cover():
    plan = plan_sampling(300, 30.0, sample_fps=8, window_frames=49, window_overlap=8)
    assert plan.num_sampled == 80  # 299 / 3.75 = 79.7
    assert [(int(w[0]), int(w[-1])) for w in plan.windows] == [(0, 48), (31, 79)]  # last window ends on the last frame
    longer = plan_sampling(1000, 30.0, sample_fps=8, window_frames=49, window_overlap=8)
    starts = [int(w[0]) for w in longer.windows]
    assert starts[:3] == [0, 41, 82] and int(longer.windows[-1][-1]) == longer.num_sampled - 1
    assert all(b - a <= 41 for a, b in zip(starts, starts[1:]))  # overlap never below 8
    covered = np.zeros(longer.num_sampled, bool)
    for window in longer.windows:
        covered[window] = True
    assert covered.all()


def test_latent_index():
    assert latent_index(9).tolist() == [0, 1, 1, 1, 1, 2, 2, 2, 2]
    idx = latent_index(49)
    assert idx[-1] == 12 and np.bincount(idx).tolist() == [1] + [4] * 12


def test_blend_windows_constant_and_weighted():
    plan = plan_sampling(300, 30.0, sample_fps=8, window_frames=49, window_overlap=8)
    # A map whose value is its window id: frames in one window get that id, overlapped frames a tent-weighted mix.
    maps = [torch.full((2, 13, 3, 4), float(k)) for k in range(len(plan.windows))]
    blended = blend_windows(plan, maps)
    assert blended.shape == (2, 80, 3, 4)
    assert (blended[:, :31] == 0).all() and (blended[:, 49:] == 1).all()
    # Sampled frame 40 is position 40 of window 0 (weight 9) and position 9 of window 1 (weight 10).
    assert blended[0, 40, 0, 0].item() == pytest.approx(10 / 19)
    # Each window frame takes its latent frame's map.
    latent_maps = [torch.arange(13.0).view(1, 13, 1, 1).expand(1, 13, 2, 2) for _ in plan.windows]
    per_frame = blend_windows(plan, latent_maps)
    assert per_frame[0, :9, 0, 0].tolist() == latent_index(9).astype(float).tolist()


def test_blend_ignores_padding():
    plan = plan_sampling(10, 15.0, sample_fps=0, window_frames=17, window_overlap=2)
    maps = torch.arange(5.0).view(1, 5, 1, 1)  # latent frame values 0..4
    blended = blend_windows(plan, [maps])
    assert blended.flatten().tolist() == latent_index(17)[:10].astype(float).tolist()
    with pytest.raises(ValueError, match="latent frames"):
        blend_windows(plan, [torch.zeros(1, 4, 1, 1)])


def test_frame_interpolation_covers_every_frame():
    plan = plan_sampling(100, 30.0, sample_fps=8, window_frames=49, window_overlap=8)
    left, right, alpha = frame_interpolation(plan)
    assert len(left) == len(right) == len(alpha) == 100
    sampled = plan.sampled_frames
    # Frame 2 lies between sampled frames 0 (index 0) and 4 (index 1).
    assert (left[2], right[2], alpha[2]) == (0, 1, pytest.approx(0.5))
    assert (left[8], right[8], alpha[8]) == (2, 2, 0.0)
    assert (left[99], right[99], alpha[99]) == (26, 26, 0.0)  # after the last sampled frame (98)
    # The interpolated sampled-frame position reproduces every frame index exactly (inside the sampled range).
    inside = np.arange(99)
    position = (1 - alpha) * sampled[left] + alpha * sampled[right]
    np.testing.assert_allclose(position[inside], inside, atol=1e-5)
    assert (right - left <= 1).all()


def test_fit_frames_stretch_and_pad():
    frames = np.zeros((2, 100, 300, 3), np.uint8)
    frames[..., 0] = 255
    stretched, box = fit_frames(frames, 64, 96)
    assert stretched.shape == (2, 3, 64, 96) and stretched.dtype == torch.float32 and box == (0, 0, 64, 96)
    assert stretched[:, 0].eq(1).all() and stretched[:, 1].eq(-1).all()
    padded, box = fit_frames(frames, 64, 96, "pad")
    assert box == (16, 0, 48, 96)  # 300x100 -> 96x32, centred
    assert padded[:, :, :16].eq(-1).all() and padded[:, :, 48:].eq(-1).all() and padded[:, 0, 16:48].eq(1).all()
    with pytest.raises(ValueError, match="resize"):
        fit_frames(frames, 64, 96, "crop")


def test_crop_to_valid():
    maps = torch.arange(4 * 6, dtype=torch.float32).view(1, 4, 6)
    assert crop_to_valid(maps, (0, 0, 64, 96), 64, 96) is maps
    # Rows 1-2 of a 4-row grid over 64 px are pixels 16-48: an exact crop of whole cells.
    torch.testing.assert_close(crop_to_valid(maps, (16, 0, 48, 96), 64, 96), maps[:, 1:3])
    # Columns 1.5-4.5 (pixels 24-72) resampled at cell centres 2, 3, 4: the midpoints of neighbouring cells.
    torch.testing.assert_close(crop_to_valid(maps, (0, 24, 64, 72), 64, 96, out_size=(4, 3))[0, 0],
                               torch.tensor([1.5, 2.5, 3.5]))
    assert crop_to_valid(maps, (16, 0, 48, 96), 64, 96, out_size=(8, 12)).shape == (1, 8, 12)


# -- orientation and variable frame rate ---------------------------------------------------------------------------

def _asymmetric_frames(num_frames: int = 6, height: int = 128, width: int = 192) -> np.ndarray:
    """A bright block in the top-left corner and a dim one along the bottom: every rotation looks different."""
    frames = np.full((num_frames, height, width, 3), 40, np.uint8)
    frames[:, : height // 3, : width // 4] = 230
    frames[:, -height // 6:, width // 3:] = 120
    return frames


@pytest.mark.parametrize("reader", ["pyav", "decord", "auto"])
@pytest.mark.parametrize("degrees", [90, 180, 270])
def test_rotated_video_is_read_as_displayed(tmp_path, degrees, reader):
    """A display matrix of d degrees counter-clockwise: every reader returns np.rot90(stored, d / 90)."""
    if reader == "decord" and not HAS_DECORD:
        pytest.skip("decord is not installed")
    from tests.conftest import write_video as write_rgb_video

    stored = _asymmetric_frames()
    path = write_rgb_video(tmp_path / f"phone{degrees}.mp4", stored, fps=8, rotation=degrees)
    expected = np.rot90(stored, degrees // 90, axes=(1, 2))
    with open_video(path, reader=reader) as video:
        assert (video.info.height, video.info.width) == expected.shape[1:3]
        frames = video.read([0, 5])
        streamed = np.concatenate([batch for _, batch in video.iter_frames(batch_size=4)])
    assert frames.shape == (2, *expected.shape[1:])
    assert np.abs(frames.astype(int) - expected[[0, 5]]).mean() < 4
    assert np.array_equal(streamed[[0, 5]], frames)


@pytest.mark.parametrize("reader", ["pyav", "decord"])
def test_rotated_phone_clip_gives_upright_masks(tiny_model_dir, tmp_path, reader):
    if reader == "decord" and not HAS_DECORD:
        pytest.skip("decord is not installed")
    from tests.conftest import write_video as write_rgb_video
    from tests.conftest import run_cli
    from PIL import Image

    path = write_rgb_video(tmp_path / "phone.mp4", _asymmetric_frames(num_frames=9), fps=8, rotation=90)
    out = tmp_path / "out"
    result = run_cli("predict", path, "--classes", "person", "--model", tiny_model_dir, "--out", out, "--no-crf",
                     "--set", f"video.reader={reader}", "-q")
    assert result.exit_code == 0, result.output
    masks = sorted((out / "phone" / "masks").glob("*.png"))
    assert len(masks) == 9 and Image.open(masks[0]).size == (128, 192)  # (width, height) of the portrait view
    with av.open(str(out / "phone" / "overlay.mp4")) as container:
        stream = container.streams.video[0]
        assert (stream.width, stream.height) == (128, 192)


def test_variable_frame_rate_is_sampled_by_presentation_time(tmp_path):
    """Frames 50 ms apart, then 250 ms apart: sampling at 4 fps takes the frame shown every 250 ms, not every
    (average fps / 4)-th index."""
    from tests.conftest import write_video as write_rgb_video

    times = [0, 50, 100, 150, 200, 250, 500, 750, 1000, 1250, 1500]
    frames = np.stack([np.full((64, 96, 3), frame_level(i), np.uint8) for i in range(len(times))])
    path = write_rgb_video(tmp_path / "vfr.mp4", frames, fps=8, times_ms=times)
    for reader in ["pyav"] + (["decord"] if HAS_DECORD else []):
        with open_video(path, reader=reader) as video:
            info = video.info
            assert np.allclose(info.timestamps, np.array(times) / 1000, atol=2e-3), reader
            plan = plan_sampling(info.num_frames, info.fps, sample_fps=4, window_frames=9, window_overlap=2,
                                 timestamps=info.timestamps)
            assert plan.sampled_frames.tolist() == [0, 5, 6, 7, 8, 9, 10], reader
            levels = video.read(plan.sampled_frames).reshape(len(plan.sampled_frames), -1).mean(axis=1)
            assert np.allclose(levels, [frame_level(i) for i in plan.sampled_frames], atol=4), reader
    # Evenly spaced timestamps keep the index formula (and the same frames as without timestamps).
    even = plan_sampling(100, 30.0, sample_fps=8, window_frames=49, window_overlap=8, timestamps=np.arange(100) / 30)
    assert np.array_equal(even.sampled_frames,
                          plan_sampling(100, 30.0, sample_fps=8, window_frames=49, window_overlap=8).sampled_frames)
