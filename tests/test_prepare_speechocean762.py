"""local/prepare_speechocean762.sh on the real FLAC copy (one half, split by seed) and on a small tree in
the official layout (WAVE/ + train/ and test/ lists)."""

from __future__ import annotations

import itertools
import subprocess
from pathlib import Path

import numpy as np
import soundfile as sf
from sslsv.audio import read_audio
from sslsv.tables import c_sorted, read_map, read_scp

SCRIPT = "local/prepare_speechocean762.sh"


def run(root: Path, env: dict, *args: str, ok: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run([str(root / SCRIPT), *map(str, args)], env=env, capture_output=True, text=True,
                       timeout=120)
    assert (p.returncode == 0) == ok, p.stdout + p.stderr
    return p


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def check_sorted(d: Path) -> None:
    for f in ("wav.scp", "utt2spk", "spk2utt", "utt2dur"):
        keys = [line.split()[0] for line in lines(d / f)]
        assert keys == c_sorted(keys) and len(set(keys)) == len(keys), d / f


def test_flac_copy_split_by_seed(root, recipe_env, speechocean, tmp_path):
    out = tmp_path / "data"
    p = run(root, recipe_env, speechocean, out)
    assert "124750 trials (4750 target)" in p.stdout
    train, test = out / "speechocean762_train", out / "speechocean762_test"
    u2s_tr, u2s_te = read_map(train / "utt2spk"), read_map(test / "utt2spk")
    assert len(set(u2s_tr.values())) == 100 and len(set(u2s_te.values())) == 25
    assert len(u2s_tr) == 2000 and len(u2s_te) == 500
    assert not set(u2s_tr.values()) & set(u2s_te.values())
    for d in (train, test):
        check_sorted(d)
    # ids are <spk>-<official utt id>, the official id starting with the zero-padded speaker id
    orig = read_map(speechocean / "utt2spk")
    assert set(u2s_tr) | set(u2s_te) == {f"{s}-{u}" for u, s in orig.items()}
    assert u2s_tr.get("0001-000010011", u2s_te.get("0001-000010011")) == "0001"
    # spk2utt inverts utt2spk
    s2u = {line.split()[0]: line.split()[1:] for line in lines(test / "spk2utt")}
    assert sum(map(len, s2u.values())) == 500 and all(len(v) == 20 for v in s2u.values())
    # wav.scp holds the FLAC paths; utt2dur from their headers
    scp, dur = read_scp(test / "wav.scp"), read_map(test / "utt2dur")
    for utt in list(scp)[:5]:
        info = sf.info(scp[utt])
        assert Path(scp[utt]).name == utt.split("-", 1)[1] + ".flac"
        assert abs(float(dur[utt]) - info.frames / info.samplerate) < 1e-3
    # trials: every pair of test utterances
    trials = [t.split() for t in lines(test / "trials")]
    want = {(a, b) for a, b in itertools.combinations(c_sorted(u2s_te), 2)}
    assert {(a, b) for a, b, _ in trials} == want and len(trials) == 124750
    assert all((k == "target") == (u2s_te[a] == u2s_te[b]) for a, b, k in trials)
    assert sum(k == "target" for _, _, k in trials) == 25 * 190

    # same seed: identical output; another seed: another split; pipes decode to the same samples
    same = tmp_path / "same"
    run(root, recipe_env, speechocean, same)
    for f in ("wav.scp", "utt2spk", "spk2utt", "utt2dur", "trials"):
        d = "speechocean762_test"
        assert (same / d / f).read_bytes() == (out / d / f).read_bytes(), f
    other = tmp_path / "other"
    run(root, recipe_env, "--seed", 1, "--use-pipes", "true", speechocean, other)
    u2s_other = read_map(other / "speechocean762_test/utt2spk")
    assert len(set(u2s_other.values())) == 25 and set(u2s_other.values()) != set(u2s_te.values())
    scp_pipe = read_scp(other / "speechocean762_test/wav.scp")
    utt = next(iter(scp_pipe))
    assert scp_pipe[utt].startswith("sox ") and scp_pipe[utt].endswith("-t wav - |")
    x, sr = read_audio(scp_pipe[utt])
    y, _ = sf.read(str(speechocean / "audio" / (utt.split("-", 1)[1] + ".flac")), dtype="int16")
    assert sr == 16000 and np.array_equal(x, y.astype(np.float32))
    assert abs(float(read_map(other / "speechocean762_test/utt2dur")[utt]) - len(y) / sr) < 1e-3


def make_official(src: Path, speechocean: Path, halves: dict[str, list[str]], n_utt: int = 3) -> None:
    """A tiny official-layout tree: WAVE/SPEAKERnnnn/<utt>.WAV (sox from the FLACs) plus Kaldi lists."""
    orig = read_map(speechocean / "utt2spk")
    by_spk: dict[str, list[str]] = {}
    for u, s in orig.items():
        by_spk.setdefault(s, []).append(u)
    for half, spks in halves.items():
        (src / half).mkdir(parents=True)
        scp, u2s = [], []
        for s in spks:
            (src / "WAVE" / f"SPEAKER{s}").mkdir(parents=True)
            for u in sorted(by_spk[s])[:n_utt]:
                rel = f"WAVE/SPEAKER{s}/{u}.WAV"
                subprocess.run(["sox", str(speechocean / "audio" / f"{u}.flac"), str(src / rel)], check=True)
                scp.append(f"{u} {rel}")
                u2s.append(f"{u} {s}")
        (src / half / "wav.scp").write_text("\n".join(scp) + "\n")
        (src / half / "utt2spk").write_text("\n".join(u2s) + "\n")
        (src / half / "spk2utt").write_text("".join(f"{s} x\n" for s in spks))
        (src / half / "text").write_text("".join(f"{line.split()[0]} HELLO\n" for line in scp))


def test_official_layout(root, recipe_env, speechocean, tmp_path):
    src = tmp_path / "so762"
    make_official(src, speechocean, {"train": ["0001", "0005", "0026"], "test": ["0006", "0036"]})
    out = tmp_path / "data"
    p = run(root, recipe_env, "--num-test-spk", 1, src, out)
    assert "official train/test split" in p.stdout
    u2s_tr = read_map(out / "speechocean762_train/utt2spk")
    u2s_te = read_map(out / "speechocean762_test/utt2spk")
    assert sorted(set(u2s_tr.values())) == ["0001", "0005", "0026"] and len(u2s_tr) == 9
    assert sorted(set(u2s_te.values())) == ["0006", "0036"] and len(u2s_te) == 6
    assert all(u.startswith(s + "-") and u[len(s) + 1:].startswith("0" + s) for u, s in u2s_tr.items())
    scp = read_scp(out / "speechocean762_train/wav.scp")
    first = scp[c_sorted(scp)[0]]
    assert Path(first).is_absolute() and first.endswith("WAVE/SPEAKER0001/000010011.WAV")
    x, sr = read_audio(first)
    assert sr == 16000 and abs(float(read_map(out / "speechocean762_train/utt2dur")["0001-000010011"])
                               - len(x) / sr) < 1e-3
    trials = [t.split() for t in lines(out / "speechocean762_test/trials")]
    assert len(trials) == 15 and sum(t[2] == "target" for t in trials) == 6
    # WAV stays a path even with pipes
    run(root, recipe_env, "--use-pipes", "true", src, tmp_path / "pipes")
    assert read_scp(tmp_path / "pipes/speechocean762_train/wav.scp") == scp

    # one official half only: its speakers are split by seed
    one = tmp_path / "one"
    make_official(one, speechocean, {"test": ["0006", "0036", "0048", "0053"]}, n_utt=2)
    run(root, recipe_env, "--num-test-spk", 2, one, tmp_path / "one_data")
    tr = set(read_map(tmp_path / "one_data/speechocean762_train/utt2spk").values())
    te = set(read_map(tmp_path / "one_data/speechocean762_test/utt2spk").values())
    assert len(tr) == 2 and len(te) == 2 and tr | te == {"0006", "0036", "0048", "0053"}
    # a one-speaker test set (only target trials, no EER) is refused at preparation
    p = run(root, recipe_env, "--num-test-spk", 1, one, tmp_path / "one_spk", ok=False)
    assert "a test set needs at least 2 speakers (one speaker gives only target trials" in p.stderr, p.stderr
    assert not (tmp_path / "one_spk/speechocean762_test").exists()


def test_errors(root, recipe_env, speechocean, tmp_path):
    src = tmp_path / "so762"
    make_official(src, speechocean, {"train": ["0001"], "test": ["0006"]}, n_utt=2)
    (src / "WAVE/SPEAKER0006/000060015.WAV").unlink()
    p = run(root, recipe_env, src, tmp_path / "data", ok=False)
    assert f"{src}/test/wav.scp:1: audio file not found" in p.stderr
    assert not (tmp_path / "data").exists()
    p = run(root, recipe_env, tmp_path, tmp_path / "data", ok=False)
    assert "not a speechocean762 directory" in p.stderr
    p = run(root, recipe_env, "--num-test-spk", 125, speechocean, tmp_path / "data", ok=False)
    assert "cannot take 125 test speakers out of 125" in p.stderr
