#!/usr/bin/env python3
"""Speaker embeddings of a data dir with a trained network (the worker of steps/extract_embeddings.sh).

    extract_embeddings.py [--device auto] [--part J/N] [--max-frames 6000] <model.pt> <data-dir> <ark> <scp>

Per utterance: the features the network was trained on (its config's features section: MFCC of the
voiced samples when the training used VAD, dither 0), CMN over the utterance, one forward per utterance
(long ones by windows, sslsv.embed.extract); the unnormalised 192-dim embedding is written as a Kaldi
float vector. Prints utterances/s and the real-time factor.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from sslsv.device import resolve_device
from sslsv.embed import data as edata
from sslsv.embed.extract import embed_all
from sslsv.embed.trainer import load_final
from sslsv.features.archive import ArkScpWriter
from sslsv.ivector.extractor_opts import part_utts
from sslsv.tables import DataError, c_sorted, read_scp


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--part", default=None, help="J/N: the J-th of N parts of wav.scp")
    ap.add_argument("--num-threads", type=int, default=1, help="torch CPU threads of this job")
    ap.add_argument("--max-frames", type=int, default=6000, help="longer utterances are embedded by windows")
    ap.add_argument("model")
    ap.add_argument("data_dir")
    ap.add_argument("ark")
    ap.add_argument("scp")
    a = ap.parse_args(argv)
    try:
        import torch

        # One thread per job (the step runs --nj jobs side by side, as Kaldi's do): several OpenMP
        # threads per job on busy cores spin against each other and ran 20x slower here.
        torch.set_num_threads(a.num_threads)
        device = resolve_device(a.device)
        model = load_final(a.model, device)
        cfg = torch.load(a.model, map_location="cpu", weights_only=False)["config"]
        feat_cfg = edata.FeatureConfig.from_dict(cfg["features"])
        data = Path(a.data_dir)
        wav = read_scp(data / "wav.scp")
        vad = read_scp(data / "vad.scp") if feat_cfg.use_vad else {}
        keys = part_utts(data, a.part, table="wav.scp")
        if keys is None:
            keys = c_sorted(wav)
        if feat_cfg.use_vad:
            missing = [k for k in keys if k not in vad]
            if missing:
                raise DataError(f"{data / 'vad.scp'}: no VAD for {len(missing)} utterances, e.g. "
                                f"{missing[0]} (the network was trained on voiced frames; run stage 1)")
        frames = 0
        t0 = time.perf_counter()

        def feats():
            nonlocal frames
            for k in keys:
                where = f"{data / 'wav.scp'}: {k}"
                f = edata.utterance_features(wav[k], vad.get(k), feat_cfg, k, where=where)
                frames += len(f)
                yield k, f

        with ArkScpWriter(a.ark, a.scp) as w:
            for k, e in embed_all(model, feats(), device, a.max_frames):
                w.write(k, e.astype(np.float32))
        dt = time.perf_counter() - t0
        audio_s = frames * 0.01
        print(f"extract_embeddings.py: {len(keys)} utterances ({audio_s:.0f} s of "
              f"{'voiced ' if feat_cfg.use_vad else ''}audio) in {dt:.1f} s on {device}: "
              f"{len(keys) / dt:.1f} utt/s, real-time factor {dt / max(audio_s, 1e-9):.4f}", file=sys.stderr)
    except (DataError, ValueError) as e:
        print(f"extract_embeddings.py: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
