"""Kaldi GMM text format (``gmm-global-copy --binary=false``, ``fgmm-global-copy --binary=false``) to and
from our :class:`DiagGmm` / :class:`FullGmm`.

Kaldi writes the natural (precision) form, float32 printed as text::

    <DiagGMM>
    <GCONSTS>  [ g_0 ... g_{C-1} ]
    <WEIGHTS>  [ w_0 ... ]
    <MEANS_INVVARS>  [
      (μ_c/σ²_c, one row of D per component) ]
    <INV_VARS>  [
      (1/σ²_c, one row per component) ]
    </DiagGMM>

    <FullGMM>
    <GCONSTS>  [ ... ]  <WEIGHTS>  [ ... ]
    <MEANS_INVCOVARS>  [ (P_c μ_c rows) ]
    <INV_COVARS>  [ lower triangle of P_0, row by row: P(0,0) / P(1,0) P(1,1) / ... ]
                  [ P_1 ... ]  ... one bracketed packed matrix per component
    </FullGMM>

The reader only relies on the tokens and the ``[ ... ]`` groups (line breaks and spacing do not matter),
recovers ``σ² = 1/inv_var``, ``μ = σ² ⊙ means_invvars`` (diag) or ``Σ = P⁻¹``, ``μ = Σ (Pμ)`` (full),
and checks the stored ``<GCONSTS>`` against the recomputed ones. Binary models (they start with
``\\0B``) must first be dumped with ``--binary=false``.
"""

from __future__ import annotations

import math

import numpy as np

from ..tables import DataError
from .gmm import DiagGmm, FullGmm

LOG_2PI = math.log(2.0 * math.pi)


def _groups(text: str, where: str) -> tuple[str, dict[str, list[np.ndarray]]]:
    toks = text.replace("[", " [ ").replace("]", " ] ").split()
    if not toks:
        raise DataError(f"{where}: empty model file")
    kind = toks[0]
    out: dict[str, list[np.ndarray]] = {}
    cur: str | None = None
    i = 1
    while i < len(toks):
        t = toks[i]
        if t.startswith("</"):
            break
        if t.startswith("<"):
            cur = t
            out[cur] = []
            i += 1
        elif t == "[":
            j = toks.index("]", i)
            if cur is None:
                raise DataError(f"{where}: numbers before any <TOKEN>")
            try:
                out[cur].append(np.array([float(v) for v in toks[i + 1:j]], dtype=np.float64))
            except ValueError as e:
                raise DataError(f"{where}: bad number in {cur}: {e}") from e
            i = j + 1
        else:
            raise DataError(f"{where}: unexpected token {t!r}")
    return kind, out


def _need(groups: dict[str, list[np.ndarray]], key: str, where: str) -> list[np.ndarray]:
    if key not in groups or not groups[key]:
        raise DataError(f"{where}: no {key} in the model")
    return groups[key]


def read_kaldi_gmm_text(text: str, where: str = "<text>", gconst_tol: float = 1e-2) -> DiagGmm | FullGmm:
    """Parse a Kaldi text ``<DiagGMM>`` or ``<FullGMM>`` dump (see the module docstring)."""
    if text.startswith("\0B"):
        raise DataError(f"{where}: binary Kaldi model; dump it with gmm-global-copy/fgmm-global-copy "
                        "--binary=false first")
    kind, g = _groups(text, where)
    weights = _need(g, "<WEIGHTS>", where)[0]
    c = weights.shape[0]
    gconsts = g.get("<GCONSTS>", [None])[0]
    if kind == "<DiagGMM>":
        miv = _need(g, "<MEANS_INVVARS>", where)[0]
        iv = _need(g, "<INV_VARS>", where)[0]
        if c == 0 or miv.size % c or iv.size != miv.size:
            raise DataError(f"{where}: sizes of <WEIGHTS> ({c}), <MEANS_INVVARS> ({miv.size}) and <INV_VARS> "
                            f"({iv.size}) do not fit")
        iv = iv.reshape(c, -1)
        var = 1.0 / iv
        gmm: DiagGmm | FullGmm = DiagGmm(weights, miv.reshape(c, -1) * var, var)
        mine = (np.log(weights) - 0.5 * (iv.shape[1] * LOG_2PI - np.log(iv).sum(1)
                                         + (miv.reshape(c, -1) ** 2 * var).sum(1)))
    elif kind == "<FullGMM>":
        mic = _need(g, "<MEANS_INVCOVARS>", where)[0]
        packed = _need(g, "<INV_COVARS>", where)
        if c == 0 or mic.size % c:
            raise DataError(f"{where}: sizes of <WEIGHTS> ({c}) and <MEANS_INVCOVARS> ({mic.size}) "
                            "do not fit")
        d = mic.size // c
        if len(packed) != c or any(p.size != d * (d + 1) // 2 for p in packed):
            raise DataError(f"{where}: expected {c} packed {d}x{d} matrices in <INV_COVARS>")
        r, cc = np.tril_indices(d)
        prec = np.zeros((c, d, d))
        prec[:, r, cc] = np.stack(packed)
        prec[:, cc, r] = np.stack(packed)
        cov = np.linalg.inv(prec)
        cov = 0.5 * (cov + cov.transpose(0, 2, 1))
        mic = mic.reshape(c, d)
        means = np.einsum("cij,cj->ci", cov, mic)
        gmm = FullGmm(weights, means, cov)
        _, logdet_p = np.linalg.slogdet(prec)
        mine = np.log(weights) - 0.5 * (d * LOG_2PI - logdet_p + (mic * means).sum(1))
    else:
        raise DataError(f"{where}: expected <DiagGMM> or <FullGMM>, found {kind!r}")
    if gconsts is not None:
        if gconsts.shape != mine.shape:
            raise DataError(f"{where}: <GCONSTS> has {gconsts.size} values for {c} components")
        diff = float(np.max(np.abs(gconsts - mine) / np.maximum(1.0, np.abs(mine))))
        if diff > gconst_tol:
            raise DataError(f"{where}: stored <GCONSTS> differ from the recomputed ones (max relative "
                            f"difference {diff:.3g}); the file is inconsistent")
    return gmm


def _vec(v: np.ndarray) -> str:
    return " [ " + " ".join(f"{x:.9g}" for x in v) + " ]\n"


def _mat(m: np.ndarray) -> str:
    return " [" + "".join("\n  " + " ".join(f"{x:.9g}" for x in row) + " " for row in m) + "]\n"


def write_kaldi_gmm_text(gmm: DiagGmm | FullGmm) -> str:
    """Kaldi's text form of the model (readable by ``gmm-global-copy`` / ``fgmm-global-copy``)."""
    d = gmm.dim
    if isinstance(gmm, DiagGmm):
        iv = 1.0 / gmm.vars
        g = np.log(gmm.weights) - 0.5 * (d * LOG_2PI + np.log(gmm.vars).sum(1) + (gmm.means ** 2 * iv).sum(1))
        return ("<DiagGMM> \n<GCONSTS> " + _vec(g) + "<WEIGHTS> " + _vec(gmm.weights)
                + "<MEANS_INVVARS> " + _mat(gmm.means * iv) + "<INV_VARS> " + _mat(iv) + "</DiagGMM> \n")
    prec = np.linalg.inv(gmm.covars)
    pmu = np.einsum("cij,cj->ci", prec, gmm.means)
    _, logdet = np.linalg.slogdet(gmm.covars)
    g = np.log(gmm.weights) - 0.5 * (d * LOG_2PI + logdet + (pmu * gmm.means).sum(1))
    parts = ["<FullGMM> \n<GCONSTS> ", _vec(g), "<WEIGHTS> ", _vec(gmm.weights), "<MEANS_INVCOVARS> ",
             _mat(pmu), "<INV_COVARS> "]
    for p in prec:
        parts.append(" [\n" + "".join(" ".join(f"{p[i, j]:.9g}" for j in range(i + 1)) + " \n"
                                      for i in range(d)) + "]\n")
    parts.append("</FullGMM> \n")
    return "".join(parts)
