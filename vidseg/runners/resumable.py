"""Label a whole dataset without ever losing work: resumable, sharded, one folder per video written atomically.

For each video of this shard, in name order:

1. **Skip** it if ``OUT/<video>/`` is complete: it holds the marker ``.vidseg-complete.json``, which lists every file
   of the folder with its size (and the run's ``fingerprint``), every listed file is present with that size, and the
   marker's expected outputs match the video's. Anything else (no marker, a missing or truncated file, another
   fingerprint) is redone.
2. Otherwise call ``segment_video(video, tmp_dir)`` on an empty folder ``OUT/.vidseg-tmp/<video>.<pid>/<video>``,
   check the expected files are there, write the marker last, then rename the folder onto ``OUT/<video>`` (the
   rename is atomic; an incomplete ``OUT/<video>`` from an older run is moved aside first).

A crash, SIGKILL or power cut therefore loses at most the video in flight: its files only ever exist under
``.vidseg-tmp``, which the next run clears for this shard's videos. An exception in one video is recorded (one line)
and the run goes on; Ctrl-C stops after removing the video in flight and returns a summary with
``interrupted=True``. The JSON log is rewritten atomically after every video. Run each shard in one process at a
time (different shards may run at once, on one machine or several sharing ``OUT``).

Both runners (``vidseg.runners.local`` in this process, ``vidseg.runners.ray`` on a cluster) write every video
through ``label_one`` and keep their log in a ``LabelLog``.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import traceback
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

from vidseg.datasets.sources import DatasetVideo
from vidseg.errors import ConfigError, OutputError, VidsegError, first_line
from vidseg.files import write_json_atomic
from vidseg.version import __version__

MARKER_NAME = ".vidseg-complete.json"
TMP_DIR_NAME = ".vidseg-tmp"


def png_per_stem(video: DatasetVideo) -> list[str]:
    """Files a VSPW / palette export must hold: ``<stem>.png`` for every output stem."""
    return [f"{stem}.png" for stem in video.output_stems]


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` → (i, n), 0-based: ``0/4`` … ``3/4`` split the videos into four disjoint parts."""
    index, sep, count = text.partition("/")
    try:
        i, n = int(index), int(count)
    except ValueError:
        i, n = -1, 0
    if not sep or n < 1 or not 0 <= i < n:
        raise ConfigError(f"--shard {text!r} must be i/n with 0 <= i < n, e.g. --shard 0/4 ... --shard 3/4")
    return i, n


def shard_videos(videos: Sequence[DatasetVideo], shard: tuple[int, int]) -> list[DatasetVideo]:
    """This shard's videos: position in name order modulo n equals i (every video in exactly one shard)."""
    index, count = shard
    if count < 1 or not 0 <= index < count:
        raise ConfigError(f"shard {index}/{count} is invalid; it must be i/n with 0 <= i < n")
    ordered = sorted(videos, key=lambda v: v.name)
    return [v for k, v in enumerate(ordered) if k % count == index]


@dataclass
class VideoOutcome:
    """What happened to one video: ``status`` is done, skipped (complete from before), failed or interrupted.

    ``attempts`` counts the tries (more than 1 only where a runner retries, e.g. on Ray).
    """

    name: str
    status: str
    reason: str = ""
    seconds: float = 0.0
    traceback: str | None = None
    attempts: int = 1


@dataclass
class LabelEvent:
    """Progress report: ``kind`` is start (``outcome`` None), retry, or the outcome's status; ``position`` is
    1-based; ``worker`` is the model actor a video went to (Ray runs only)."""

    kind: str
    video: DatasetVideo
    position: int
    total: int
    outcome: VideoOutcome | None = None
    worker: int | None = None


@dataclass
class LabelSummary:
    out_dir: Path
    shard: tuple[int, int]
    log_path: Path
    num_videos: int  # in this shard
    outcomes: list[VideoOutcome] = field(default_factory=list)
    interrupted: bool = False

    def with_status(self, status: str) -> list[VideoOutcome]:
        return [o for o in self.outcomes if o.status == status]

    @property
    def ok(self) -> bool:
        """True when every video of the shard is complete."""
        return not self.interrupted and not self.with_status("failed")

    @property
    def retried(self) -> list[VideoOutcome]:
        return [o for o in self.outcomes if o.attempts > 1]

    def lines(self) -> list[str]:
        """A human summary: counts, then one line per retried or failed video."""
        counts = ", ".join(f"{len(self.with_status(s))} {s}" for s in ("done", "skipped", "failed"))
        if self.retried:
            counts += f" ({len(self.retried)} retried)"
        head = f"{counts} of {self.num_videos} videos (shard {self.shard[0]}/{self.shard[1]})"
        if self.interrupted:
            head += "; interrupted: rerun the same command to resume"
        retried = [f"retried {o.name}: {o.status} after {o.attempts} attempts" for o in self.retried
                   if o.status == "done"]
        failed = [f"failed {o.name}: {o.reason}" for o in self.with_status("failed")]
        return [head, *retried, *failed, f"log: {self.log_path}"]


def label_dataset(
    videos: Sequence[DatasetVideo],
    out_dir: str | Path,
    segment_video: Callable[[DatasetVideo, Path], None],
    *,
    shard: tuple[int, int] = (0, 1),
    log_path: str | Path | None = None,
    on_event: Callable[[LabelEvent], None] | None = None,
    expected_files: Callable[[DatasetVideo], list[str]] | None = png_per_stem,
    fingerprint: str | None = None,
    protocol: dict[str, Any] | None = None,
) -> LabelSummary:
    """Run ``segment_video`` on every video of ``shard`` that is not complete in ``out_dir`` (module docstring).

    Args:
        videos: all videos of the dataset (the shard is taken here, so every process passes the same list).
        segment_video: writes one video's outputs into the given empty folder; raises to report a failure.
        shard: (i, n): this process takes the videos whose position in name order is i modulo n.
        log_path: JSON log; default ``out_dir/label_log.json`` (``label_log.shard-i-of-n.json`` when n > 1).
        on_event: called before and after each video (progress display).
        expected_files: files (relative to the video folder) that must exist after ``segment_video``; a video
            missing any counts as failed. ``None`` checks nothing beyond the call returning.
        fingerprint: identifies the settings; a folder completed under another fingerprint is redone.
        protocol: how the classes were chosen, recorded in the log (``vidseg.runners.plan.class_protocol``).
    """
    out_dir = Path(out_dir)
    mine = shard_videos(videos, shard)
    log = LabelLog(out_dir, shard, len(mine), log_path, names=[v.name for v in mine], protocol=protocol)
    for position, video in enumerate(mine, 1):
        if on_event:
            on_event(LabelEvent("start", video, position, len(mine)))
        expected = expected_files(video) if expected_files else []
        if is_complete(out_dir / video.name, expected, fingerprint):
            outcome = VideoOutcome(video.name, "skipped", "complete from an earlier run")
        else:
            outcome = label_one(video, out_dir, segment_video, expected, fingerprint)
        log.record(outcome)
        if on_event:
            on_event(LabelEvent(outcome.status, video, position, len(mine), outcome))
        if log.summary.interrupted:
            break
    return log.close()


class LabelLog:
    """One labeling run's ``LabelSummary`` and its JSON log, rewritten atomically after every video.

    Opening it prepares ``out_dir`` (the temporary folder, leftovers of killed runs for these videos removed);
    ``close`` removes the temporary folder when no other shard uses it. ``label_dataset`` and the Ray runner share
    it, so both write the same log.
    """

    def __init__(self, out_dir: Path, shard: tuple[int, int], num_videos: int, log_path: str | Path | None = None,
                 names: Sequence[str] = (), protocol: dict[str, Any] | None = None):
        if log_path is None:
            name = "label_log.json" if shard[1] == 1 else f"label_log.shard-{shard[0]}-of-{shard[1]}.json"
            log_path = out_dir / name
        self.summary = LabelSummary(out_dir, shard, Path(log_path), num_videos)
        self.protocol = protocol
        try:
            (out_dir / TMP_DIR_NAME).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot write to {out_dir}: {exc.strerror}; choose a writable --out") from None
        for name in names:
            remove_leftovers(out_dir, name)
        self.started = _now()
        self.write()

    def record(self, outcome: VideoOutcome) -> None:
        self.summary.outcomes.append(outcome)
        self.summary.interrupted = self.summary.interrupted or outcome.status == "interrupted"
        self.write()

    def write(self) -> None:
        _write_log(self.summary, self.started, self.protocol)

    def close(self) -> LabelSummary:
        _remove_empty(self.summary.out_dir / TMP_DIR_NAME)
        return self.summary


def is_complete(video_dir: Path, expected: Sequence[str] = (), fingerprint: str | None = None) -> bool:
    """Whether ``video_dir`` was finished by the runner: valid marker, every listed file there with its size,
    the ``expected`` files among them, and the same ``fingerprint`` (when one is given)."""
    try:
        marker = json.loads((video_dir / MARKER_NAME).read_text())
        files: dict[str, int] = marker["files"]
        if fingerprint is not None and marker.get("fingerprint") != fingerprint:
            return False
        if not set(expected) <= set(files):
            return False
        return all((video_dir / name).stat().st_size == size for name, size in files.items())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def label_one(
    video: DatasetVideo,
    out_dir: Path,
    segment_video: Callable[[DatasetVideo, Path], None],
    expected: Sequence[str],
    fingerprint: str | None,
) -> VideoOutcome:
    """Label one video atomically: ``segment_video`` writes into a temporary folder under ``OUT/.vidseg-tmp``, the
    expected files are checked, the marker written last, and the folder renamed onto ``OUT/<video>``. Failures and
    interrupts come back as the outcome, with the temporary folder removed."""
    holder = out_dir / TMP_DIR_NAME / f"{video.name}.{os.getpid()}"
    tmp = holder / video.name
    start = time.perf_counter()
    try:
        shutil.rmtree(holder, ignore_errors=True)
        tmp.mkdir(parents=True)
        segment_video(video, tmp)
        missing = [name for name in expected if not (tmp / name).is_file()]
        if missing:
            raise OutputError(
                f"wrote {len(expected) - len(missing)} of {len(expected)} expected files; missing "
                f"{', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''}"
            )
        _write_marker(tmp, video, fingerprint)
        _replace_dir(tmp, out_dir / video.name, holder)
        return VideoOutcome(video.name, "done", seconds=round(time.perf_counter() - start, 3))
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM / SIGHUP turned into one by the CLI
        how = f"stopped by {exc}" if str(exc) else "stopped by Ctrl-C"
        return VideoOutcome(video.name, "interrupted", f"{how}; its partial output was removed",
                            round(time.perf_counter() - start, 3))
    except Exception as exc:  # one bad video must never abort the run
        reason = _one_line(exc)
        trace = None if isinstance(exc, VidsegError) else traceback.format_exc()
        return VideoOutcome(video.name, "failed", reason, round(time.perf_counter() - start, 3), trace)
    finally:
        shutil.rmtree(holder, ignore_errors=True)


def _write_marker(tmp: Path, video: DatasetVideo, fingerprint: str | None) -> None:
    files = {str(p.relative_to(tmp)): p.stat().st_size for p in sorted(tmp.rglob("*")) if p.is_file()}
    write_json_atomic(tmp / MARKER_NAME, {
        "video": video.name,
        "source": str(video.source),
        "files": files,
        "fingerprint": fingerprint,
        "finished": _now(),
        "vidseg_version": __version__,
    })


def _replace_dir(tmp: Path, target: Path, holder: Path) -> None:
    """Rename ``tmp`` onto ``target``; an existing (incomplete) ``target`` is first moved into ``holder``."""
    if target.exists() or target.is_symlink():
        target.rename(holder / "previous")
    tmp.rename(target)


def remove_leftovers(out_dir: Path, name: str) -> None:
    """Temporary folders of ``name`` left by a killed run (their process is gone; shards never share a video)."""
    prefix = f"{name}."
    for path in (out_dir / TMP_DIR_NAME).iterdir():
        if path.name.startswith(prefix) and path.name[len(prefix):].isdigit():
            shutil.rmtree(path, ignore_errors=True)


def _remove_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass  # not empty: another shard is still running


def _write_log(summary: LabelSummary, started: str, protocol: dict[str, Any] | None) -> None:
    counts = {s: len(summary.with_status(s)) for s in ("done", "skipped", "failed", "interrupted")}
    counts["retried"] = len(summary.retried)
    write_json_atomic(summary.log_path, {
        "out_dir": str(summary.out_dir),
        "shard": f"{summary.shard[0]}/{summary.shard[1]}",
        "started": started,
        "updated": _now(),
        "interrupted": summary.interrupted,
        "num_videos": summary.num_videos,
        "protocol": protocol,
        "counts": counts,
        "videos": [asdict(o) for o in summary.outcomes],
        "vidseg_version": __version__,
    })


def _one_line(exc: BaseException) -> str:
    """The failure's first line; a bug (not a ``VidsegError``) is named by its class too."""
    return first_line(exc) if isinstance(exc, VidsegError) else f"{type(exc).__name__}: {first_line(exc)}"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
