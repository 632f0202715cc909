"""Stage 10: the papers' tables and figures, rebuilt from what is under ``exp/<name>`` alone
(:mod:`.collect` reads it, :mod:`.analysis` computes, :mod:`.figures` draws, :mod:`.document` writes
RESULTS.md)."""

from .collect import Results, collect
from .document import Report

__all__ = ["Report", "Results", "collect"]
