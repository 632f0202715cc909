"""One parallel job of stage 1: MFCC for the utterances of a (split) ``wav.scp``, or VAD for those of
a (split) ``feats.scp``. Each job writes its ark/scp atomically and a done-stamp, so a rerun after a
kill redoes only the jobs that had not finished, and writes byte-identical archives."""

from __future__ import annotations

import argparse
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import kaldiio
import numpy as np

from .. import stamp
from ..audio import audio_info, is_pipe, read_audio
from ..tables import DataError, read_scp, write_lines
from .archive import ArkScpWriter
from .kaldi_options import MfccConfig, VadConfig, format_options
from .mfcc import compute_mfcc, frame_length_samples
from .vad import compute_vad

log = logging.getLogger(__name__)


def scp_locations(scp: str | os.PathLike, source_scp: str | os.PathLike | None = None
                  ) -> list[tuple[str, str, str]]:
    """``[(key, value, "file:line"), ...]`` of an scp in file order. With ``source_scp`` (the unsplit
    file a split was cut from) the locations name lines of that file, which the user can find."""
    table = read_scp(scp)
    where = {k: f"{scp}:{i}" for i, k in enumerate(table, 1)}
    if source_scp is not None and Path(source_scp).is_file():
        src = read_scp(source_scp)
        lines = {k: f"{source_scp}:{i}" for i, k in enumerate(src, 1)}
        where = {k: lines.get(k, w) for k, w in where.items()}
    return [(k, v, where[k]) for k, v in table.items()]


def job_parser(description: str, tool: str, input_name: str) -> argparse.ArgumentParser:
    """The command line both job commands share: ``--config`` (a Kaldi option file of ``tool``),
    ``--source-scp`` (the unsplit input, so errors name its lines), ``--done-stamp``, ``--stamp-input``
    and ``<input_name> <ark> <scp>``; the command adds its own options. Parse with :func:`parse_job_args`."""
    ap = argparse.ArgumentParser(description=description, allow_abbrev=False,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", help=f"Kaldi option file ({tool} options)")
    ap.add_argument("--source-scp", help=f"the unsplit {input_name}, so errors name its lines")
    ap.add_argument("--done-stamp", help="skip if this stamp matches inputs/options; write it when done")
    ap.add_argument("--stamp-input", action="append", default=[],
                    help="extra file whose content the done-stamp covers")
    ap.add_argument("input", metavar=input_name)
    ap.add_argument("ark")
    ap.add_argument("scp")
    return ap


def parse_job_args(ap: argparse.ArgumentParser, argv: list[str] | None
                   ) -> tuple[argparse.Namespace, list[str], tuple[str, ...]]:
    """``(args, kaldi_options, stamp_inputs)``: Kaldi options ride along as ``--name=value`` (they
    override the config file, as in Kaldi); the stamp covers the config file and every --stamp-input."""
    args, rest = ap.parse_known_args(argv)
    bad = [r for r in rest if not (r.startswith("--") and "=" in r)]
    if bad:
        ap.error(f"unexpected arguments {bad} (Kaldi options are given as --name=value)")
    return args, rest, tuple(args.stamp_input) + ((args.config,) if args.config else ())


def _outputs_exist(paths: list[Path]) -> bool:
    return all(p.is_file() for p in paths)


@dataclass
class JobResult:
    """What a job did: utterances written and skipped, frames, audio seconds, CPU seconds."""

    written: int = 0
    skipped: int = 0
    frames: int = 0
    voiced: int = 0
    audio_s: float = 0.0
    cpu_s: float = 0.0
    reused: bool = False


def mfcc_job(wav_scp: str | os.PathLike, cfg: MfccConfig, ark: str | os.PathLike, scp: str | os.PathLike,
             *, compress: bool = False, skip_short: bool = False,
             utt2num_frames: str | os.PathLike | None = None, utt2dur: str | os.PathLike | None = None,
             source_scp: str | os.PathLike | None = None, done_stamp: str | os.PathLike | None = None,
             stamp_inputs: tuple[str, ...] = ()) -> JobResult:
    """Compute MFCC for every entry of ``wav_scp`` into ``ark``/``scp`` (and the per-utterance
    ``utt2num_frames``/``utt2dur`` tables).

    File entries are checked first (sample rate, length) so a bad file fails before any work; pipe
    entries are checked as they are decoded. Audio shorter than one frame is an error naming the
    ``wav.scp`` line, unless ``skip_short`` (then it is logged and left out, for fix_data_dir).
    If ``done_stamp`` records the same inputs and options and the outputs exist, nothing is redone.
    """
    outputs = [Path(p) for p in (ark, scp, utt2num_frames, utt2dur) if p is not None]
    opts = " ".join(format_options(cfg) + [f"compress={compress}", f"skip_short={skip_short}",
                                           *map(str, outputs)])
    inputs = [str(wav_scp), *stamp_inputs]
    if done_stamp is not None and _outputs_exist(outputs) and stamp.is_done(done_stamp, inputs, opts):
        log.info(f"mfcc_job: {scp} is up to date ({done_stamp}); nothing to do")
        return JobResult(reused=True)
    t_cpu = time.process_time()
    entries = scp_locations(wav_scp, source_scp)
    min_samples = frame_length_samples(cfg)

    def too_short(n: int, rate: int, where: str, utt: str) -> bool:
        if n / rate < cfg.min_duration:         # Kaldi warns and skips these
            log.warning(f"{where}: utterance {utt}: {n / rate:.3f} s is shorter than "
                 f"--min-duration={cfg.min_duration:g}; skipped")
            return True
        if n * cfg.sample_frequency / rate >= min_samples:
            return False
        why = (f"{n} samples ({n / rate:.3f} s) is shorter than one {cfg.frame_length:g} ms frame "
               f"({min_samples} samples)")
        if skip_short:
            log.warning(f"{where}: utterance {utt}: {why}; skipped")
            return True
        raise DataError(f"{where}: utterance {utt}: {why} (use --skip-short true to drop it)")

    def check_rate(rate: int, where: str) -> None:
        ok = rate == cfg.sample_frequency or (rate > cfg.sample_frequency and cfg.allow_downsample) or \
            (rate < cfg.sample_frequency and cfg.allow_upsample)
        if not ok:
            raise DataError(f"{where}: sample rate {rate} Hz differs from --sample-frequency="
                            f"{cfg.sample_frequency:g} in the MFCC config (resample in wav.scp, e.g. "
                            f"'sox in.flac -r {cfg.sample_frequency:g} -t wav - |')")

    skip: dict[str, float] = {}                 # skipped utterance -> duration (utt2dur stays complete)
    for utt, entry, where in entries:          # cheap header checks before any decoding
        if not is_pipe(entry):
            n, rate, _ = audio_info(entry, where)
            check_rate(rate, where)
            if too_short(n, rate, where, utt):
                skip[utt] = n / rate

    n2f: list[str] = []
    n2d: list[str] = []
    res = JobResult()
    last = time.monotonic()
    with ArkScpWriter(ark, scp, compress=compress) as w:
        for i, (utt, entry, where) in enumerate(entries, 1):
            if utt in skip:
                n2d.append(f"{utt} {skip[utt]:.6g}")
                res.skipped += 1
                continue
            x, rate = read_audio(entry, where)
            check_rate(rate, where)
            if is_pipe(entry) and too_short(len(x), rate, where, utt):
                n2d.append(f"{utt} {len(x) / rate:.6g}")
                res.skipped += 1
                continue
            feats = compute_mfcc(x, rate, cfg, utt_id=utt, where=where)
            if feats.shape[0] == 0:             # cannot happen after the length check; be safe
                raise DataError(f"{where}: utterance {utt}: no frames")
            w.write(utt, feats)
            n2f.append(f"{utt} {feats.shape[0]}")
            n2d.append(f"{utt} {len(x) / rate:.6g}")
            res.written += 1
            res.frames += feats.shape[0]
            res.audio_s += len(x) / rate
            if time.monotonic() - last > 30:
                log.info(f"mfcc_job: {i}/{len(entries)} utterances")
                last = time.monotonic()
        if utt2num_frames is not None:
            write_lines(utt2num_frames, n2f)
        if utt2dur is not None:
            write_lines(utt2dur, n2d)
    res.cpu_s = time.process_time() - t_cpu
    if done_stamp is not None:
        stamp.mark_done(done_stamp, inputs, opts)
    log.info(f"mfcc_job: wrote {res.written} utterances ({res.frames} frames, {res.audio_s:.1f} s of audio) "
         f"to {ark}; skipped {res.skipped}; {res.cpu_s:.1f} CPU s")
    return res


def vad_job(feats_scp: str | os.PathLike, cfg: VadConfig, ark: str | os.PathLike, scp: str | os.PathLike,
            *, stats: str | os.PathLike | None = None, source_scp: str | os.PathLike | None = None,
            done_stamp: str | os.PathLike | None = None, stamp_inputs: tuple[str, ...] = ()) -> JobResult:
    """Energy VAD for every matrix of ``feats_scp`` into ``ark``/``scp``; ``stats`` gets one line
    ``<utterances> <frames> <voiced-frames> <utterances-without-voiced-frames>``."""
    outputs = [Path(p) for p in (ark, scp, stats) if p is not None]
    opts = " ".join(format_options(cfg) + [*map(str, outputs)])
    t_cpu = time.process_time()
    entries = scp_locations(feats_scp, source_scp)
    # the archives the features live in are inputs too: recomputed features must redo the VAD
    arks = sorted({v.rsplit(":", 1)[0] for _, v, _ in entries if not v.rstrip().endswith("|")})
    inputs = [str(feats_scp), *stamp_inputs, *arks]
    if done_stamp is not None and _outputs_exist(outputs) and stamp.is_done(done_stamp, inputs, opts):
        log.info(f"vad_job: {scp} is up to date ({done_stamp}); nothing to do")
        return JobResult(reused=True)
    res = JobResult()
    unvoiced = 0
    with ArkScpWriter(ark, scp) as w:
        for utt, value, where in entries:
            try:
                feats = kaldiio.load_mat(value)
            except Exception as e:  # noqa: BLE001 - kaldiio raises many types for a bad entry
                raise DataError(f"{where}: cannot read features {value!r}: {e}") from e
            vad = compute_vad(np.asarray(feats), cfg, where)
            nv = int(vad.sum())
            if nv == 0:
                unvoiced += 1
                log.warning(f"{where}: utterance {utt} has no voiced frames")
                if cfg.omit_unvoiced_utts:
                    res.skipped += 1
                    continue
            w.write(utt, vad)
            res.written += 1
            res.frames += len(vad)
            res.voiced += nv
        if stats is not None:
            write_lines(stats, [f"{res.written} {res.frames} {res.voiced} {unvoiced}"])
    res.cpu_s = time.process_time() - t_cpu
    if done_stamp is not None:
        stamp.mark_done(done_stamp, inputs, opts)
    frac = res.voiced / res.frames if res.frames else 0.0
    log.info(f"vad_job: wrote {res.written} VAD vectors to {ark}: {res.voiced} of {res.frames} frames voiced "
         f"({100 * frac:.1f} %); {unvoiced} utterances without voiced frames")
    return res
