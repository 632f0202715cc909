"""VoxCeleb1 and VoxCeleb2 as Kaldi data dirs, with the official trial lists.

Audio trees (as distributed): VoxCeleb1 ``<vox1>/wav/idXXXXX/<ytid>/<nnnnn>.wav`` (dev and test in one
tree; ``<vox1>/dev/wav`` and ``<vox1>/test/wav`` are read too), VoxCeleb2 dev
``<vox2>/dev/aac/idXXXXX/<ytid>/<nnnnn>.m4a`` (or ``<vox2>/aac/...``). Utterance ids are
``idXXXXX-<ytid>-<nnnnn>``, as in Kaldi's ``make_voxceleb1_v2.pl`` / ``make_voxceleb2.pl``.

Trial lists (``<1|0> id10270/x6uYqmx31kE/00001.wav id10270/8jEAjG6SegY/00008.wav``) are converted to
Kaldi form (``/`` -> ``-``, ``.wav`` stripped, ``target|nontarget``): ``veri_test.txt`` (or Kaldi's
``voxceleb1_test_v2.txt``), ``list_test_all.txt``, ``list_test_hard.txt`` become ``trials_O``,
``trials_E``, ``trials_H``; the cleaned ``veri_test2.txt``, ``list_test_all2.txt``,
``list_test_hard2.txt`` become ``trials_O_clean``, ``trials_E_clean``, ``trials_H_clean``.

Speaker policy. The test set holds every VoxCeleb1 utterance of the speakers named in the trial lists
found. With only Vox1-O lists those are the 40 VoxCeleb1 test speakers, and training is VoxCeleb2 dev plus
VoxCeleb1 dev (the other VoxCeleb1 speakers). With Vox1-E or Vox1-H lists (which name all 1,251
VoxCeleb1 speakers) the test set is every VoxCeleb1 speaker in the lists and training is VoxCeleb2 dev
only, as in the literature; a VoxCeleb1 speaker in no list is then not used at all. The sets never share
a speaker.
"""

from __future__ import annotations

import os
import shlex
import struct
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import soundfile as sf
from tqdm import tqdm

from ..tables import DataError, atomic_path, c_sorted
from .common import summary, utt2dur_of, write_corpus

NAME = "voxceleb"
VOX1_TREES = ("wav", "dev/wav", "test/wav")
VOX2_TREES = ("dev/aac", "aac")
# official file -> Kaldi trials name, in order of preference for the default "trials"
TRIAL_LISTS = (
    ("veri_test2.txt", "trials_O_clean"),
    ("veri_test.txt", "trials_O"),
    ("voxceleb1_test_v2.txt", "trials_O"),
    ("list_test_all2.txt", "trials_E_clean"),
    ("list_test_all.txt", "trials_E"),
    ("list_test_hard2.txt", "trials_H_clean"),
    ("list_test_hard.txt", "trials_H"),
)

Trial = tuple[str, str, str]


def scan_tree(tree: str | os.PathLike, ext: str) -> dict[str, str]:
    """Map ``spk-ytid-nnnnn`` to the absolute path of every ``<tree>/<spk>/<ytid>/<nnnnn><ext>``."""
    tree = Path(os.path.abspath(tree))
    out: dict[str, str] = {}
    for spk in sorted(os.scandir(tree), key=lambda e: e.name):
        if not spk.is_dir() or spk.name.startswith("."):
            continue
        for vid in sorted(os.scandir(spk.path), key=lambda e: e.name):
            if not vid.is_dir() or vid.name.startswith("."):
                continue
            for f in os.scandir(vid.path):
                if not f.name.endswith(ext) or f.name.startswith("."):
                    continue
                utt = f"{spk.name}-{vid.name}-{f.name[:-len(ext)]}"
                if any(c.isspace() for c in utt):
                    raise DataError(f"{f.path}: whitespace in the path; Kaldi ids cannot hold it")
                out[utt] = f.path
    return out


def find_trees(root: str | os.PathLike, candidates: tuple[str, ...], what: str) -> list[Path]:
    """The audio trees under ``root`` among ``candidates``; an error when there is none."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{what}: {root}: no such directory")
    trees = [root / c for c in candidates if (root / c).is_dir()]
    if not trees:
        raise DataError(f"{what}: {root}: none of {', '.join(candidates)} exists")
    return trees


def scan_vox1(vox1: str | os.PathLike) -> dict[str, str]:
    """All VoxCeleb1 utterances (WAV) by utterance id."""
    out: dict[str, str] = {}
    for tree in find_trees(vox1, VOX1_TREES, "VoxCeleb1"):
        for utt, path in scan_tree(tree, ".wav").items():
            if utt in out:
                raise DataError(f"{path}: utterance {utt} also at {out[utt]}")
            out[utt] = path
    if not out:
        raise DataError(f"VoxCeleb1: no <spk>/<ytid>/<nnnnn>.wav files under {vox1}")
    return out


def scan_vox2(vox2: str | os.PathLike) -> dict[str, str]:
    """All VoxCeleb2 dev utterances (m4a) by utterance id (``dev/aac`` if present, else ``aac``)."""
    tree = find_trees(vox2, VOX2_TREES, "VoxCeleb2")[0]
    out = scan_tree(tree, ".m4a")
    if not out:
        raise DataError(f"VoxCeleb2: no <spk>/<ytid>/<nnnnn>.m4a files under {tree}")
    return out


def read_trial_list(path: str | os.PathLike, utts: dict[str, str] | set[str]) -> list[Trial]:
    """Read an official VoxCeleb trial list as Kaldi trials, checking every line: three fields, a 0/1
    label that agrees with the speakers, and utterances present in ``utts``."""
    path = Path(path)
    out: list[Trial] = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 3 or parts[0] not in ("0", "1"):
                raise DataError(f"{path}:{lineno}: expected '<1|0> <spk/ytid/nnnnn.wav> "
                                f"<spk/ytid/nnnnn.wav>', got {line.rstrip()!r}")
            ids = []
            for p in parts[1:]:
                utt = (p[:-4] if p.endswith(".wav") else p).replace("/", "-")
                if utt not in utts:
                    raise DataError(f"{path}:{lineno}: {p} (utterance {utt}) is not in the VoxCeleb1 "
                                    "audio tree")
                ids.append(utt)
            same = ids[0].split("-", 1)[0] == ids[1].split("-", 1)[0]
            if same != (parts[0] == "1"):
                raise DataError(f"{path}:{lineno}: label {parts[0]} contradicts the speakers of "
                                f"{parts[1]} and {parts[2]}")
            out.append((ids[0], ids[1], "target" if same else "nontarget"))
    if not out:
        raise DataError(f"{path}: empty trial list")
    return out


def read_trial_lists(trials_dir: str | os.PathLike, utts: dict[str, str] | set[str]
                     ) -> dict[str, list[Trial]]:
    """Read every official list present in ``trials_dir``; return ``{kaldi_name: trials}`` with
    ``trials`` (the default list) = Vox1-O cleaned, else the original O, else E, else H."""
    trials_dir = Path(trials_dir)
    found: dict[str, list[Trial]] = {}
    for fname, kname in TRIAL_LISTS:
        if kname not in found and (trials_dir / fname).is_file():
            found[kname] = read_trial_list(trials_dir / fname, utts)
    if not found:
        names = ", ".join(dict.fromkeys(f for f, _ in TRIAL_LISTS))
        raise DataError(f"{trials_dir}: no VoxCeleb1 trial list found (expected one of {names})")
    default = next(k for _, k in TRIAL_LISTS if k in found)
    return {"trials": found[default], **found}


def ffmpeg_pipe(m4a: str) -> str:
    """Kaldi pipe decoding an m4a file to 16-bit WAV (as Kaldi's make_voxceleb2.pl writes it)."""
    return f"ffmpeg -v 8 -i {shlex.quote(m4a)} -f wav -acodec pcm_s16le - |"


def _boxes(f, start: int, end: int):
    """Yield ``(type, payload_start, box_end)`` of the ISO-BMFF boxes in ``[start, end)``."""
    pos = start
    while pos + 8 <= end:
        f.seek(pos)
        size, typ = struct.unpack(">I4s", f.read(8))
        head = 8
        if size == 1:
            size = struct.unpack(">Q", f.read(8))[0]
            head = 16
        elif size == 0:
            size = end - pos
        if size < head:
            raise ValueError(f"bad box size {size} at {pos}")
        yield typ, pos + head, pos + size
        pos += size


def m4a_duration(path: str) -> float:
    """Presentation duration of an MP4/m4a file from its movie header (``moov/mvhd``): the duration
    ``ffprobe`` reports, read without starting a process. ``ffmpeg`` decoding may add up to one AAC
    frame (1024 samples) of end padding to that."""
    with open(path, "rb") as f:
        end = f.seek(0, 2)
        for typ, start, stop in _boxes(f, 0, end):
            if typ != b"moov":
                continue
            for t2, s2, _ in _boxes(f, start, stop):
                if t2 == b"mvhd":
                    f.seek(s2)
                    version = f.read(4)[0]
                    if version == 1:
                        timescale, duration = struct.unpack(">IQ", f.read(28)[16:])
                    else:
                        timescale, duration = struct.unpack(">II", f.read(16)[8:])
                    if timescale == 0:
                        raise ValueError("mvhd timescale 0")
                    return duration / timescale
    raise ValueError("no moov/mvhd box")


def ffprobe_duration(path: str) -> float:
    """Container duration of ``path`` as ``ffprobe`` reports it."""
    proc = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0",
                           path], capture_output=True, text=True)
    try:
        return float(proc.stdout.strip())
    except ValueError:
        raise DataError(f"{path}: ffprobe cannot read a duration: {proc.stderr.strip()}") from None


def m4a_file_duration(path: str) -> float:
    """Duration of an m4a file: from its header, or from ``ffprobe`` when the header is unusual."""
    try:
        d = m4a_duration(path)
    except (OSError, ValueError, struct.error, IndexError):
        d = -1.0
    if d <= 0:
        d = ffprobe_duration(path)
    if d <= 0:
        raise DataError(f"{path}: no audio (duration {d})")
    return d


def _wav_ok(path: Path) -> bool:
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, ValueError, OSError):
        return False
    return info.frames > 0


def convert_m4a(m4a: dict[str, str], wav_dir: str | os.PathLike, nj: int = 1) -> dict[str, str]:
    """Decode every m4a to 16 kHz mono 16-bit WAV ``<wav_dir>/<spk>/<ytid>/<nnnnn>.wav``, ``nj`` at a
    time. Each file is written under a temporary name and renamed, so existing files are complete and
    are kept: an interrupted conversion resumes where it stopped. Returns the WAV paths by utterance."""
    wav_dir = Path(os.path.abspath(wav_dir))

    def target(src: str) -> Path:
        p = Path(src)
        return wav_dir / p.parent.parent.name / p.parent.name / (p.stem + ".wav")

    def one(src: str) -> int:
        dst = target(src)
        if dst.is_file() and _wav_ok(dst):
            return 0
        with atomic_path(dst) as tmp:
            proc = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", src, "-ac", "1",
                                   "-ar", "16000", "-acodec", "pcm_s16le", "-f", "wav", str(tmp)],
                                  capture_output=True, text=True)
            if proc.returncode != 0 or not _wav_ok(tmp):
                raise DataError(f"{src}: ffmpeg conversion to WAV failed: {proc.stderr.strip()}")
        return 1

    items = list(m4a.items())
    with ThreadPoolExecutor(max(1, nj)) as pool:
        done = list(tqdm(pool.map(one, (p for _, p in items)), total=len(items), desc="m4a -> wav",
                         mininterval=5, file=sys.stderr, disable=len(items) < 1000))
    print(f"voxceleb: converted {sum(done)} m4a files to WAV under {wav_dir} "
          f"({len(items) - sum(done)} already there)", file=sys.stderr)
    return {u: str(target(p)) for u, p in items}


def prepare(data_root: str | os.PathLike, vox1: str | os.PathLike, vox2: str | os.PathLike | None = None,
            trials_dir: str | os.PathLike | None = None, convert: bool = False,
            wav_dir: str | os.PathLike | None = None, nj: int = 1, name: str = NAME) -> str:
    """Write ``<data_root>/<name>_train``, ``<name>_test`` and the test trials (see the module doc for
    the speaker policy); return a one-line summary. Trial lists are checked before any audio is probed
    or converted."""
    v1 = scan_vox1(vox1)
    lists = read_trial_lists(trials_dir or vox1, v1)
    test_spk = {u.split("-", 1)[0] for tr in lists.values() for t in tr for u in t[:2]}
    eh = any(k.startswith(("trials_E", "trials_H")) for k in lists)
    v1_spk = {u.split("-", 1)[0] for u in v1}
    v2 = scan_vox2(vox2) if vox2 else {}
    v2_spk = {u.split("-", 1)[0] for u in v2}
    both = c_sorted(v1_spk & v2_spk)
    if both:
        raise DataError(f"speaker ids in both VoxCeleb1 and VoxCeleb2: {both[:5]}")
    if eh:
        if not v2:
            raise DataError("with Vox1-E/H trial lists every VoxCeleb1 speaker is a test speaker, so "
                            "training needs VoxCeleb2 dev (--vox2)")
        train_spk = v2_spk
    else:
        train_spk = (v1_spk | v2_spk) - test_spk
    utt2spk = {u: u.split("-", 1)[0] for u in (*v1, *v2)}
    utt2spk = {u: s for u, s in utt2spk.items() if s in train_spk or s in test_spk}
    v1 = {u: p for u, p in v1.items() if u in utt2spk}
    v2 = {u: p for u, p in v2.items() if u in utt2spk}
    utt2dur = utt2dur_of(v1, nj, where=str(vox1), desc="VoxCeleb1 durations")
    if v2 and convert:
        wav_dir = wav_dir or Path(data_root) / "voxceleb2_wav"
        wav2 = convert_m4a(v2, wav_dir, nj)
        utt2dur.update(utt2dur_of(wav2, nj, where=str(wav_dir), desc="VoxCeleb2 durations"))
    elif v2:
        utt2dur.update(utt2dur_of(v2, nj, probe=m4a_file_duration, where=str(vox2),
                                  desc="VoxCeleb2 durations"))
        wav2 = {u: ffmpeg_pipe(p) for u, p in v2.items()}
    else:
        wav2 = {}
    wav_scp = {**v1, **wav2}
    train_dir, test_dir = write_corpus(data_root, name, wav_scp, utt2spk, utt2dur, test_spk, lists,
                                       train_speakers=train_spk)
    policy = ("Vox1-E/H lists: all VoxCeleb1 speakers in test, training VoxCeleb2 dev only" if eh else
              "Vox1-O lists: test = Vox1-O speakers, training = VoxCeleb2 dev + VoxCeleb1 dev")
    written = ", ".join(k for k in lists if k != "trials")
    return f"{policy}; trials from {written}; " + summary(train_dir, test_dir, utt2spk, utt2dur,
                                                         lists["trials"])
