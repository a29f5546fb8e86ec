"""Writing files so that a reader, or a rerun after a crash, sees the old content or the complete new one, never a
torn write: single files through a temporary sibling and ``os.replace``, folders through a temporary sibling folder
renamed on success."""

from __future__ import annotations

import errno
import json
import math
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from vidseg.errors import OutputError, WriteError, first_line


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary sibling and an atomic rename; creates the parent folder."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror}; choose a writable output folder") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json_atomic(path: str | Path, doc: Any) -> Path:
    """Write ``doc`` as indented JSON; NaN and infinities become ``null`` (JSON has no NaN)."""
    text = json.dumps(json_safe(doc), indent=2, allow_nan=False)
    return write_bytes_atomic(path, (text + "\n").encode())


def json_safe(value: Any) -> Any:
    """``value`` with numpy scalars as Python numbers and NaN / infinities as ``None``."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        return json_safe(value.item())
    return value


@contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``target`` that replaces ``target`` only if the block succeeds.

    The temporary name records this host and process (``.<name>.tmp@<host>@<pid>@<random>``), so a later run into
    the same folder removes what a killed run left (``remove_stale_temporaries``) and leaves a live one's alone.
    """
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(target.parent)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp{_owner_tag()}", dir=target.parent))
    except OSError as exc:
        raise OutputError(f"cannot write to {target.parent}: {exc.strerror}; choose a writable --out") from None
    try:
        yield tmp
        if target.exists():
            old = target.with_name(f".{target.name}.old{_owner_tag()}")
            target.rename(old)
            tmp.rename(target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


_STALE = re.compile(r"^\..+\.(tmp|old)@(?P<host>[^@]+)@(?P<pid>\d+)@")


def _owner_tag() -> str:
    return f"@{socket.gethostname()}@{os.getpid()}@"


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this host (one of another user counts; a zombie, dead but not yet reaped by
    its parent, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True  # no /proc (macOS): kill(pid, 0) is all there is
    return state not in ("Z", "X")


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Remove the temporary folders in ``folder`` whose run is dead: made on this host by a process that no longer
    exists. Those of live runs, and of other hosts sharing the folder, are left alone. Returns what was removed."""
    removed = []
    host = socket.gethostname()
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return removed
    for path in entries:
        match = _STALE.match(path.name)
        if match and match["host"] == host and not process_alive(int(match["pid"])):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def write_error(exc: OSError, folder: Path) -> "WriteError":
    """One line for a failed write into ``folder``: what happened and what to do."""
    if exc.errno == errno.ENOSPC:
        return WriteError(f"no space left on the device holding {folder}; free some space there (nothing "
                          f"half-written was left) or pass another --out")
    if exc.errno == errno.EDQUOT:
        return WriteError(f"disk quota exceeded writing {folder}; free some of your quota or pass another --out")
    return WriteError(f"cannot write {folder}: {exc.strerror or first_line(exc)}; check the folder (nothing "
                      f"half-written was left) or pass another --out")


def check_writable(out: Path) -> None:
    """Fail before any model work if ``out`` cannot hold results (creates nothing)."""
    out = Path(out).absolute()
    existing = next(p for p in (out, *out.parents) if p.exists())
    if not existing.is_dir():
        raise OutputError(f"--out {out}: {existing} is a file; give a folder")
    try:
        with tempfile.NamedTemporaryFile(dir=existing):
            pass
    except OSError as exc:
        raise OutputError(f"cannot write to {out}: {exc.strerror}; choose a writable --out") from None
