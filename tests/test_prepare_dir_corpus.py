"""local/prepare_dir_corpus.sh on small speaker-per-folder trees: ids, split by seed, trials, pipes and
the errors for bad trees."""

from __future__ import annotations

import itertools
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from sslsv.audio import read_audio
from sslsv.tables import c_sorted, read_map, read_scp

SCRIPT = "local/prepare_dir_corpus.sh"


def run(root: Path, env: dict, *args: object, ok: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run([str(root / SCRIPT), *map(str, args)], env=env, capture_output=True, text=True,
                       timeout=120)
    assert (p.returncode == 0) == ok, p.stdout + p.stderr
    return p


def tone(path: Path, n: int, fmt: str = "WAV") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    x = (np.sin(np.arange(n) * 0.03) * 5000).astype(np.int16)
    sf.write(str(path), x, 16000, format=fmt, subtype="PCM_16")


@pytest.fixture
def corpus(tmp_path) -> tuple[Path, dict[str, int]]:
    """5 speakers, 3 files each, nested folders, WAV and FLAC (one upper-case extension)."""
    src = tmp_path / "corpus"
    lengths = {}
    for i, spk in enumerate(["alice", "bob", "carol", "dave", "erin"]):
        for j, rel in enumerate(["a.wav", "day1/b.flac", "day1/x/c.WAV"]):
            n = 8000 + 1000 * i + 100 * j
            tone(src / spk / rel, n, "FLAC" if rel.endswith("flac") else "WAV")
            lengths[f"{spk}-{rel.rsplit('.', 1)[0].replace('/', '-')}"] = n
    (src / "bob/notes.txt").write_text("not audio\n")
    (src / "empty_folder").mkdir()
    return src, lengths


def test_split_ids_trials(root, recipe_env, corpus, tmp_path):
    src, lengths = corpus
    out = tmp_path / "data"
    p = run(root, recipe_env, "--num-test-spk", 2, "--seed", 3, src, out, "mine")
    assert "2 of 5 speakers for test" in p.stdout
    tr, te = read_map(out / "mine_train/utt2spk"), read_map(out / "mine_test/utt2spk")
    assert len(set(tr.values())) == 3 and len(set(te.values())) == 2
    assert not set(tr.values()) & set(te.values())
    assert set(tr) | set(te) == set(lengths) and "carol-day1-x-c" in lengths
    assert all(u.startswith(s + "-") for u, s in {**tr, **te}.items())
    scp, dur = read_scp(out / "mine_train/wav.scp"), read_map(out / "mine_train/utt2dur")
    for utt, entry in scp.items():
        assert Path(entry).is_absolute() and Path(entry).is_file()
        assert float(dur[utt]) == pytest.approx(lengths[utt] / 16000, abs=1e-3)
    for f in ("wav.scp", "utt2spk", "spk2utt", "utt2dur"):
        keys = [line.split()[0] for line in (out / "mine_test" / f).read_text().splitlines()]
        assert keys == c_sorted(keys)
    trials = [t.split() for t in (out / "mine_test/trials").read_text().splitlines()]
    assert [(a, b) for a, b, _ in trials] == list(itertools.combinations(c_sorted(te), 2))
    assert len(trials) == 15 and sum(k == "target" for *_, k in trials) == 6
    # same seed, same split; --test-fraction; default name 'dir'
    run(root, recipe_env, "--num-test-spk", 2, "--seed", 3, src, tmp_path / "again", "mine")
    assert (tmp_path / "again/mine_test/trials").read_bytes() == (out / "mine_test/trials").read_bytes()
    splits = set()
    for seed in range(4):
        run(root, recipe_env, "--test-fraction", 0.4, "--seed", seed, src, tmp_path / f"f{seed}")
        splits.add(frozenset(read_map(tmp_path / f"f{seed}/dir_test/utt2spk").values()))
    assert all(len(s) == 2 for s in splits) and len(splits) > 1
    p = run(root, recipe_env, "--num-test-spk", 2, "--test-fraction", 0.4, src, tmp_path / "x", ok=False)
    assert "not both" in p.stderr


def test_pipes_real_speech(root, recipe_env, speechocean, tmp_path):
    src = tmp_path / "so"
    u2s = read_map(speechocean / "utt2spk")
    spks = c_sorted(set(u2s.values()))[:4]
    for u, s in u2s.items():
        if s in spks:
            (src / f"spk{s}").mkdir(parents=True, exist_ok=True)
            (src / f"spk{s}" / f"{u}.flac").symlink_to(speechocean / "audio" / f"{u}.flac")
    out = tmp_path / "data"
    run(root, recipe_env, "--num-test-spk", 2, "--use-pipes", "true", "--ext", "flac", src, out, "so")
    scp = {**read_scp(out / "so_train/wav.scp"), **read_scp(out / "so_test/wav.scp")}
    assert len(scp) == 80 and all(e.startswith("sox ") and e.endswith(" -t wav - |") for e in scp.values())
    utt = c_sorted(scp)[0]
    assert utt == f"spk{spks[0]}-{c_sorted(u for u in u2s if u2s[u] == spks[0])[0]}"
    x, sr = read_audio(scp[utt])
    assert sr == 16000 and len(x) == sf.info(str(src / utt.replace("-", "/", 1)) + ".flac").frames
    trials = [t.split()[2] for t in (out / "so_test/trials").read_text().splitlines()]
    assert (trials.count("target"), trials.count("nontarget")) == (2 * 190, 400)  # 2 x C(20,2), 20 x 20


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")
def test_m4a_pipe(root, recipe_env, corpus, tmp_path):
    src, _ = corpus
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(src / "alice/a.wav"), "-c:a", "aac",
                    str(src / "alice/m.m4a")], check=True)
    out = tmp_path / "data"
    run(root, recipe_env, "--ext", "wav,m4a", "--num-test-spk", 4, "--seed", 0, src, out)
    scp = {**read_scp(out / "dir_train/wav.scp"), **read_scp(out / "dir_test/wav.scp")}
    dur = {**read_map(out / "dir_train/utt2dur"), **read_map(out / "dir_test/utt2dur")}
    assert len(scp) == 11  # .flac files left out by --ext
    assert scp["alice-m"].startswith("ffmpeg -v 8 -i ") and scp["alice-m"].endswith(" - |")
    x, sr = read_audio(scp["alice-m"])
    assert 8000 <= len(x) < 8000 + 1024 and float(dur["alice-m"]) == pytest.approx(len(x) / sr, abs=1e-3)


def test_errors(root, recipe_env, corpus, tmp_path):
    src, _ = corpus
    out = tmp_path / "data"
    one = tmp_path / "one"
    tone(one / "solo/a.wav", 4000)
    p = run(root, recipe_env, one, out, ok=False)
    assert "found 1 speaker folder(s)" in p.stderr and not out.exists()
    tone(src / "bob/day 2.wav", 4000)
    p = run(root, recipe_env, src, out, ok=False)
    assert f"{src}/bob/day 2.wav: whitespace" in p.stderr and not out.exists()
    (src / "bob/day 2.wav").unlink()
    tone(src / "carol/a.flac", 4000, "FLAC")
    p = run(root, recipe_env, src, out, ok=False)
    assert "gives the same utterance id 'carol-a'" in p.stderr
    (src / "carol/a.flac").unlink()
    tone(src / "stray.wav", 4000)
    p = run(root, recipe_env, src, out, ok=False)
    assert f"{src}/stray.wav: audio directly in" in p.stderr
    p = run(root, recipe_env, "--bogus", 1, src, out, ok=False)
    assert "invalid option --bogus" in p.stderr


def test_stage0_sees_files_added_or_replaced_inside_speaker_folders(root, corpus, tmp_path):
    """run.sh's stage-0 stamp covers every file under the corpus folder, not the top folder's mtime: a
    file added to a speaker's sub-folder, or audio replaced in place, makes stage 0 prepare again (before,
    both left it "up to date" with a stale utt2dur)."""
    src, lengths = corpus
    data = tmp_path / "data"
    cmd = [str(root / "run.sh"), "--corpus", "dir", "--corpus-dir", str(src), "--data", str(data),
           "--exp", str(tmp_path / "exp"), "--num-test-spk", "2", "--stop-stage", "0"]

    def stage0() -> str:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stdout + r.stderr
        return r.stdout

    def durations() -> dict[str, float]:
        return {u: float(v) for part in ("dir_train", "dir_test")
                for u, v in read_map(data / part / "utt2dur").items()}

    stage0()
    assert "up to date" in stage0()
    tone(src / "alice/day1/x/d.wav", 12000)                    # new file, two folders down
    assert "up to date" not in stage0()
    assert durations()["alice-day1-x-d"] == pytest.approx(12000 / 16000)
    tone(src / "bob/day1/b.flac", 40000, "FLAC")               # audio replaced in place
    assert "up to date" not in stage0()
    assert durations()["bob-day1-b"] == pytest.approx(40000 / 16000)
    assert "up to date" in stage0()
