"""Open a video file or a folder of frames and read RGB frames by index or as a stream.

Backends:

* **PyAV** (``auto``): reads every codec the bundled FFmpeg can decode (H.264, HEVC, VP9, AV1, MPEG-4, ...), and
  its memory does not grow with the video's length.
* **decord** (``--reader decord``, or ``auto`` without PyAV): fast random access, but its memory grows by about one
  RGB frame per decoded frame (gigabytes for a minute of 1080p), it cannot read AV1 and has no wheels for Linux
  aarch64 or macOS.
* **frame folders**: ``*.jpg``, ``*.jpeg``, ``*.png`` sorted by name (digit runs compared as numbers, so
  ``frame2`` comes before ``frame10``); the frame rate is given by the caller.

Frame indices are exact: the frame count is the number of video packets in the file (one packet per displayed
frame, counted without decoding), and frame ``i`` is the packet with the ``i``-th smallest presentation time. A
packet that fails to decode (corrupt data, a cut-off final packet) repeats the nearest earlier decoded frame, with
a warning, so that ``read`` and ``iter_frames`` always agree on the count and on every frame.

Frames come as displayed: rotation metadata (phone videos stored sideways, a display matrix of 90 / 180 / 270
degrees) is applied by every reader — decord applies it itself; PyAV's frames are rotated here — so masks and
overlays match what a player shows (decord fails on some rotated sizes). Variable frame rate:
``VideoInfo.timestamps`` holds each frame's presentation time, and sampling (``vidseg.video.sample.plan_sampling``)
picks frames by time. Streams other than the first video stream are ignored.
"""

from __future__ import annotations

import bisect
import logging
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from vidseg.errors import ConfigError, MissingDependencyError, VideoReadError, first_line
from vidseg.registry import READERS

logger = logging.getLogger(__name__)

FRAME_SUFFIXES = (".jpg", ".jpeg", ".png")


@dataclass
class VideoInfo:
    """What is known about a video before decoding it.

    ``frame_names`` holds one name per frame, used for output files: 5-digit indices (``00000``, ``00001``, ...)
    for video files, the image stems for frame folders.
    """

    path: Path
    num_frames: int
    fps: float  # the average rate (frames / duration for a variable-rate file)
    width: int  # as displayed (rotation applied)
    height: int
    backend: str  # decord | pyav | frames
    frame_names: list[str] = field(repr=False)
    # Presentation time of each frame in seconds from the first, [num_frames]; None where unknown (frame folders).
    timestamps: np.ndarray | None = field(default=None, repr=False)
    # A time range of the source (``open_video(start=, end=)``): the times asked for in seconds (None: the
    # source's start / end), and the source's index and time of frame 0 and its frame count.
    start: float | None = None
    end: float | None = None
    first_frame: int = 0
    first_time: float = 0.0
    source_frames: int | None = None

    def source_range(self) -> dict[str, Any]:
        """Where these frames lie in the source, for ``labels.json``: frame indices, and seconds from the source's
        first frame (``end_s``: when the last frame stops showing)."""
        length = (float(self.timestamps[-1]) + 1 / self.fps if self.timestamps is not None
                  else self.num_frames / self.fps) if self.fps > 0 else 0.0
        return {"first_frame": self.first_frame, "last_frame": self.first_frame + self.num_frames - 1,
                "source_frames": self.num_frames if self.source_frames is None else self.source_frames,
                "start_s": round(self.first_time, 6), "end_s": round(self.first_time + length, 6),
                "asked": {"start": self.start, "end": self.end}}


class VideoReader(ABC):
    """Read RGB frames of one video. Use as a context manager, or call ``close()``."""

    info: VideoInfo

    @abstractmethod
    def read(self, indices: Sequence[int]) -> np.ndarray:
        """Frames at ``indices`` (any order, repeats allowed) as uint8 RGB ``[T, H, W, 3]``."""

    def iter_frames(self, batch_size: int = 16) -> Iterator[tuple[int, np.ndarray]]:
        """Every frame in order, as ``(start_index, frames [B, H, W, 3] uint8 RGB)`` batches of at most
        ``batch_size``; only one batch is held in memory at a time."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        return self._iter_batches(batch_size)

    @abstractmethod
    def _iter_batches(self, batch_size: int) -> Iterator[tuple[int, np.ndarray]]:
        """``iter_frames`` after its argument check."""

    def read_windows(self, windows: Sequence[Sequence[int]]) -> Iterator[np.ndarray]:
        """The frames of each window in turn, ``[len(window), H, W, 3]`` uint8 RGB, for windows that move forward
        through the video (the model's). Frames a window shares with the one before are kept, not read again, so
        a decoder never has to seek back to re-read an overlap."""
        kept: dict[int, np.ndarray] = {}
        for window in windows:
            idx = [int(i) for i in window]
            missing = sorted(set(idx) - kept.keys())
            kept = {i: kept[i] for i in idx if i in kept} | dict(zip(missing, self.read(missing)))
            yield np.stack([kept[i] for i in idx])

    def close(self) -> None:
        """Release the decoder (the default reader holds nothing)."""

    def __len__(self) -> int:
        return self.info.num_frames

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_indices(self, indices: Sequence[int]) -> np.ndarray:
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        n = self.info.num_frames
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise IndexError(f"frame indices must be in [0, {n}) for {self.info.path.name}, got {idx.min()}..{idx.max()}")
        return idx


def open_video(path: str | Path, reader: str = "auto", *, frame_folder_fps: float = 15.0,
               start: float | str | None = None, end: float | str | None = None) -> VideoReader:
    """Open a video file (any container FFmpeg reads) or a folder of ``.jpg/.jpeg/.png`` frames.

    Args:
        path: video file or folder of frames.
        reader: ``auto`` (PyAV, or decord when PyAV is not installed), ``decord`` or ``pyav``. Ignored for
            frame folders.
        frame_folder_fps: frame rate assigned to a folder of frames (VSPW frames are 15 fps).
        start, end: keep only the frames shown from ``start`` to before ``end`` (seconds or ``mm:ss``, see
            ``parse_time``; None: the source's start / end). The reader then numbers them from 0, and its info
            says where they lie in the source.

    Raises:
        VideoReadError: missing path, folder without frames, unreadable / corrupt file, no video stream, zero frames,
            a time range with no frame in it.
        MissingDependencyError: the requested backend (or, for ``auto``, both backends) cannot be imported.
    """
    opened = _open_source(Path(path), reader, frame_folder_fps)
    if start is None and end is None:
        return opened
    return TrimmedReader(opened, None if start is None else parse_time(start, "start"),
                         None if end is None else parse_time(end, "end"))


def _open_source(path: Path, reader: str, frame_folder_fps: float) -> VideoReader:
    READERS.check(reader)
    if not path.exists():
        raise VideoReadError(f"{path} does not exist; pass a video file or a folder of .jpg/.png frames")
    if path.is_dir():
        return FrameFolderReader(path, fps=frame_folder_fps)
    if path.stat().st_size == 0:
        raise VideoReadError(f"{path} is an empty file (0 bytes); pass a real video file")

    decord = _import_optional("decord") if reader in ("auto", "decord") else None
    av = _import_optional("av") if reader in ("auto", "pyav") else None
    if reader == "decord" and decord is None:
        raise MissingDependencyError("decord is not installed (no wheel for this platform?): `pip install decord`, "
                                     "or use the PyAV reader (--reader pyav)")
    if reader == "pyav" and av is None:
        raise MissingDependencyError("PyAV is not installed: `pip install av`")
    if decord is None and av is None:
        raise MissingDependencyError("no video decoder is installed: `pip install av` (and optionally decord)")

    # auto is PyAV: decord keeps memory for every frame it decodes (a 30 s 1080p clip grew a run to 6 GB, PyAV
    # stays flat; measured in docs/benchmarks.md), so it is used only when asked for or when PyAV is missing.
    if reader == "decord" or av is None:
        return DecordReader(path)
    return PyAVReader(path)


def parse_time(value: float | int | str, name: str = "time") -> float:
    """Seconds from ``90``, ``12.5``, ``"1:30"`` (mm:ss) or ``"1:02:03.5"`` (h:mm:ss); ConfigError otherwise."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        parts = str(value).strip().split(":")
        try:
            if len(parts) > 3 or any(not p.strip() for p in parts):
                raise ValueError
            numbers = [float(p) for p in parts]
            if any(n < 0 for n in numbers) or any(n >= 60 for n in numbers[1:]):
                raise ValueError
        except ValueError:
            raise ConfigError(f"{name} is {value!r}; give seconds (90, 12.5) or mm:ss (1:30), h:mm:ss (1:02:03)") \
                from None
        seconds = 0.0
        for number in numbers:
            seconds = seconds * 60 + number
    if not np.isfinite(seconds) or seconds < 0:
        raise ConfigError(f"{name} is {value!r}; a time must be 0 or more seconds")
    return seconds


def format_time(seconds: float) -> str:
    """``95.5`` -> ``1:35.5``: how a time is shown to a user."""
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes)}:{rest:04.1f}" if minutes else f"{rest:.1f} s"


class TrimmedReader(VideoReader):
    """The frames of another reader shown from ``start`` to before ``end`` seconds, numbered from 0.

    A frame's time is its presentation time (``VideoInfo.timestamps``), or ``index / fps`` where that is unknown
    (frame folders). Frame names: ``00000``, ``00001``, ... for video files, the images' own names for folders.
    """

    def __init__(self, inner: VideoReader, start: float | None, end: float | None):
        self._inner = inner
        source = inner.info
        if start is not None and end is not None and end <= start:
            inner.close()
            raise ConfigError(f"the end ({format_time(end)}) must come after the start ({format_time(start)})")
        times = source.timestamps if source.timestamps is not None else np.arange(source.num_frames) / source.fps
        first = 0 if start is None else int(np.searchsorted(times, start - 1e-6, side="left"))
        stop = source.num_frames if end is None else int(np.searchsorted(times, end - 1e-6, side="left"))
        if stop <= first:
            inner.close()
            length = float(times[-1]) + 1 / source.fps
            raise VideoReadError(f"{source.path.name} has no frame from {format_time(start or 0.0)} to "
                                 f"{'its end' if end is None else format_time(end)}: it is {format_time(length)} long; give "
                                 f"--start / --end within that")
        self._first = first
        names = source.frame_names[first:stop] if source.backend == "frames" else _video_names(stop - first)
        self.info = VideoInfo(
            source.path, stop - first, source.fps, source.width, source.height, source.backend, names,
            None if source.timestamps is None else source.timestamps[first:stop] - source.timestamps[first],
            start=start, end=end, first_frame=first, first_time=float(times[first]), source_frames=source.num_frames,
        )

    def read(self, indices: Sequence[int]) -> np.ndarray:
        return self._inner.read(self._check_indices(indices) + self._first)

    def _iter_batches(self, batch_size: int) -> Iterator[tuple[int, np.ndarray]]:
        for start in range(0, self.info.num_frames, batch_size):
            stop = min(start + batch_size, self.info.num_frames)
            yield start, self.read(np.arange(start, stop))

    def close(self) -> None:
        self._inner.close()


def _import_optional(name: str) -> ModuleType | None:
    try:
        return __import__(name)
    except ImportError:
        return None


def _first_line(exc: BaseException) -> str:
    """``first_line``, without the timestamp and source location that decord puts before its messages."""
    text = str(exc).strip()
    text = re.sub(r"^\[[\d:]+\] \S+: ", "", text)
    text = text.split("ERROR")[-1].strip() if "ERROR" in text else text
    return first_line(RuntimeError(text)) if text else type(exc).__name__


def _video_names(num_frames: int) -> list[str]:
    return [f"{i:05d}" for i in range(num_frames)]


class DecordReader(VideoReader):
    """decord backend: random access through decord's own index."""

    def __init__(self, path: Path):
        import decord

        try:
            self._vr = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=0)
            num_frames = len(self._vr)
            fps = float(self._vr.get_avg_fps())
            height, width = self._vr[0].shape[:2] if num_frames else (0, 0)
        except (decord.DECORDError, RuntimeError) as exc:  # open failures are plain RuntimeErrors
            raise VideoReadError(f"decord cannot read {path}: {_first_line(exc)}; "
                                 "check the file, or use the PyAV reader (--reader pyav)") from None
        if num_frames == 0:
            raise VideoReadError(f"{path} has no video frames")
        try:
            starts = np.asarray(self._vr.get_frame_timestamp(list(range(num_frames))), np.float64)[:, 0]
            timestamps = starts - starts[0]
        except (decord.DECORDError, RuntimeError, IndexError):
            timestamps = None
        self.info = VideoInfo(path, num_frames, fps, int(width), int(height), "decord", _video_names(num_frames),
                              timestamps)

    def read(self, indices: Sequence[int]) -> np.ndarray:
        idx = self._check_indices(indices)
        if not idx.size:
            return np.zeros((0, self.info.height, self.info.width, 3), np.uint8)
        return self._get_batch(idx.tolist())

    def _iter_batches(self, batch_size: int) -> Iterator[tuple[int, np.ndarray]]:
        for start in range(0, self.info.num_frames, batch_size):
            yield start, self._get_batch(list(range(start, min(start + batch_size, self.info.num_frames))))

    def _get_batch(self, indices: list[int]) -> np.ndarray:
        import decord

        try:
            return self._vr.get_batch(indices).asnumpy()
        except (decord.DECORDError, RuntimeError) as exc:
            raise VideoReadError(f"decord failed to decode {self.info.path}: {_first_line(exc)}; "
                                 "the file may be corrupt, try --reader pyav") from None

    def close(self) -> None:
        self._vr = None


class PyAVReader(VideoReader):
    """PyAV backend. Opening demuxes the whole file once (no decoding) to count frames and locate keyframes;
    ``read`` then seeks to the keyframe before each run of requested frames and decodes forward."""

    def __init__(self, path: Path):
        import av

        self._av = av
        self._container = self._open(path)
        stream = self._container.streams.video[0]
        pts: list[Any] = []
        keyframe_pts: list[Any] = []
        try:
            for packet in self._container.demux(stream):
                if packet.size:  # the final flush packet is empty
                    pts.append(packet.pts)
                    if packet.is_keyframe:
                        keyframe_pts.append(packet.pts)
        except av.FFmpegError as exc:  # damaged data after some packets: keep what was read
            logger.warning("%s: demuxing stopped after %d packets (%s)", path.name, len(pts), _first_line(exc))
        if not pts:
            raise VideoReadError(f"{path} has no video frames (an empty or cut-off video stream)")
        num_frames = len(pts)
        # Frame i = packet with the i-th smallest pts. Without usable timestamps, fall back to decode order.
        self._pts_index: dict[int, int] | None = None
        self._keyframes = [0]
        if None not in pts and len(set(pts)) == num_frames:
            ordered = sorted(pts)
            self._pts_index = {p: i for i, p in enumerate(ordered)}
            self._pts = ordered
            self._keyframes = sorted({self._pts_index[p] for p in keyframe_pts} | {0})
        rate = stream.average_rate or stream.guessed_rate
        fps = float(rate) if rate else 0.0
        if fps <= 0 and self._container.duration:
            fps = num_frames / (self._container.duration / 1e6)
        timestamps = None
        if self._pts_index is not None and stream.time_base is not None:
            timestamps = (np.asarray(self._pts, np.float64) - self._pts[0]) * float(stream.time_base)
        ctx = stream.codec_context
        self.info = VideoInfo(path, num_frames, fps, int(ctx.width), int(ctx.height), "pyav", _video_names(num_frames),
                              timestamps)
        self._warned_gap = False
        self._cursor: Iterator[tuple[int, Any]] | None = None  # the decoder where the last read stopped
        self._cursor_next = 0  # the frame it yields next
        _, first = next(self._decode_from(0))  # fail now, not mid-pipeline, when not even the first frame decodes
        if not (self.info.width and self.info.height):  # some containers only know the size after decoding
            self.info.width, self.info.height = first.width, first.height
        self._coded_size = (self.info.width, self.info.height)
        # The display matrix: counter-clockwise degrees, which np.rot90 turns in quarter turns.
        self._quarter_turns = round(float(getattr(first, "rotation", 0) or 0) / 90) % 4
        if self._quarter_turns % 2:
            self.info.width, self.info.height = self.info.height, self.info.width

    def _open(self, path: Path) -> Any:
        av = self._av
        try:
            container = av.open(str(path))
        except (av.FFmpegError, OSError) as exc:
            raise VideoReadError(f"{path} is not a readable video ({_first_line(exc)}); "
                                 "check the file or re-encode it with ffmpeg") from None
        if not container.streams.video:
            container.close()
            raise VideoReadError(f"{path} has no video stream")
        container.streams.video[0].thread_type = "AUTO"
        return container

    def read(self, indices: Sequence[int]) -> np.ndarray:
        idx = self._check_indices(indices)
        frames: dict[int, np.ndarray] = {}
        targets = sorted(set(idx.tolist()))
        # Split the sorted targets into runs that start a new seek whenever a keyframe lies between two targets:
        # seeking there is cheaper than decoding the frames in between.
        runs: list[list[int]] = []
        for target in targets:
            key = self._keyframe_before(target)
            if runs and key <= runs[-1][-1]:
                runs[-1].append(target)
            else:
                runs.append([target])
        for run in runs:
            wanted = set(run)
            for frame_idx, frame in self._frames_from(run[0]):
                if frame_idx in wanted:
                    frames[frame_idx] = self._to_rgb(frame)
                if frame_idx >= run[-1]:
                    break
        if not idx.size:
            return np.zeros((0, self.info.height, self.info.width, 3), np.uint8)
        return np.stack([frames[i] for i in idx.tolist()])

    def _frames_from(self, target: int) -> Iterator[tuple[int, Any]]:
        """Decoded frames up to and past ``target``: the decoder goes on from where the last ``read`` stopped
        when that lies between ``target``'s keyframe and ``target``, else it seeks. Reading a video in consecutive
        chunks (post-processing does) thus decodes each frame once instead of a GOP per chunk."""
        key = self._keyframe_before(target)
        if self._cursor is None or not key <= self._cursor_next <= target:
            self._cursor, self._cursor_next = self._decode_from(key), key
        for frame_idx, frame in self._cursor:
            self._cursor_next = frame_idx + 1
            yield frame_idx, frame
        self._cursor = None  # the end of the video

    def _iter_batches(self, batch_size: int) -> Iterator[tuple[int, np.ndarray]]:
        self._cursor = None  # decoding from 0 reopens the container under it
        batch: list[np.ndarray] = []
        start = 0
        for frame_idx, frame in self._decode_from(0):
            batch.append(self._to_rgb(frame))
            if len(batch) == batch_size:
                yield start, np.stack(batch)
                start, batch = frame_idx + 1, []
        if batch:
            yield start, np.stack(batch)

    def _keyframe_before(self, frame_idx: int) -> int:
        return self._keyframes[bisect.bisect_right(self._keyframes, frame_idx) - 1]

    def _decode_from(self, start_idx: int) -> Iterator[tuple[int, Any]]:
        """Yield ``(frame_idx, av.VideoFrame)`` for every index from ``start_idx`` (a keyframe) to the end.

        Frames the decoder does not deliver (undecodable packets) are filled with the nearest earlier frame, or the
        next one at the very start, so every index appears exactly once and in order.
        """
        av = self._av
        container = self._container
        stream = container.streams.video[0]
        if self._pts_index is not None and start_idx > 0:
            container.seek(self._pts[start_idx], stream=stream, backward=True, any_frame=False)
        else:
            container.close()
            self._container = container = self._open(self.info.path)
            stream = container.streams.video[0]
        num_frames = self.info.num_frames
        next_idx, previous, decode_order = start_idx, None, 0
        for packet in container.demux(stream):
            try:
                decoded = packet.decode()
            except av.FFmpegError as exc:
                logger.debug("%s: skipping an undecodable packet (%s)", self.info.path.name, _first_line(exc))
                continue
            for frame in decoded:
                if self._pts_index is not None:
                    frame_idx = self._pts_index.get(frame.pts)
                    if frame_idx is None:
                        continue
                else:
                    frame_idx, decode_order = decode_order, decode_order + 1
                if frame_idx < next_idx or frame_idx >= num_frames:
                    continue  # leading frames of an open GOP after a seek, or extra frames
                while next_idx < frame_idx:  # gap: frames that did not decode
                    self._warn_gap()
                    yield next_idx, previous if previous is not None else frame
                    next_idx += 1
                yield frame_idx, frame
                previous, next_idx = frame, frame_idx + 1
        if previous is None and next_idx < num_frames:
            raise VideoReadError(f"{self.info.path} could not be decoded from frame {next_idx}; "
                                 "the file is corrupt, re-encode it with ffmpeg")
        while next_idx < num_frames:
            self._warn_gap()
            yield next_idx, previous
            next_idx += 1

    def _warn_gap(self) -> None:
        if not self._warned_gap:
            logger.warning("%s: some frames could not be decoded (damaged file?); each is replaced by the frame "
                           "before it", self.info.path.name)
            self._warned_gap = True

    def _to_rgb(self, frame: Any) -> np.ndarray:
        # Resize too, in case the stream changes resolution midway; then turn it as displayed.
        width, height = self._coded_size
        rgb = frame.to_ndarray(format="rgb24", width=width, height=height)
        return np.ascontiguousarray(np.rot90(rgb, self._quarter_turns)) if self._quarter_turns else rgb

    def close(self) -> None:
        self._cursor = None
        if self._container is not None:
            self._container.close()
            self._container = None


def _natural_key(name: str) -> list[Any]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


class FrameFolderReader(VideoReader):
    """A folder of image files, one per frame, sorted by name (natural order)."""

    def __init__(self, path: Path, fps: float = 15.0):
        files = [p for p in path.iterdir() if p.is_file() and p.suffix.lower() in FRAME_SUFFIXES]
        if not files:
            raise VideoReadError(f"{path} contains no .jpg/.jpeg/.png frames; pass a video file or a frame folder")
        if fps <= 0:
            raise ConfigError(f"frame folder fps is {fps}; give a positive rate, e.g. 15")
        self._files = sorted(files, key=lambda p: _natural_key(p.name))
        height, width = self._load(self._files[0]).shape[:2]
        self.info = VideoInfo(path, len(self._files), float(fps), width, height, "frames",
                              [p.stem for p in self._files])

    def _load(self, file: Path, size: tuple[int, int] | None = None) -> np.ndarray:
        """One frame as uint8 RGB [H, W, 3]; ``size`` (height, width) is checked when given."""
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(file) as image:
                array = np.asarray(image.convert("RGB"))
        except (OSError, UnidentifiedImageError) as exc:
            raise VideoReadError(f"frame {file} cannot be read ({_first_line(exc)}); replace or remove it") from None
        if size is not None and array.shape[:2] != size:
            raise VideoReadError(f"frame {file.name} is {array.shape[1]}x{array.shape[0]} but the first frame is "
                                 f"{self.info.width}x{self.info.height}; all frames of a folder must share one size")
        return array

    def read(self, indices: Sequence[int]) -> np.ndarray:
        idx = self._check_indices(indices)
        if not idx.size:
            return np.zeros((0, self.info.height, self.info.width, 3), np.uint8)
        size = (self.info.height, self.info.width)
        return np.stack([self._load(self._files[i], size) for i in idx.tolist()])

    def _iter_batches(self, batch_size: int) -> Iterator[tuple[int, np.ndarray]]:
        for start in range(0, self.info.num_frames, batch_size):
            stop = min(start + batch_size, self.info.num_frames)
            size = (self.info.height, self.info.width)
            yield start, np.stack([self._load(f, size) for f in self._files[start:stop]])
