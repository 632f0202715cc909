#!/usr/bin/env python3
"""Which checkpoint of a trained network to keep, judged on speakers it never saw: every epoch's network
and the rules of ``train.select`` (``best``: the lowest validation EER on the held-out utterances of the
network's own, possibly pseudo, labels; ``last``; ``avg<k>``: the mean of the last k epochs' weights)
scored on a development data dir whose true speakers are disjoint from the training speakers.

    compare_selection.py [--rules best,last,avg3,avg5] [--device auto] <network-dir> <dev-data-dir> <out.json>

The development set is a split of the *training* speakers (e.g. ``--corpus dir --num-test-spk 20`` on
a copy of the training speakers only), never the test trials: a rule chosen on the test trials would not
carry over. Every pair of development utterances is a trial (at most ``--max-nontarget`` nontargets);
the score is the cosine after subtracting the development set's mean, as the validation of stage 8
computes it. Prints one line per epoch and per rule and writes them to ``out.json``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from sslsv.device import resolve_device
from sslsv.embed import data as edata
from sslsv.embed.trainer import (
    average_states,
    best_epoch,
    kept_epochs,
    model_from_state,
    validation_eer,
    validation_trials,
)
from sslsv.provenance import provenance
from sslsv.tables import DataError, atomic_path, c_sorted, read_scp


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rules", default="best,last,avg3,avg5")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--max-nontarget", type=int, default=200000)
    ap.add_argument("--max-frames", type=int, default=6000)
    ap.add_argument("net_dir")
    ap.add_argument("dev_dir")
    ap.add_argument("out")
    a = ap.parse_args(argv)
    try:
        import torch
        from sslsv.embed.extract import embed_all

        torch.set_num_threads(1)
        device = resolve_device(a.device)
        net, dev = Path(a.net_dir), Path(a.dev_dir)
        ckpts = sorted((net / "ckpt").glob("ep[0-9][0-9][0-9].pt"))
        if not ckpts:
            raise DataError(f"{net / 'ckpt'}: no epoch checkpoints (stage 8 not run there)")
        epochs = int(ckpts[-1].stem[2:])
        missing = [e for e in range(1, epochs + 1) if not (net / "ckpt" / f"ep{e:03d}.pt").is_file()]
        if missing:
            raise DataError(f"{net / 'ckpt'}: epochs {missing} have no checkpoint")
        states = {e: torch.load(net / "ckpt" / f"ep{e:03d}.pt", map_location="cpu", weights_only=False)
                  for e in range(1, epochs + 1)}
        cfg = states[epochs]["config"]
        feat_cfg = edata.FeatureConfig.from_dict(cfg["features"])
        utt2spk = read_scp(dev / "utt2spk")
        wav = read_scp(dev / "wav.scp")
        vad = read_scp(dev / "vad.scp") if feat_cfg.use_vad else {}
        keys = c_sorted(utt2spk)
        spk = {s: i for i, s in enumerate(sorted(set(utt2spk.values())))}
        labels = np.array([spk[utt2spk[k]] for k in keys])
        if len(spk) < 2:
            raise DataError(f"{dev / 'utt2spk'}: {len(spk)} speaker(s); a development set needs 2 or more")
        where = f"{dev / 'wav.scp'}: "
        feats = [(k, edata.utterance_features(wav[k], vad.get(k), feat_cfg, k, where=where + k))
                 for k in keys]
        ti, tj, tgt = validation_trials(labels, a.max_nontarget, 0)

        def dev_eer(model_state: dict) -> float:
            model = model_from_state({"config": cfg, "model": model_state}, device)
            embs = np.stack([e for _, e in embed_all(model, feats, device, a.max_frames)])
            return validation_eer(embs, ti, tj, tgt)

        per_epoch = {}
        for e in range(1, epochs + 1):
            per_epoch[e] = dev_eer(states[e]["model"])
            print(f"epoch {e:3d}: dev EER {per_epoch[e]:6.2f} %  (validation EER on its labels "
                  f"{states[e]['val_eer']:.2f} %)")
        rules = {}
        best = best_epoch(net / "train_log.tsv")["epoch"]
        for rule in a.rules.split(","):
            keep = kept_epochs(rule, epochs, best)
            eer = per_epoch[keep[0]] if len(keep) == 1 else dev_eer(
                average_states([states[e]["model"] for e in keep]))
            rules[rule] = {"epochs": keep, "dev_eer": eer}
            what = f"epoch {keep[0]}" if len(keep) == 1 else f"epochs {keep[0]}-{keep[-1]}"
            print(f"rule {rule:>5}: {what:>12}  dev EER {eer:6.2f} %")
        oracle = min(per_epoch, key=per_epoch.get)
        out = {"network": str(net), "dev": str(dev), "num_utts": len(keys), "num_speakers": len(spk),
               "num_trials": int(len(tgt)), "num_target": int(tgt.sum()),
               "per_epoch": {str(e): v for e, v in per_epoch.items()},
               "val_eer": {str(e): float(states[e]["val_eer"]) for e in per_epoch},
               "rules": rules, "oracle": {"epoch": oracle, "dev_eer": per_epoch[oracle]}, **provenance()}
        with atomic_path(Path(a.out)) as tmp:
            tmp.write_text(json.dumps(out, indent=2) + "\n")
    except (DataError, ValueError, OSError) as e:
        print(f"compare_selection.py: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
