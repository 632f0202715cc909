"""Where and when a result was made: the fields every result file carries so that a report can say, for
each number, the date and machine that produced it."""

from __future__ import annotations

import os
import platform
import time


def provenance() -> dict[str, str]:
    """``{"date": "YYYY-MM-DD HH:MM:SS", "host": ..., "machine": "<cpu>, <n> cores"}`` of this process."""
    return {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "host": platform.node(),
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"}
