"""Data-dir tools (utils/validate_data_dir.sh, fix_data_dir.sh, split_data.sh, subset_data_dir.sh,
combine_data.sh, utt2spk_to_spk2utt.sh): every problem reported at the right file and line, repairs
dropping exactly the bad utterances, splits and subsets checked against counts worked out by hand, and
the real speechocean762 copy validated (audio headers of 2,500 FLAC files in well under 3 s)."""

from __future__ import annotations

import os
import random
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from sslsv.datadir import (
    DataDirError,
    combine_data,
    fix_data_dir,
    partition,
    split_data,
    subset_data_dir,
    validate_data_dir,
)
from sslsv.tables import DataError, read_map, read_scp


def run(root: Path, env: dict[str, str], script: str, *args: str | Path, stdin: str | None = None
        ) -> subprocess.CompletedProcess:
    return subprocess.run([str(root / "utils" / script), *map(str, args)], capture_output=True, text=True,
                          env=env, input=stdin)


def write(path: Path, lines: list[str]) -> None:
    path.write_text("".join(line + "\n" for line in lines))


def tone(path: Path, n: int = 1600, rate: int = 16000, channels: int = 1) -> str:
    t = np.arange(n) / rate
    x = 0.3 * np.sin(2 * np.pi * 220 * t)
    sf.write(path, np.stack([x] * channels, axis=1) if channels > 1 else x, rate, subtype="PCM_16")
    return str(path)


# utterance -> (speaker, wav.scp value maker, expected problem fragment or None when fine)
def audio_dir(tmp_path: Path) -> tuple[Path, dict[str, str | None]]:
    """A data dir whose wav.scp has one good and one bad entry of every kind; returns it and, for each
    utterance, a fragment of the message its problem must carry (None: no problem)."""
    a = tmp_path / "audio"
    a.mkdir()
    (a / "empty.wav").write_bytes(b"")
    (a / "corrupt.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunkjunkjunk" + bytes(range(200)))
    entries = {
        "s1-good1": (tone(a / "g1.wav"), None),
        "s1-good2": (tone(a / "g2.flac"), None),
        "s1-pipe": (f"sox {tone(a / 'g3.flac')} -t wav - |", None),
        "s1-stereo": (tone(a / "st.wav", channels=2), "2 channels"),
        "s2-8k": (tone(a / "r8.wav", n=800, rate=8000), "sample rate 8000 Hz"),
        "s2-corrupt": (str(a / "corrupt.wav"), "cannot read audio"),
        "s2-empty": (str(a / "empty.wav"), "empty file"),
        "s2-false": ("false |", None),                       # only found by running it
        "s3-missing": (str(a / "nothere.wav"), "not found"),
        "s3-noprog": (f"no-such-program-xyz {a / 'g1.wav'} |", "no-such-program-xyz"),
        "s3-pipe-missing": (f"sox {a / 'gone.flac'} -t wav - |", "gone.flac"),
        "s3-short": (tone(a / "short.wav", n=50), "only 50 samples"),
        "s3-truncated": (str(a / "trunc.wav"),
                         "WAV header promises 1600 samples (3200 bytes of data) but the file holds 700"),
    }
    full = Path(tone(a / "full.wav")).read_bytes()          # 44-byte header + 1600 samples
    (a / "trunc.wav").write_bytes(full[:44 + 1400])
    d = tmp_path / "data"
    d.mkdir()
    utts = sorted(entries)
    write(d / "wav.scp", [f"{u} {entries[u][0]}" for u in utts])
    write(d / "utt2spk", [f"{u} {u.split('-')[0]}" for u in utts])
    spk: dict[str, list[str]] = {}
    for u in utts:
        spk.setdefault(u.split("-")[0], []).append(u)
    write(d / "spk2utt", [f"{s} {' '.join(us)}" for s, us in sorted(spk.items())])
    return d, {u: e[1] for u, e in entries.items()}


def line_of(path: Path, key: str) -> int:
    return [line.split()[0] for line in path.read_text().splitlines()].index(key) + 1


def test_check_audio_reports_each_bad_entry_at_its_line(tmp_path: Path, root: Path,
                                                        recipe_env: dict[str, str]) -> None:
    d, expect = audio_dir(tmp_path)
    validate_data_dir(d, require_feats=False)          # text checks only: all fine
    with pytest.raises(DataDirError) as e:
        validate_data_dir(d, require_feats=False, check_audio_files=True, sample_rate=16000, min_samples=100)
    got = {p.utt: p for p in e.value.problems}
    assert set(got) == {u for u, frag in expect.items() if frag}
    assert "pipe program not found on PATH: no-such-program-xyz" in got["s3-noprog"].message
    for u, p in got.items():
        assert p.where == f"{d}/wav.scp:{line_of(d / 'wav.scp', u)}"
        assert expect[u] in p.message, (u, p.message)
    # running the pipes also finds the failing one
    with pytest.raises(DataDirError) as e:
        validate_data_dir(d, require_feats=False, check_audio_files=True, sample_rate=16000, min_samples=100,
                          run_pipes=True)
    got = {p.utt: p.message for p in e.value.problems}
    assert "exit code 1" in got["s2-false"] and "s1-pipe" not in got
    # the shell front end lists them with file:line and fails
    r = run(root, recipe_env, "validate_data_dir.sh", "--no-feats", "--check-audio", "--sample-rate", "16000",
            "--min-samples", "100", d)
    assert r.returncode == 1
    assert "data: 9 problems:" in r.stderr
    assert f"{d}/wav.scp:{line_of(d / 'wav.scp', 's3-short')}: only 50" in r.stderr


def test_text_problems_name_file_and_line(tmp_path: Path, root: Path, recipe_env: dict[str, str]) -> None:
    d = tmp_path / "d"
    d.mkdir()
    utts = [f"spk{s}-u{i}" for s in (1, 2, 3) for i in range(4)]
    write(d / "utt2spk", [f"{u} {u.split('-')[0]}" for u in utts])
    write(d / "spk2utt", [f"spk{s} " + " ".join(u for u in utts if u.startswith(f"spk{s}-"))
                          for s in (1, 2, 3)])
    write(d / "wav.scp", [f"{u} /x/{u}.wav" for u in utts])
    validate_data_dir(d, require_feats=False)
    with pytest.raises(DataDirError, match="feats.scp: required file missing"):
        validate_data_dir(d)

    lines = [f"{u} /x/{u}.wav" for u in utts]
    lines[11], lines[10] = lines[10], lines[11]                 # unsorted at line 12
    write(d / "wav.scp", lines)
    write(d / "utt2dur", [f"{u} 1.5" for u in utts[:6]] + [f"{utts[5]} 1.5"] + [f"{u} 2" for u in utts[6:]])
    write(d / "utt2num_frames", [f"{u} 150" for u in utts if u != "spk2-u1"])   # spk2-u1 missing
    (tmp_path / "a.ark").write_bytes(b"")
    write(d / "feats.scp", [f"{u} {tmp_path}/a.ark:{9 * i}" for i, u in enumerate(utts)]
          + [f"spk9-extra {tmp_path}/b.ark:5"])                     # extra id, missing ark
    write(d / "trials", ["spk1-u0 spk1-u1 target", "spk1-u0 spk9-u0 nontarget", "spk1-u0 spk2-u0 maybe"])
    write(d / "spk2gender", ["spk1 m", "spk2 x", "spk3 f"])
    with pytest.raises(DataDirError) as e:
        validate_data_dir(d)
    msgs = [str(p) for p in e.value.problems]
    expected = [
        f"{d}/wav.scp:12: unsorted at line 12: 'spk3-u2' after 'spk3-u3'",
        f"{d}/utt2dur:7: duplicate key 'spk2-u1' at line 7 (first at line 6)",
        f"{d}/utt2spk:6: utterance 'spk2-u1' has no entry in utt2num_frames",
        f"{d}/feats.scp:13: utterance 'spk9-extra' is not in utt2spk",
        f"{d}/feats.scp:13: archive not found: {tmp_path}/b.ark",
        f"{d}/trials:2: unknown utterance 'spk9-u0'",
        f"{d}/trials:3: label must be target or nontarget, got 'maybe'",
        f"{d}/spk2gender:2: gender must be m or f, got 'x'",
    ]
    for want in expected:
        assert any(m.startswith(want) for m in msgs), (want, msgs)
    assert len(msgs) == len(expected), msgs

    # spk2utt disagreeing with utt2spk, and utt2spk not sorted by speaker
    for f in ("utt2dur", "utt2num_frames", "feats.scp", "trials", "spk2gender"):
        (d / f).unlink()
    write(d / "wav.scp", [f"{u} /x/{u}.wav" for u in utts])
    write(d / "utt2spk", [f"{u} {u.split('-')[0]}" for u in utts[:5]] + [f"{utts[5]} spk1"]
          + [f"{u} {u.split('-')[0]}" for u in utts[6:]])
    with pytest.raises(DataDirError) as e:
        validate_data_dir(d, require_feats=False)
    msgs = [str(p) for p in e.value.problems]
    assert msgs[0].startswith(f"{d}/utt2spk:6: utt2spk is not sorted by speaker: speaker 'spk1' comes after "
                              "'spk2'"), msgs
    assert any(m.startswith(f"{d}/spk2utt:1: speaker 'spk1' disagrees with utt2spk: utterance 'spk2-u1' of "
                            "utt2spk is not listed") for m in msgs), msgs
    assert any(m.startswith(f"{d}/spk2utt:2: speaker 'spk2' disagrees with utt2spk: utterance 'spk2-u1' is "
                            "listed but utt2spk gives speaker 'spk1'") for m in msgs), msgs
    write(d / "utt2spk", [f"{u} {'z' if u == 'spk1-u3' else u.split('-')[0]}" for u in utts])
    with pytest.raises(DataDirError, match=r"utt2spk:5: utt2spk is not sorted by speaker: speaker 'spk2' "):
        validate_data_dir(d, require_feats=False, spk_sort=True)
    r = run(root, recipe_env, "validate_data_dir.sh", "--no-feats", "--no-spk-sort", d)
    assert r.returncode == 1 and "spk2utt" in r.stderr and "sorted by speaker" not in r.stderr


def test_fix_drops_exactly_the_bad_utterances_and_logs_why(tmp_path: Path, root: Path,
                                                           recipe_env: dict[str, str]) -> None:
    d, expect = audio_dir(tmp_path)
    utts = sorted(expect)
    # text damage too: utt2dur unsorted, lacking one utterance, with a line for an unknown one
    durs = [f"{u} 0.1" for u in utts if u != "s1-good2"] + ["zz-unknown 1.0"]
    write(d / "utt2dur", durs[::-1])
    write(d / "trials", ["s1-good1 s1-pipe target", "s1-good1 s2-empty nontarget"])
    before = {f: (d / f).read_text() for f in ("wav.scp", "utt2spk", "utt2dur", "trials")}
    r = run(root, recipe_env, "fix_data_dir.sh", "--check-audio", "--sample-rate", "16000",
            "--min-samples", "100", "--run-pipes", "true", d)
    assert r.returncode == 0, r.stderr
    bad = {u for u, frag in expect.items() if frag} | {"s1-good2", "s2-false"}
    kept = sorted(set(utts) - bad)
    assert kept == ["s1-good1", "s1-pipe"]
    log = d / ".backup" / "fix_data_dir.log"
    assert (f"fix_data_dir.sh: kept 2 of {len(utts)} utterances ({len(utts) - 2} dropped; 1 of 3 speakers; "
            f"1 of 2 trials dropped, see {log})") in r.stderr
    assert sorted(read_map(d / "utt2spk")) == kept and sorted(read_scp(d / "wav.scp")) == kept
    assert (d / "spk2utt").read_text() == "s1 s1-good1 s1-pipe\n"
    assert (d / "trials").read_text() == "s1-good1 s1-pipe target\n"
    text = log.read_text()
    wav = d / "wav.scp"
    for u in sorted(bad - {"s1-good2", "s2-false"}):
        line = next(x for x in text.splitlines() if x.startswith(f"drop utterance {u}:"))
        assert expect[u] in line and line.endswith(f"({wav}:{utts.index(u) + 1})"), line
    assert f"drop utterance s1-good2: no entry in utt2dur ({d}/utt2spk:2)" in text
    assert "drop utterance s2-false: pipe failed with exit code 1" in text
    assert f"drop line {d}/utt2dur:1: utterance 'zz-unknown' is not in utt2spk" in text
    assert f"drop line {d}/trials:2: names removed utterance 's2-empty'" in text
    assert "drop speaker s2: no utterances left" in text
    for f, content in before.items():               # originals kept
        assert (d / ".backup" / f).read_text() == content
    (d / "trials").unlink()                         # one target trial left: a test set needs both kinds
    validate_data_dir(d, require_feats=False, check_audio_files=True, sample_rate=16000, run_pipes=True)
    # a second run has nothing to do and leaves the backup alone
    r = run(root, recipe_env, "fix_data_dir.sh", d)
    assert r.returncode == 0 and "nothing to fix (2 utterances, 1 speakers)" in r.stderr
    assert (d / ".backup" / "utt2dur").read_text() == before["utt2dur"]
    # a later repair keeps the first originals and numbers its own; the log keeps both runs
    second = (d / "utt2dur").read_text()
    write(d / "utt2dur", ["s1-good1 0.1", "s1-pipe 0.1", "zz-other 2.0"])
    third = (d / "utt2dur").read_text()
    assert run(root, recipe_env, "fix_data_dir.sh", d).returncode == 0
    assert (d / ".backup" / "utt2dur").read_text() == before["utt2dur"] != second
    assert (d / ".backup" / "utt2dur.1").read_text() == third
    assert (d / "utt2dur").read_text() == second
    assert log.read_text().count("# fix_data_dir ") == 2 and "'zz-other' is not in utt2spk" in log.read_text()


def test_trials_must_hold_both_kinds(tmp_path: Path, root: Path, recipe_env: dict[str, str]) -> None:
    """A test set of one speaker (all-target trials) or all-nontarget trials cannot give an EER: refused
    at validation, so stage 0 stops instead of stage 5."""
    d = tmp_path / "d"
    d.mkdir()
    utts = [f"spk1-u{i}" for i in range(3)]
    write(d / "utt2spk", [f"{u} spk1" for u in utts])
    write(d / "spk2utt", ["spk1 " + " ".join(utts)])
    write(d / "wav.scp", [f"{u} /x/{u}.wav" for u in utts])
    write(d / "trials", ["spk1-u0 spk1-u1 target", "spk1-u0 spk1-u2 target"])
    r = run(root, recipe_env, "validate_data_dir.sh", "--no-feats", d)
    assert r.returncode == 1
    assert (f"{d}/trials:1: all 2 trials are target: EER and minDCF need nontarget trials too "
            "(a test set of one speaker?)") in r.stderr, r.stderr
    write(d / "trials", ["spk1-u0 spk1-u1 nontarget"])
    with pytest.raises(DataDirError, match="all 1 trials are nontarget: EER and minDCF need target"):
        validate_data_dir(d, require_feats=False)


def test_fix_conflicting_duplicates_and_refusal_to_empty(tmp_path: Path) -> None:
    d = tmp_path / "d"
    d.mkdir()
    write(d / "utt2spk", ["a1 a", "a2 a", "a2 a", "b1 b", "b2 b"])        # exact repeat: merged
    write(d / "wav.scp", ["a1 x.wav", "a2 y.wav", "b1 z.wav", "b1 w.wav", "b2 v.wav"])  # b1 ambiguous
    write(d / "spk2gender", ["a m", "b f"])
    rep = fix_data_dir(d)
    assert rep.kept == 3 and set(rep.dropped) == {"b1"}
    assert rep.dropped["b1"] == (f"{d}/wav.scp:4", "conflicting entries in wav.scp (lines 3 and 4)")
    assert (d / "utt2spk").read_text() == "a1 a\na2 a\nb2 b\n"
    assert (d / "spk2utt").read_text() == "a a1 a2\nb b2\n"
    validate_data_dir(d, require_feats=False)
    write(d / "wav.scp", ["zz x.wav"])
    with pytest.raises(DataError, match="no utterance would be left"):
        fix_data_dir(d)
    assert (d / "utt2spk").read_text() == "a1 a\na2 a\nb2 b\n"


def random_dir(path: Path, sizes: list[int], extra: bool = True) -> dict[str, str]:
    path.mkdir(parents=True)
    utt2spk = {f"spk{s:02d}-{i:03d}": f"spk{s:02d}" for s, n in enumerate(sizes) for i in range(n)}
    utts = sorted(utt2spk)
    write(path / "utt2spk", [f"{u} {utt2spk[u]}" for u in utts])
    write(path / "spk2utt", [f"{s} " + " ".join(u for u in utts if utt2spk[u] == s)
                             for s in sorted(set(utt2spk.values()))])
    write(path / "wav.scp", [f"{u} sox /a/{u}.flac -t wav - |" for u in utts])
    if extra:
        write(path / "utt2num_frames", [f"{u} {100 + i % 50}" for i, u in enumerate(utts)])
        spks = sorted(set(utt2spk.values()))
        write(path / "spk2gender", [f"{s} {'mf'[i % 2]}" for i, s in enumerate(spks)])
    return utt2spk


def test_split_per_speaker_and_per_utterance(tmp_path: Path, root: Path, recipe_env: dict[str, str]) -> None:
    # known answers
    six = {f"s{s}-{i}": f"s{s}" for s in range(6) for i in range(3)}
    assert [len(p) for p in partition(six, 3)] == [6, 6, 6]
    uneven = {f"s{s}-{i}": f"s{s}" for s, n in enumerate([1, 9, 1, 9, 4, 4, 6, 6]) for i in range(n)}
    assert [len(p) for p in partition(uneven, 4)] == [10, 10, 8, 12]
    assert [len(p) for p in partition(six, 4, per_utt=True)] == [4, 5, 4, 5]
    with pytest.raises(DataError, match="only 6 speakers, cannot split per speaker into 7 parts"):
        partition(six, 7)

    rng = random.Random(3)
    sizes = [rng.randint(1, 20) for _ in range(40)]
    d = tmp_path / "data"
    utt2spk = random_dir(d, sizes)
    r = run(root, recipe_env, "split_data.sh", d, 6)
    assert r.returncode == 0, r.stderr
    parts = [read_map(d / "split6" / str(i) / "utt2spk") for i in range(1, 7)]
    union: dict[str, str] = {}
    for p in parts:
        assert not union.keys() & p.keys()
        union.update(p)
    assert union == utt2spk
    owners = {}
    for i, p in enumerate(parts):
        for s in set(p.values()):
            assert s not in owners, f"speaker {s} in parts {owners[s]} and {i}"
            owners[s] = i
    counts = [len(p) for p in parts]
    ideal = sum(sizes) / 6
    assert max(abs(c - ideal) for c in counts) <= max(sizes), counts
    for i in range(1, 7):
        validate_data_dir(d / "split6" / str(i), require_feats=False)
        assert sorted(read_map(d / "split6" / str(i) / "utt2num_frames")) == sorted(parts[i - 1])

    # idempotent: a second run writes nothing; a newer source redoes it
    stamp = (d / "split6/3/wav.scp").stat().st_mtime_ns
    assert split_data(d, 6)[1] is False
    assert (d / "split6/3/wav.scp").stat().st_mtime_ns == stamp
    os.utime(d / "utt2num_frames", ns=(stamp + 10**9, stamp + 10**9))
    assert split_data(d, 6)[1] is True
    (d / "spk2gender").unlink()
    assert split_data(d, 6)[1] is True and not (d / "split6/1/spk2gender").exists()

    r = run(root, recipe_env, "split_data.sh", "--per-utt", d, 7)
    assert r.returncode == 0, r.stderr
    counts = [len(read_map(d / "split7utt" / str(i) / "utt2spk")) for i in range(1, 8)]
    assert sum(counts) == sum(sizes) and max(counts) - min(counts) <= 1
    joined = []
    for i in range(1, 8):
        joined += (d / "split7utt" / str(i) / "wav.scp").read_text().splitlines()
    assert joined == (d / "wav.scp").read_text().splitlines()     # contiguous: concatenation is sorted
    r = run(root, recipe_env, "split_data.sh", d, 41)
    assert r.returncode == 1 and "only 40 speakers, cannot split per speaker into 41 parts" in r.stderr


def test_subset(tmp_path: Path, root: Path, recipe_env: dict[str, str]) -> None:
    d = tmp_path / "src"
    utt2spk = random_dir(d, [3, 4, 5])
    utts = sorted(utt2spk)
    frames = {u: 100 + 7 * ((i * 5) % 12) for i, u in enumerate(utts)}      # 12 distinct lengths
    write(d / "utt2num_frames", [f"{u} {frames[u]}" for u in utts])
    write(d / "trials", [f"{utts[0]} {utts[1]} target", f"{utts[0]} {utts[-1]} nontarget"])
    by_len = sorted(utts, key=lambda u: frames[u])
    r = run(root, recipe_env, "subset_data_dir.sh", "--longest", 4, d, tmp_path / "long")
    assert r.returncode == 0, r.stderr
    assert sorted(read_map(tmp_path / "long/utt2spk")) == sorted(by_len[-4:])
    assert read_map(tmp_path / "long/utt2num_frames") == {u: str(frames[u]) for u in by_len[-4:]}
    validate_data_dir(tmp_path / "long", require_feats=False)
    # Kaldi's spelling: --shortest <src> <N> <dest>
    r = run(root, recipe_env, "subset_data_dir.sh", "--shortest", d, 3, tmp_path / "short")
    assert r.returncode == 0, r.stderr
    assert sorted(read_map(tmp_path / "short/utt2spk")) == sorted(by_len[:3])
    assert subset_data_dir(d, tmp_path / "f", first=5).utterances == 5
    assert sorted(read_map(tmp_path / "f/utt2spk")) == utts[:5]
    subset_data_dir(d, tmp_path / "l", last=2)
    assert sorted(read_map(tmp_path / "l/utt2spk")) == utts[-2:]
    assert (tmp_path / "l/spk2utt").read_text() == f"spk02 {utts[-2]} {utts[-1]}\n"
    assert (tmp_path / "l/spk2gender").read_text() == "spk02 m\n"
    assert not (tmp_path / "l/trials").read_text()
    assert (tmp_path / "f/trials").read_text() == f"{utts[0]} {utts[1]} target\n"
    subset_data_dir(d, tmp_path / "p", per_spk=2)
    assert sorted(read_map(tmp_path / "p/utt2spk")) == [utts[0], utts[1], utts[3], utts[4], utts[7], utts[8]]
    a = subset_data_dir(d, tmp_path / "r1", num_random=6, seed=5)
    subset_data_dir(d, tmp_path / "r2", num_random=6, seed=5)
    assert a.utterances == 6
    assert (tmp_path / "r1/utt2spk").read_text() == (tmp_path / "r2/utt2spk").read_text()
    r = run(root, recipe_env, "subset_data_dir.sh", "--seed", 5, d, 6, tmp_path / "r3")
    assert (tmp_path / "r3/utt2spk").read_text() == (tmp_path / "r1/utt2spk").read_text()
    write(tmp_path / "list", ["spk01", "spk09"])
    r = run(root, recipe_env, "subset_data_dir.sh", "--spk-list", tmp_path / "list", d, tmp_path / "s")
    assert r.returncode == 0 and "1 of 2 ids" in r.stderr and "'spk09'" in r.stderr
    assert set(read_map(tmp_path / "s/utt2spk").values()) == {"spk01"}
    write(tmp_path / "ulist", [f"{utts[2]} whatever", utts[9]])
    subset_data_dir(d, tmp_path / "u", utt_list=tmp_path / "ulist")
    assert sorted(read_map(tmp_path / "u/utt2spk")) == [utts[2], utts[9]]
    with pytest.raises(DataError, match="exactly one"):
        subset_data_dir(d, tmp_path / "x", first=2, last=2)


def test_combine_and_spk2utt_conversion(tmp_path: Path, root: Path, recipe_env: dict[str, str]) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    ua = random_dir(a, [2, 3])
    b.mkdir()
    write(b / "utt2spk", ["spk00-000 spk00", "x-1 x", "x-2 x"])
    write(b / "spk2utt", ["spk00 spk00-000", "x x-1 x-2"])
    write(b / "wav.scp", [f"spk00-000 {read_scp(a / 'wav.scp')['spk00-000']}", "x-1 b1.wav", "x-2 b2.wav"])
    r = run(root, recipe_env, "combine_data.sh", tmp_path / "c", b, a)
    assert r.returncode == 0, r.stderr
    assert "utt2num_frames left out" in r.stderr and "spk2gender left out" in r.stderr
    c = read_map(tmp_path / "c/utt2spk")
    assert c == {**ua, "x-1": "x", "x-2": "x"} and list(c) == sorted(c)
    assert not (tmp_path / "c/utt2num_frames").exists()
    validate_data_dir(tmp_path / "c", require_feats=False)
    write(b / "wav.scp", ["spk00-000 other.wav", "x-1 b1.wav", "x-2 b2.wav"])
    r = run(root, recipe_env, "combine_data.sh", tmp_path / "c2", a, b)
    assert r.returncode == 1
    assert f"conflicting entries for 'spk00-000': {a}/wav.scp:1 has" in r.stderr
    assert f"{b}/wav.scp:1 has 'other.wav'" in r.stderr
    with pytest.raises(DataError, match="also a source"):
        combine_data(a, [a, b])

    utt2spk_text = "u1 s2\nu2 s1\nu3 s2\n"
    r = run(root, recipe_env, "utt2spk_to_spk2utt.sh", stdin=utt2spk_text)
    assert r.returncode == 0 and r.stdout == "s2 u1 u3\ns1 u2\n"
    r = run(root, recipe_env, "spk2utt_to_utt2spk.sh", stdin=r.stdout)
    assert r.stdout == "u1 s2\nu3 s2\nu2 s1\n"
    r = run(root, recipe_env, "utt2spk_to_spk2utt.sh", stdin="u1 s1\nbad\n")
    assert r.returncode == 1 and "<stdin>:2" in r.stderr


def test_speechocean762_validates_fast(tmp_path: Path, root: Path, recipe_env: dict[str, str],
                                       speechocean: Path) -> None:
    utt2spk = read_map(speechocean / "utt2spk")
    files = {u: str(speechocean / "audio" / f"{u}.flac") for u in utt2spk}
    d = tmp_path / "so"
    d.mkdir()
    write(d / "utt2spk", [f"{u} {s}" for u, s in sorted(utt2spk.items())])
    r = run(root, recipe_env, "utt2spk_to_spk2utt.sh", stdin=(d / "utt2spk").read_text())
    (d / "spk2utt").write_text(r.stdout)
    write(d / "wav.scp", [f"{u} {files[u]}" for u in sorted(files)])
    t = time.perf_counter()
    s = validate_data_dir(d, require_feats=False, check_audio_files=True, sample_rate=16000,
                          min_samples=16000)
    elapsed = time.perf_counter() - t
    assert (s.utterances, s.speakers, s.audio_checked) == (2500, 125, 2500)
    assert elapsed < 3.0, f"--check-audio on 2,500 FLAC headers took {elapsed:.2f} s"
    print(f"check-audio of 2500 FLAC files: {elapsed:.2f} s")
    r = run(root, recipe_env, "validate_data_dir.sh", "--no-feats", "--check-audio", "--sample-rate", "16000",
            d)
    assert r.returncode == 0 and "2500 utterances, 125 speakers; audio of 2500 entries checked" in r.stdout

    # the same with sox pipes: checked statically for all, run for a per-speaker subset
    write(d / "wav.scp", [f"{u} sox {files[u]} -t wav - |" for u in sorted(files)])
    t = time.perf_counter()
    validate_data_dir(d, require_feats=False, check_audio_files=True)
    assert time.perf_counter() - t < 3.0
    sub = tmp_path / "sub"
    subset_data_dir(d, sub, per_spk=1)
    s = validate_data_dir(sub, require_feats=False, check_audio_files=True, sample_rate=16000, run_pipes=True)
    assert (s.utterances, s.speakers) == (125, 125)
    # a pipe's rate is only known by running it
    validate_data_dir(sub, require_feats=False, check_audio_files=True, sample_rate=8000)
    with pytest.raises(DataDirError) as e:
        validate_data_dir(sub, require_feats=False, check_audio_files=True, sample_rate=8000, run_pipes=True)
    assert len(e.value.problems) == 125 and "expected 8000 Hz" in e.value.problems[0].message
    listed = str(e.value).splitlines()
    assert listed[0] == f"{sub}: 125 problems:" and listed[-1] == "  ... and 115 more" and len(listed) == 12


@pytest.mark.parametrize("mask", [0o002, 0o022, 0o027])
def test_outputs_get_the_mode_of_the_umask(tmp_path: Path, root: Path, recipe_env: dict[str, str],
                                           mask: int) -> None:
    """Atomic writes (tables, archives, anything through atomic_path) get 0666 less the umask, as a plain
    open() would, not mkstemp's 0600: group members of a shared server read what the recipe wrote."""
    code = """
import os, sys
from pathlib import Path
import numpy as np
from sslsv.features.archive import ArkScpWriter
from sslsv.tables import atomic_path, write_lines
d = Path(sys.argv[1])
write_lines(d / "utt2spk", ["a x"])
with ArkScpWriter(d / "f.ark", d / "f.scp") as w:
    w.write("a", np.zeros((3, 2), dtype=np.float32))
with atomic_path(d / "m.npy") as tmp, open(tmp, "wb") as f:
    np.save(f, np.zeros(2))
"""
    r = subprocess.run(["bash", "-c", f"umask {mask:03o} && python3 -c \"$0\" \"$1\"", code, str(tmp_path)],
                       capture_output=True, text=True, env=recipe_env)
    assert r.returncode == 0, r.stderr
    for name in ("utt2spk", "f.ark", "f.scp", "m.npy"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~mask, name
    # shell steps do not move mkstemp-made (0600) files into place either
    for script in sorted((root / "steps").glob("*.sh")) + sorted((root / "utils").glob("*.sh")):
        for line in script.read_text().splitlines():
            if "mktemp" in line and not line.lstrip().startswith("#"):
                assert "mktemp -d" in line or "mktemp -u" in line, f"{script}: {line}"
