"""Progress for every pipeline stage, with the elapsed time of each: live bars on a terminal, plain lines in order
anywhere else (a log file, CI, SLURM, ``nohup``)."""

from __future__ import annotations

import threading
import time

from rich.console import Console
from rich.progress import (
    BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn,
)

# Progress and messages go to stderr so stdout stays clean for scripts.
console = Console(stderr=True)
# How often a long stage prints how far it is when the output is not a terminal.
LINE_INTERVAL_S = 10.0


def stage_progress(enabled: bool = True) -> "RichProgress | LineProgress":
    """The progress display for stderr: live bars on a terminal; elsewhere a log would get every bar at the end
    (after the lines printed meanwhile), so it gets a line per finished stage instead, as it happens."""
    return RichProgress(enabled) if console.is_terminal or not enabled else LineProgress()


class _Display:
    """A display whose main lane (``_main``) takes the pipeline's reports; ``lane()`` gives another one."""

    _main: "_Lane | _LineLane"

    def start(self, stage: str, total: int | None = None) -> None:
        self._main.start(stage, total)

    def advance(self, n: int = 1) -> None:
        self._main.advance(n)

    def finish(self) -> None:
        self._main.finish()


class RichProgress(_Display):
    """Implements ``vidseg.progress.Progress``: one line per stage; finished lines keep their elapsed time.

    ``lane()`` gives an independent reporter on the same display, for stages that run at the same time (the model
    on the next video while the current one is refined).
    """

    def __init__(self, enabled: bool = True):
        self._bar = Progress(
            SpinnerColumn(),
            TextColumn("{task.description:<30}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(compact=True),
            console=console,
            disable=not enabled,
        )
        self._lock = threading.Lock()
        self._main = _Lane(self)

    def __enter__(self) -> "RichProgress":
        self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._main.finish()
        self._bar.stop()

    def lane(self) -> "_Lane":
        return _Lane(self)


class _Lane:
    def __init__(self, owner: RichProgress):
        self._owner = owner
        self._task: int | None = None

    def start(self, stage: str, total: int | None = None) -> None:
        self.finish()
        with self._owner._lock:
            self._task = self._owner._bar.add_task(stage, total=total)

    def advance(self, n: int = 1) -> None:
        if self._task is not None:
            with self._owner._lock:
                self._owner._bar.advance(self._task, n)

    def finish(self) -> None:
        if self._task is None:
            return
        with self._owner._lock:
            task = self._owner._bar.tasks[self._task]
            total = task.total if task.total is not None else max(task.completed, 1)
            self._owner._bar.update(self._task, total=total, completed=total)
        self._task = None


class LineProgress(_Display):
    """Implements ``vidseg.progress.Progress`` as plain lines: one when a stage finishes (with its elapsed time),
    and ``stage 40/200`` every ``LINE_INTERVAL_S`` seconds while a long one runs. ``lane()`` as ``RichProgress``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._main = _LineLane(self._lock)

    def __enter__(self) -> "LineProgress":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if exc_type is None:
            self._main.finish()
        else:  # the error line says what happened: a stage cut short is not reported done
            self._main.drop()

    def lane(self) -> "_LineLane":
        return _LineLane(self._lock)


class _LineLane:
    def __init__(self, lock: threading.Lock):
        self._lock = lock
        self._stage: str | None = None

    def start(self, stage: str, total: int | None = None) -> None:
        self.finish()
        self._stage, self._total, self._done = stage, total, 0
        self._started = self._printed = time.perf_counter()

    def advance(self, n: int = 1) -> None:
        if self._stage is None:
            return
        self._done += n
        now = time.perf_counter()
        if now - self._printed >= LINE_INTERVAL_S:
            self._printed = now
            of = f"/{self._total}" if self._total is not None else ""
            self._print(f"{self._stage}  {self._done}{of}  {now - self._started:.1f} s")

    def finish(self) -> None:
        if self._stage is None:
            return
        count = f"  {self._total}/{self._total}" if self._total else ""
        self._print(f"{self._stage}{count}  done in {time.perf_counter() - self._started:.1f} s")
        self._stage = None

    def drop(self) -> None:
        self._stage = None

    def _print(self, line: str) -> None:
        with self._lock:
            console.print(f"  {line}", markup=False, highlight=False, soft_wrap=True)
