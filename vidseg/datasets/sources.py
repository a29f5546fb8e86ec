"""Find the videos of a dataset root, whatever its shape.

Accepted roots (checked in this order):

1. a VSPW-layout tree: ``ROOT/data/<video>/origin/*.jpg`` with optional ``ROOT/data/<video>/mask/*.png``; a split
   file (``val.txt``: one video name per line, relative to ROOT or any path) selects videos, else all are taken;
2. a text file listing video files or frame folders, one per line (relative paths resolve against the file's folder;
   blank lines and lines starting with ``#`` are skipped);
3. a single video file;
4. a folder of frame folders (each sub-folder holding images is one video);
5. a folder of video files.

Each video becomes a ``DatasetVideo``. Layout problems (missing root, split lines naming absent videos, empty
folders, clashing names) raise ``DatasetError`` before any work starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from vidseg.errors import DatasetError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".wmv", ".flv", ".ts")
LIST_SUFFIXES = (".txt", ".lst", ".list")


@dataclass(frozen=True)
class DatasetVideo:
    """One video of a dataset.

    Attributes:
        name: output folder name (VSPW video folder name, frame folder name, or video file stem).
        source: a video file or a folder of frames.
        mask_dir: folder of GT mask PNGs, or None without GT.
        output_stems: file stems to write, one prediction each: the GT mask stems when GT exists, else the frame
            stems of a frame folder; empty for a video file (the pipeline names its decoded frames).
        gt_size: (height, width) of the GT masks, or None without GT.
    """

    name: str
    source: Path
    mask_dir: Path | None
    output_stems: tuple[str, ...]
    gt_size: tuple[int, int] | None

    @property
    def mask_paths(self) -> list[Path]:
        """GT mask files in ``output_stems`` order (empty without GT)."""
        if self.mask_dir is None:
            return []
        return [self.mask_dir / f"{stem}.png" for stem in self.output_stems]


def discover_videos(root: str | Path, *, split: str | Path | None = None) -> list[DatasetVideo]:
    """The videos under ``root`` (see the module docstring), sorted by name. ``split`` needs a VSPW tree."""
    root = Path(root)
    if not root.exists():
        raise DatasetError(f"dataset root {root} does not exist")
    if is_vspw_root(root):
        return vspw_videos(root, split=split)
    if split is not None:
        raise DatasetError(f"--split needs a VSPW tree (ROOT/data/<video>/origin/), but {root} has no data/ folder")
    if root.is_file():
        if root.suffix.lower() in LIST_SUFFIXES:
            return _unique_sorted([_video_from_path(p) for p in _read_list(root)], root)
        if root.suffix.lower() in VIDEO_SUFFIXES:
            return [_video_from_path(root)]
        raise DatasetError(
            f"{root} is neither a video ({', '.join(VIDEO_SUFFIXES)}) nor a list of videos "
            f"({', '.join(LIST_SUFFIXES)})"
        )
    children = sorted(p for p in root.iterdir() if not p.name.startswith("."))
    frame_dirs = [p for p in children if p.is_dir() and _images(p)]
    video_files = [p for p in children if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES]
    if not frame_dirs and not video_files:
        raise DatasetError(
            f"no videos found in {root}: expected data/<video>/origin/*.jpg (VSPW), folders of frames, or video files"
        )
    return _unique_sorted([_video_from_path(p) for p in frame_dirs + video_files], root)


def is_vspw_root(root: str | Path) -> bool:
    return (Path(root) / "data").is_dir()


def read_split(root: str | Path, split: str | Path) -> list[str]:
    """Video names listed in split file ``split`` (a path, or a name inside ``root`` such as ``val.txt``)."""
    path = Path(split)
    if not path.is_file():
        path = Path(root) / split
    if not path.is_file():
        raise DatasetError(f"split file {split} not found (looked in {Path(root)} too); pass --split PATH")
    names = [line.strip() for line in path.read_text().splitlines()]
    names = [n for n in names if n]
    if not names:
        raise DatasetError(f"split file {path} lists no videos")
    return names


def vspw_videos(
    root: str | Path, *, split: str | Path | None = None, require_frames: bool = True
) -> list[DatasetVideo]:
    """The videos of a VSPW tree (those named in ``split``, else every ``data/<video>`` folder), sorted by name.

    ``require_frames=False`` accepts videos that have GT masks but no ``origin/`` frames (enough to evaluate).
    """
    root = Path(root)
    data = root / "data"
    if split is not None:
        names = read_split(root, split)
        missing = [n for n in names if not (data / n).is_dir()]
        if missing:
            raise DatasetError(
                f"{len(missing)} videos of {split} are not in {data}: {', '.join(missing[:3])}"
                f"{', ...' if len(missing) > 3 else ''}; check the root and the split file"
            )
    else:
        names = sorted(p.name for p in data.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not names:
            raise DatasetError(f"{data} holds no video folders")
    if len(set(names)) != len(names):
        duplicate = next(n for n in names if names.count(n) > 1)
        raise DatasetError(f"video {duplicate} is listed twice in {split}; list each video once")
    return sorted((_vspw_video(data / n, require_frames) for n in names), key=lambda v: v.name)


def _vspw_video(folder: Path, require_frames: bool) -> DatasetVideo:
    origin = folder / "origin"
    frames = _images(origin) if origin.is_dir() else []
    mask_dir = folder / "mask"
    masks = sorted(p for p in mask_dir.glob("*.png") if not p.name.startswith(".")) if mask_dir.is_dir() else []
    if not frames and (require_frames or not masks):
        raise DatasetError(f"{origin} holds no frames; expected {origin}/<8 digits>.jpg")
    if not masks:
        return DatasetVideo(folder.name, origin, None, tuple(p.stem for p in frames), None)
    with Image.open(masks[0]) as image:
        width, height = image.size
    return DatasetVideo(folder.name, origin, mask_dir, tuple(p.stem for p in masks), (height, width))


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))


def _video_from_path(path: Path) -> DatasetVideo:
    if path.is_dir():
        frames = _images(path)
        if not frames:
            raise DatasetError(f"{path} holds no frames ({', '.join(IMAGE_SUFFIXES)})")
        return DatasetVideo(path.name, path, None, tuple(p.stem for p in frames), None)
    if not path.is_file():
        raise DatasetError(f"video {path} does not exist")
    return DatasetVideo(path.stem, path, None, (), None)


def _read_list(list_file: Path) -> list[Path]:
    paths = []
    for line in list_file.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            path = Path(line).expanduser()
            paths.append(path if path.is_absolute() else list_file.parent / path)
    if not paths:
        raise DatasetError(f"{list_file} lists no videos")
    return paths


def _unique_sorted(videos: list[DatasetVideo], root: Path) -> list[DatasetVideo]:
    seen: dict[str, Path] = {}
    for v in videos:
        if v.name in seen:
            raise DatasetError(
                f"{seen[v.name]} and {v.source} in {root} would both write {v.name}/; rename one of them"
            )
        seen[v.name] = v.source
    return sorted(videos, key=lambda v: v.name)
