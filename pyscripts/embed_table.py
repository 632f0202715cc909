#!/usr/bin/env python3
"""Markdown table of the speaker-verification results of a corpus: every embedding system of stage 9
(exp/<name>/embed/*/scores/result.json) beside the i-vector baselines of stage 5, with the accuracy of
the pseudo labels each network was trained on (exp/<name>/cluster/<method>_c<C>/metrics.json).

    embed_table.py [--out table.md] <exp-dir>
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _load(p: Path) -> dict | None:
    return json.loads(p.read_text()) if p.is_file() else None


def rows(exp: Path) -> list[list[str]]:
    out = []
    for name, label in (("ivector_cosine", "i-vector, cosine (no labels)"),
                        ("ivector_plda_supervised", "i-vector, LDA+PLDA (true labels)")):
        r = _load(exp / "scores" / name / "result.json")
        if r:
            out.append([label, "–", "–", f"{r['eer']:.2f}", f"{r['min_dcf_0.01']:.3f}", "–", "–"])
    for res in sorted((exp / "embed").glob("*/scores/result.json")):
        r = json.loads(res.read_text())
        system = res.parent.parent.name
        labels = system.split("_ecapa")[0] if "_ecapa" in system else system
        acc = "1.000 (true)" if labels == "supervised" else "?"
        m = _load(exp / "cluster" / labels / "metrics.json")
        if m:
            acc = f"{m['metrics']['acc']:.3f}"
        train = _load(res.parent.parent / "final.json") or {}
        epoch = f"{train.get('final_epoch', '?')}/{train.get('epochs', '?')}"
        c, a = r["cosine"], r["asnorm"]
        out.append([system, acc, epoch, f"{c['eer']:.2f}", f"{c['min_dcf_0.01']:.3f}", f"{a['eer']:.2f}",
                    f"{a['min_dcf_0.01']:.3f}"])
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=None)
    ap.add_argument("exp")
    a = ap.parse_args(argv)
    head = ["system", "label ACC", "epoch (best/all)", "cosine EER %", "minDCF 0.01", "AS-norm EER %",
            "minDCF 0.01"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows(Path(a.exp))]
    text = "\n".join(lines) + "\n"
    if a.out:
        Path(a.out).write_text(text)
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
