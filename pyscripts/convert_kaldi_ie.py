#!/usr/bin/env python3
"""Convert a Kaldi i-vector extractor (``final.ie``, text or binary) into ours (``.ie`` npz).

Usage: convert_kaldi_ie.py <kaldi-final.ie> <out.ie>

Kaldi's ``IvectorExtractor::Write`` (use_weights=false models, as the sid recipes train):

    <IvectorExtractor> <w> [empty Matrix] <w_vec> [Vector C] <M> <int32 C> [Matrix D×S] × C
    <SigmaInv> [SpMatrix D] × C <IvectorOffset> <double o> </IvectorExtractor>

Text form: tokens separated by spaces, matrices/vectors in ``[ ... ]`` (row-major; SpMatrix as the packed
lower triangle row by row: (0,0), (1,0), (1,1), ...). Binary form (starts with ``\\0B``): a token is the
string plus a space; an int32/double is one size byte (4/8) then little-endian bytes; a double matrix is
``DM`` <int32 rows> <int32 cols> data, a vector ``DV`` <int32 n> data, a packed matrix ``DP`` <int32 n> data
(``FM``/``FV``/``FP`` for float). Shapes are inferred: C from w_vec (and <M>'s count), D from the SigmaInv
size D(D+1)/2, S = (size of one M) / D. A model with ivector-dependent weights (non-empty <w>) is rejected.
The UBM (final.ubm) is converted separately (pyscripts/convert_kaldi_gmm.py) and must sit beside the
extractor as final.ubm, with frame_opts, for steps/extract_ivectors.sh.
"""

from __future__ import annotations

import math
import struct
import sys
from pathlib import Path

import numpy as np
from sslsv.ivector.extractor import IvectorExtractor
from sslsv.tables import DataError


class _Text:
    def __init__(self, data: bytes, where: str):
        text = data.decode("ascii", errors="replace").replace("[", " [ ").replace("]", " ] ")
        self.tok = text.split()
        self.i = 0
        self.where = where

    def token(self) -> str:
        if self.i >= len(self.tok):
            raise DataError(f"{self.where}: unexpected end of file")
        self.i += 1
        return self.tok[self.i - 1]

    def expect(self, t: str) -> None:
        got = self.token()
        if got != t:
            raise DataError(f"{self.where}: expected {t}, found {got!r} (token {self.i})")

    def numbers(self) -> np.ndarray:
        self.expect("[")
        out = []
        while True:
            t = self.token()
            if t == "]":
                return np.array(out, dtype=np.float64)
            try:
                out.append(float(t))
            except ValueError:
                raise DataError(f"{self.where}: bad number {t!r} (token {self.i})") from None

    def int32(self) -> int:
        return int(self.token())

    def double(self) -> float:
        return float(self.token())


class _Binary:
    def __init__(self, data: bytes, where: str):
        self.b = data
        self.i = 2  # after \0B
        self.where = where

    def _need(self, n: int) -> bytes:
        if self.i + n > len(self.b):
            raise DataError(f"{self.where}: unexpected end of file")
        self.i += n
        return self.b[self.i - n:self.i]

    def token(self) -> str:
        while self.b[self.i:self.i + 1] == b" ":
            self.i += 1
        j = self.b.index(b" ", self.i)
        t = self.b[self.i:j].decode()
        self.i = j + 1
        return t

    def expect(self, t: str) -> None:
        got = self.token()
        if got != t:
            raise DataError(f"{self.where}: expected {t}, found {got!r} (byte {self.i})")

    def int32(self) -> int:
        if self._need(1) != b"\x04":
            raise DataError(f"{self.where}: expected an int32 (byte {self.i})")
        return struct.unpack("<i", self._need(4))[0]

    def double(self) -> float:
        size = self._need(1)
        if size == b"\x08":
            return struct.unpack("<d", self._need(8))[0]
        if size == b"\x04":
            return struct.unpack("<f", self._need(4))[0]
        raise DataError(f"{self.where}: expected a floating-point value (byte {self.i})")

    def numbers(self) -> np.ndarray:
        kind = self.token()
        if kind not in ("DM", "FM", "DV", "FV", "DP", "FP"):
            raise DataError(f"{self.where}: expected a matrix/vector, found {kind!r} (byte {self.i})")
        dt = np.float64 if kind[0] == "D" else np.float32
        if kind[1] == "M":
            n = self.int32() * self.int32()
        else:
            n = self.int32()
            if kind[1] == "P":
                n = n * (n + 1) // 2
        raw = self._need(n * np.dtype(dt).itemsize)
        return np.frombuffer(raw, dtype=dt).astype(np.float64)


def read_kaldi_ie(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(M (C,D,S), Sigma_inv (C,D,D), w (C,), prior_offset) of a Kaldi final.ie (text or binary)."""
    data = Path(path).read_bytes()
    r = _Binary(data, str(path)) if data[:2] == b"\0B" else _Text(data, str(path))
    r.expect("<IvectorExtractor>")
    r.expect("<w>")
    if r.numbers().size:
        raise DataError(f"{path}: i-vector-dependent weights (use_weights=true) are not supported")
    r.expect("<w_vec>")
    w = r.numbers()
    r.expect("<M>")
    C = r.int32()
    if C != w.size:
        raise DataError(f"{path}: <M> has {C} Gaussians but <w_vec> has {w.size}")
    Ms = [r.numbers() for _ in range(C)]
    r.expect("<SigmaInv>")
    Ps = [r.numbers() for _ in range(C)]
    r.expect("<IvectorOffset>")
    offset = r.double()
    r.expect("</IvectorExtractor>")
    n = Ps[0].size
    D = int(round((math.sqrt(8 * n + 1) - 1) / 2))
    if D * (D + 1) // 2 != n or any(p.size != n for p in Ps):
        raise DataError(f"{path}: <SigmaInv> sizes are not D(D+1)/2 for one D")
    if Ms[0].size % D or any(m.size != Ms[0].size for m in Ms):
        raise DataError(f"{path}: <M> matrices are not all D×S with D = {D}")
    S = Ms[0].size // D
    M = np.stack(Ms).reshape(C, D, S)
    rows, cols = np.tril_indices(D)
    P = np.zeros((C, D, D))
    P[:, rows, cols] = np.stack(Ps)
    P[:, cols, rows] = np.stack(Ps)
    return M, P, w, offset


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2 or argv[0].startswith("-"):
        print(__doc__, file=sys.stderr)
        return 1
    try:
        M, P, w, o = read_kaldi_ie(argv[0])
        ie = IvectorExtractor(M, P, w, o)
        ie.save(argv[1])
    except (DataError, OSError, ValueError) as e:
        print(f"convert_kaldi_ie.py: ERROR: {e}", file=sys.stderr)
        return 1
    print(f"converted {argv[0]} -> {argv[1]}: {ie.num_gauss} Gaussians, feature dim {ie.feat_dim}, "
          f"i-vector dim {ie.ivector_dim}, prior offset {ie.prior_offset}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
