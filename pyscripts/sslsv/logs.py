"""One way to report progress. Library modules log through ``logging.getLogger(__name__)`` and never
print; each command-line entry point calls :func:`setup` once, which sends INFO and above, one flushed
line per record, to stderr (or stdout), the job's log file under ``run.py`` or SLURM:

    <prog>: <message>                  (``setup("cluster.py")``)
    <prog>: WARNING: <message>         (warnings and errors carry their level)
    12:34:56 <message>                 (``setup(timestamps=True)``, the UBM tools' Kaldi-like lines)

Used as a library (a notebook, the tests), nothing is printed unless the caller configures logging.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO


class _Formatter(logging.Formatter):
    def __init__(self, prog: str, timestamps: bool) -> None:
        super().__init__(datefmt="%H:%M:%S")
        self.prefix = f"{prog}: " if prog else ""
        self.timestamps = timestamps

    def format(self, record: logging.LogRecord) -> str:
        level = f"{record.levelname}: " if record.levelno >= logging.WARNING else ""
        head = f"{self.formatTime(record, self.datefmt)} " if self.timestamps else ""
        return f"{head}{self.prefix}{level}{record.getMessage()}"


def setup(prog: str = "", timestamps: bool = False, stream: TextIO | None = None,
          level: int = logging.INFO) -> logging.Logger:
    """Configure the root logger for a command-line program (replacing handlers of an earlier call)
    and return the logger named ``prog`` for the program's own messages."""
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    handler.setFormatter(_Formatter(prog, timestamps))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    return logging.getLogger(prog or "sslsv")
