"""The one exception family of metricsduck and the exit codes the CLI maps it to."""

from __future__ import annotations

from enum import IntEnum
from pathlib import Path


class ExitCode(IntEnum):
    """Exit codes of the `metricsduck` command (documented in the README)."""

    OK = 0
    FINDINGS = 1  # the command ran and found problems (`check`)
    USAGE = 2  # bad options or arguments (click's own code)
    CONFIG = 3  # the config file is missing, unreadable or invalid
    INPUT = 4  # a bad name, value or sidecar was given
    CATALOG = 5  # a SQL file is malformed, fails to apply, or its definitions form a cycle
    IO = 6  # a file could not be read or written
    RESOURCES = 7  # DuckDB ran out of the memory or spill space it may use
    INTERNAL = 70  # a bug in metricsduck: rerun with --debug and report it
    INTERRUPTED = 130  # stopped by Ctrl-C (128 + SIGINT, as shells report it)


class MetricsDuckError(Exception):
    """Base of every error metricsduck raises on purpose; the message says what to do."""

    exit_code = ExitCode.INTERNAL


class ConfigError(MetricsDuckError):
    """The config is invalid; the message names the key path."""

    exit_code = ExitCode.CONFIG


class InputError(MetricsDuckError, ValueError):
    """A name or value handed to metricsduck cannot be stored; the message names the key."""

    exit_code = ExitCode.INPUT


class SidecarError(MetricsDuckError):
    """A sidecar file cannot be used; carries its path."""

    exit_code = ExitCode.INPUT

    def __init__(self, path: Path | str, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class SqlFileError(MetricsDuckError):
    """A versioned SQL file is misnamed or fails to apply; carries its path and line."""

    exit_code = ExitCode.CATALOG

    def __init__(self, path: Path | str, line: int | None, reason: str) -> None:
        self.path = Path(path)
        self.line = line
        self.reason = reason
        where = f"{path}:{line}" if line else f"{path}"
        super().__init__(f"{where}: {reason}")


class StorageError(MetricsDuckError):
    """A file could not be written or read."""

    exit_code = ExitCode.IO


class ResourceError(MetricsDuckError):
    """DuckDB needed more memory or spill space than it may use; the message names the limits."""

    exit_code = ExitCode.RESOURCES
