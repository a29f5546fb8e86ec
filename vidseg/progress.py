"""How the pipeline reports progress: the ``Progress`` protocol (the CLI draws it with rich, the benchmark meters
it), a reporter that reports nothing, and one that stops background work once its consumer has gone away."""

from __future__ import annotations

import threading
from typing import Any, Protocol


class Progress(Protocol):
    """What the pipeline reports to (the CLI draws it with rich; ``None`` reports nothing)."""

    def start(self, stage: str, total: int | None = None) -> None: ...

    def advance(self, n: int = 1) -> None: ...

    def finish(self) -> None: ...

    def lane(self) -> "Progress":
        """An independent reporter for work that runs at the same time as this one's."""
        ...


class NoProgress:
    def lane(self) -> "NoProgress":
        return self

    def start(self, stage: str, total: int | None = None) -> None:
        pass

    def advance(self, n: int = 1) -> None:
        pass

    def finish(self) -> None:
        pass


class Cancelled(Exception):
    """Raised inside background model work once its consumer has gone away."""


class CancellableProgress:
    """Forwards progress, and stops the work it reports on at the next step once ``cancelled`` is set."""

    def __init__(self, inner: Any, cancelled: threading.Event):
        self.inner, self.cancelled = inner, cancelled

    def start(self, stage: str, total: int | None = None) -> None:
        self._check()
        self.inner.start(stage, total)

    def advance(self, n: int = 1) -> None:
        self._check()
        self.inner.advance(n)

    def finish(self) -> None:
        self.inner.finish()

    def _check(self) -> None:
        if self.cancelled.is_set():
            raise Cancelled("stopped: the caller no longer needs this result")
