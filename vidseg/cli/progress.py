"""Rich progress for every pipeline stage, with the elapsed time of each."""

from __future__ import annotations

import threading

from rich.console import Console
from rich.progress import (
    BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn,
)

# Progress and messages go to stderr so stdout stays clean for scripts.
console = Console(stderr=True)


class RichProgress:
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

    def start(self, stage: str, total: int | None = None) -> None:
        self._main.start(stage, total)

    def advance(self, n: int = 1) -> None:
        self._main.advance(n)

    def finish(self) -> None:
        self._main.finish()


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
