"""Writing one job's Kaldi ark/scp pair atomically: both are written under temporary names and renamed
into place only when every utterance is done, so a killed job leaves no file a rerun would trust."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from types import TracebackType

import kaldiio
import numpy as np

from ..tables import mkstemp_beside

# Kaldi's copy-feats --compress=true default (--compression-method=1, "automatic"): the 8-bit
# "speech feature" method (kSpeechFeature) for matrices with more than 8 rows, two-byte otherwise.
K_AUTOMATIC_METHOD = 1


class ArkScpWriter:
    """Write matrices or vectors to ``ark`` with an index in ``scp`` (``<key> <ark>:<offset>``).

    Use as a context manager; on a clean exit the temporary files are renamed onto ``ark`` and then
    ``scp``; on an exception they are removed. ``compress`` stores matrices with Kaldi's lossy
    compression (kaldiio's implementation of the CompressedMatrix format).
    """

    def __init__(self, ark: str | os.PathLike, scp: str | os.PathLike, compress: bool = False) -> None:
        self.ark = Path(ark)
        self.scp = Path(scp)
        self.compress = compress
        self.ark.parent.mkdir(parents=True, exist_ok=True)
        self.scp.parent.mkdir(parents=True, exist_ok=True)
        self._tmp_ark = mkstemp_beside(self.ark)
        self._tmp_scp = mkstemp_beside(self.scp)
        self._fa = open(self._tmp_ark, "wb")
        self._fs = open(self._tmp_scp, "w", encoding="utf-8")
        self.count = 0


    def write(self, key: str, array: np.ndarray) -> None:
        """Append one entry; the scp offset points just past ``<key> `` as Kaldi's does."""
        pos = self._fa.tell()
        method = K_AUTOMATIC_METHOD if (self.compress and np.ndim(array) == 2) else None
        kaldiio.save_ark(self._fa, {key: array}, compression_method=method)
        self._fs.write(f"{key} {self.ark}:{pos + len(key.encode()) + 1}\n")
        self.count += 1

    def __enter__(self) -> ArkScpWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._fa.close()
        self._fs.close()
        if exc_type is None:
            os.replace(self._tmp_ark, self.ark)
            os.replace(self._tmp_scp, self.scp)
        else:
            for tmp in (self._tmp_ark, self._tmp_scp):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
