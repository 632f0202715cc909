#!/usr/bin/env python3
"""Kaldi data-dir tools; the utils/*.sh front ends call this with a sub-command.

  datadir.py validate [--no-feats] [--no-wav] [--no-spk-sort] [--check-audio] [--sample-rate R]
                      [--min-samples N] [--run-pipes] <data>
  datadir.py fix [--check-audio] [--sample-rate R] [--min-samples N] [--run-pipes] <data>
  datadir.py split [--per-utt] <data> <num-parts>
  datadir.py subset [--utt-list F | --spk-list F | --first N | --last N | --shortest N | --longest N |
                     --per-spk N] [--seed S] <src> [<num-utt>] <dest>
  datadir.py combine <dest> <src1> <src2> ...
  datadir.py utt2spk-to-spk2utt < utt2spk > spk2utt      (and spk2utt-to-utt2spk)

See sslsv.datadir for what each does.
"""

from __future__ import annotations

import argparse
import sys

from sslsv.datadir import (
    combine_data,
    fix_data_dir,
    spk2utt_to_utt2spk,
    split_data,
    subset_data_dir,
    utt2spk_to_spk2utt,
    validate_data_dir,
)
from sslsv.tables import DataError

PROG = {"validate": "validate_data_dir.sh", "fix": "fix_data_dir.sh", "split": "split_data.sh",
        "subset": "subset_data_dir.sh", "combine": "combine_data.sh",
        "utt2spk-to-spk2utt": "utt2spk_to_spk2utt.sh", "spk2utt-to-utt2spk": "spk2utt_to_utt2spk.sh"}
FLAGS = {"--no-feats", "--no-wav", "--no-text", "--no-spk-sort", "--check-audio", "--run-pipes", "--per-utt"}
COUNT_OPTS = {"--first", "--last", "--shortest", "--longest", "--per-spk"}
KALDI_FORM = "N"  # marks a Kaldi-style count option whose count is the middle positional argument


def _kaldi_argv(argv: list[str]) -> list[str]:
    """Accept Kaldi spellings: ``--check-audio true|false`` for flags, and ``--first <src> <N> <dest>``
    (count option without a value, the count between the two dirs) for subset."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        tok = argv[i]
        nxt = argv[i + 1] if i + 1 < len(argv) else None
        if tok in FLAGS and nxt in ("true", "false"):
            if nxt == "true":
                out.append(tok)
            i += 2
            continue
        if tok in COUNT_OPTS and not (nxt or "").isdigit():
            out.append(f"{tok}={KALDI_FORM}")
        else:
            out.append(tok)
        i += 1
    return out


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="datadir.py", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)

    def audio_opts(p: argparse.ArgumentParser) -> None:
        p.add_argument("--check-audio", action="store_true",
                       help="check every wav.scp entry: present, readable, mono, non-empty (headers only)")
        p.add_argument("--sample-rate", type=int, default=None, help="with --check-audio: required rate")
        p.add_argument("--min-samples", type=int, default=0, help="with --check-audio: minimum length")
        p.add_argument("--run-pipes", action="store_true",
                       help="with --check-audio: run pipe entries instead of checking them statically")
        p.add_argument("--jobs", type=int, default=None, help="threads for the audio check")

    p = sub.add_parser("validate", prog=PROG["validate"], help="check a data dir")
    p.add_argument("--no-feats", action="store_true", help="feats.scp is not required")
    p.add_argument("--no-wav", action="store_true", help="wav.scp is not required")
    p.add_argument("--no-text", action="store_true", help="accepted as in Kaldi (text is optional)")
    p.add_argument("--no-spk-sort", action="store_true",
                   help="do not require utt2spk to be sorted by speaker as well as by utterance")
    audio_opts(p)
    p.add_argument("data")

    p = sub.add_parser("fix", prog=PROG["fix"], help="repair a data dir in place")
    audio_opts(p)
    p.add_argument("data")

    p = sub.add_parser("split", prog=PROG["split"], help="split a data dir into parts")
    p.add_argument("--per-utt", action="store_true", help="split by utterance, not by speaker")
    p.add_argument("data")
    p.add_argument("num", type=int)

    p = sub.add_parser("subset", prog=PROG["subset"], help="copy a subset of a data dir")
    p.add_argument("--utt-list", help="file whose first column lists the utterances to keep")
    p.add_argument("--spk-list", help="file whose first column lists the speakers to keep")
    for opt, what in (("first", "the first N utterances"), ("last", "the last N utterances"),
                      ("shortest", "the N shortest (utt2num_frames, else utt2dur)"),
                      ("longest", "the N longest (utt2num_frames, else utt2dur)"),
                      ("per-spk", "the first N utterances of each speaker")):
        p.add_argument(f"--{opt}", metavar="N", help=what)
    p.add_argument("--seed", type=int, default=0, help="seed of the random choice (no other option)")
    p.add_argument("dirs", nargs="+", metavar="<src> [<N>] <dest>")

    p = sub.add_parser("combine", prog=PROG["combine"], help="union of data dirs")
    p.add_argument("dest")
    p.add_argument("srcs", nargs="+")

    sub.add_parser("utt2spk-to-spk2utt", prog=PROG["utt2spk-to-spk2utt"], help="stdin utt2spk -> spk2utt")
    sub.add_parser("spk2utt-to-utt2spk", prog=PROG["spk2utt-to-utt2spk"], help="stdin spk2utt -> utt2spk")
    return ap


def _subset(a: argparse.Namespace) -> str:
    counts = {k: getattr(a, k) for k in ("first", "last", "shortest", "longest", "per_spk")
              if getattr(a, k) is not None}
    if len(a.dirs) == 3:
        src, n, dest = a.dirs
        if not n.isdigit():
            raise DataError(f"expected <src> <num-utt> <dest>, got a non-numeric count {n!r}")
        kaldi = [k for k, v in counts.items() if v == KALDI_FORM]
        if len(counts) > 1 or (counts and not kaldi) or a.utt_list or a.spk_list:
            raise DataError("give the count either as an option value or as <src> <N> <dest>, not both")
        selection = {kaldi[0]: int(n)} if kaldi else {"num_random": int(n), "seed": a.seed}
    elif len(a.dirs) == 2:
        src, dest = a.dirs
        if any(v == KALDI_FORM for v in counts.values()):
            raise DataError("a count option needs a number (--longest N <src> <dest>)")
        selection = {k: int(v) for k, v in counts.items()}
        selection.update({k: getattr(a, k) for k in ("utt_list", "spk_list") if getattr(a, k)})
    else:
        raise DataError("usage: subset_data_dir.sh [options] <src> [<num-utt>] <dest>")
    r = subset_data_dir(src, dest, **selection)
    for note in r.notes:
        print(f"{PROG['subset']}: warning: {note}", file=sys.stderr)
    return f"{dest}: {r.utterances} utterances, {r.speakers} speakers (from {src})"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    a = _parser().parse_args(_kaldi_argv(argv))
    prog = PROG[a.cmd]
    try:
        if a.cmd == "validate":
            s = validate_data_dir(a.data, require_feats=not a.no_feats, require_wav=not a.no_wav,
                                  spk_sort=not a.no_spk_sort, check_audio_files=a.check_audio,
                                  sample_rate=a.sample_rate, min_samples=a.min_samples,
                                  run_pipes=a.run_pipes, jobs=a.jobs)
            audio = f"; audio of {s.audio_checked} entries checked" if a.check_audio else ""
            print(f"{prog}: successfully validated data dir {a.data} ({s.utterances} utterances, "
                  f"{s.speakers} speakers{audio})")
        elif a.cmd == "fix":
            r = fix_data_dir(a.data, check_audio_files=a.check_audio, sample_rate=a.sample_rate,
                             min_samples=a.min_samples, run_pipes=a.run_pipes, jobs=a.jobs)
            print(f"{prog}: {r.summary()}", file=sys.stderr)
        elif a.cmd == "split":
            split_data(a.data, a.num, a.per_utt)
        elif a.cmd == "subset":
            print(f"{prog}: {_subset(a)}", file=sys.stderr)
        elif a.cmd == "combine":
            r = combine_data(a.dest, a.srcs)
            for note in r.notes:
                print(f"{prog}: warning: {note}", file=sys.stderr)
            print(f"{prog}: combined {len(a.srcs)} data dirs into {a.dest} ({r.utterances} utterances, "
                  f"{r.speakers} speakers)", file=sys.stderr)
        else:
            convert = utt2spk_to_spk2utt if a.cmd == "utt2spk-to-spk2utt" else spk2utt_to_utt2spk
            for line in convert(sys.stdin):
                sys.stdout.write(line + "\n")
    except DataError as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
