"""Errors that the CLI turns into one clear line and an exit code (never a traceback).

Every message names what is wrong and what to do about it. Unexpected exceptions are bugs and keep their
traceback. Exit codes: 2 = bad input or settings (caught before the work starts), 1 = a failure while running
(e.g. a video of a dataset failed, or the output disk filled up), 130 = interrupted.
"""

from __future__ import annotations


class VidsegError(Exception):
    """Base class: a problem the user can fix. ``exit_code`` is what the CLI exits with."""

    exit_code = 1


class ConfigError(VidsegError):
    """Bad option, configuration value or class list."""

    exit_code = 2


class VideoReadError(VidsegError):
    """Missing, unreadable, corrupt or empty video."""

    exit_code = 2


class ModelLoadError(VidsegError):
    """Weights absent (offline, wrong path) or not a diffusers folder of a family vidseg reads."""

    exit_code = 2


class OutputError(VidsegError):
    """The output location cannot be written."""

    exit_code = 2


class WriteError(VidsegError):
    """Writing results failed while running (disk full, quota, I/O error); nothing half-written is left."""

    exit_code = 1


class DatasetError(VidsegError):
    """A dataset root, split file or prediction folder does not have the expected layout."""

    exit_code = 2


class MissingDependencyError(VidsegError):
    """An optional component was asked for but its package is not installed."""

    exit_code = 2


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its class name when it has none), for one-line errors."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
