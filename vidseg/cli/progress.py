"""Rich progress for every pipeline stage, with the elapsed time of each."""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

# Progress and messages go to stderr so stdout stays clean for scripts.
console = Console(stderr=True)


class RichProgress:
    """Implements ``vidseg.pipeline.Progress``: one line per stage, finished lines keep their elapsed time."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self._bar = Progress(
            SpinnerColumn(),
            TextColumn("{task.description:<28}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            disable=not enabled,
        )
        self._task: int | None = None
        self._started = 0.0

    def __enter__(self) -> "RichProgress":
        self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.finish()
        self._bar.stop()

    def start(self, stage: str, total: int | None = None) -> None:
        self.finish()
        self._started = time.perf_counter()
        self._task = self._bar.add_task(stage, total=total)

    def advance(self, n: int = 1) -> None:
        if self._task is not None:
            self._bar.advance(self._task, n)

    def finish(self) -> None:
        if self._task is None:
            return
        task = self._bar.tasks[self._task]
        total = task.total if task.total is not None else max(task.completed, 1)
        self._bar.update(self._task, total=total, completed=total)
        self._task = None
