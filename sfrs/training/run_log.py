"""``RUN/train.log``: the lines a training run prints, each behind a wall-clock time stamp.

The file is appended to (a resumed run continues it) and flushed after every line, so a
killed run keeps everything it printed up to the kill.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Optional, TextIO

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


class RunLog:
    """Callable like ``print``: echoes ``line`` and, once :meth:`open`, appends it to a file."""

    def __init__(self, echo: Callable[[str], None] = print) -> None:
        self.echo = echo
        self._file: Optional[TextIO] = None
        #: the file held lines of an earlier process when opened
        self.continued = False

    def open(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.continued = path.exists() and path.stat().st_size > 0
        self._file = open(path, "a", encoding="utf-8")

    def __call__(self, line: str) -> None:
        self.echo(line)
        self.record(line)

    def record(self, line: str) -> None:
        """Into the file only (a line the caller prints itself, e.g. the final error)."""
        if self._file is not None:
            stamp = time.strftime(TIME_FORMAT)
            # a line of its own for each line of a multi-line message, so every line is dated
            self._file.write("".join(f"{stamp} {part}\n" for part in str(line).split("\n")))
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
