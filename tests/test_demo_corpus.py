"""The embedded demo corpus (local/make_demo_corpus.sh, sslsv.corpora.demo) and the naive MFCC k-means
baseline (local/mfcc_kmeans_baseline.py, sslsv.mfcc_baseline): a small corpus is built end to end and
checked for a valid data dir, audio format, durations, determinism, idempotence, resumption after a
kill, trials, and that its speakers are really distinguishable."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from sslsv.corpora import demo
from sslsv.mfcc_baseline import clustering_scores, mean_std, mfcc, utterance_stats
from sslsv.tables import DataError, c_sorted, read_map, read_scp, read_table

SMALL = ["--num-train-spk", "4", "--num-test-spk", "2", "--utts-per-spk", "4"]
NUM_UTTS = 24

pytestmark = pytest.mark.skipif(
    any(shutil.which(t) is None for t in demo.TOOLS),
    reason="sox, flite and espeak-ng are needed to synthesise the demo corpus")


def build(root: Path, env: dict[str, str], out: Path, *opts: str) -> subprocess.CompletedProcess:
    cmd = [str(root / "local/make_demo_corpus.sh"), *SMALL, *opts, str(out / "audio"), str(out / "data")]
    p = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    return p


def checksums(audio: Path) -> dict[str, str]:
    return {f.name: hashlib.md5(f.read_bytes()).hexdigest() for f in sorted(audio.glob("*.wav"))}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, root, recipe_env) -> Path:
    out = tmp_path_factory.mktemp("demo")
    build(root, recipe_env, out, "--nj", "2")
    return out


def test_data_dirs_valid_and_sorted(corpus):
    data = corpus / "data"
    spks = {}
    for name in ("demo_train", "demo_test"):
        d = data / name
        for f in ("wav.scp", "utt2spk", "spk2utt", "utt2dur"):
            keys = [line.split()[0] for line in (d / f).read_text().splitlines()]
            assert keys == c_sorted(keys), f"{d / f} not C-sorted"
        utt2spk = read_map(d / "utt2spk")
        wavs = read_scp(d / "wav.scp")
        assert set(wavs) == set(utt2spk)
        spk2utt = {k: v for k, v in read_table(d / "spk2utt")}
        assert spk2utt == {s: c_sorted(u for u in utt2spk if utt2spk[u] == s) for s in set(utt2spk.values())}
        for utt, spk in utt2spk.items():
            assert re.fullmatch(r"spk\d{3}-u\d{3}", utt) and utt.startswith(spk + "-")
        # sorting by utterance and by speaker agree (speaker ids are prefixes)
        assert sorted(utt2spk.items(), key=lambda kv: (kv[1], kv[0])) == sorted(utt2spk.items())
        assert all(len(v) == 4 for v in spk2utt.values())
        durs = {u: float(v) for u, v in read_map(d / "utt2dur").items()}
        assert set(durs) == set(utt2spk)
        for u, path in wavs.items():
            assert os.path.isabs(path) and Path(path).parent == corpus / "audio"
            assert abs(sf.info(path).frames / 16000 - durs[u]) < 1e-3
        spks[name] = set(spk2utt)
    assert len(spks["demo_train"]) == 4 and len(spks["demo_test"]) == 2
    assert not spks["demo_train"] & spks["demo_test"]


def test_audio_format_and_durations(corpus):
    files = sorted((corpus / "audio").glob("*.wav"))
    assert len(files) == NUM_UTTS
    for f in files:
        info = sf.info(str(f))
        assert (info.samplerate, info.channels, info.subtype, info.format) == (16000, 1, "PCM_16", "WAV")
        x, _ = sf.read(str(f), dtype="int16")
        assert 2.0 <= len(x) / 16000 <= 6.0
        rms_db = 20 * np.log10(np.sqrt(np.mean(x.astype(float) ** 2)) / 32768)
        assert -36 < rms_db < -12, f"{f}: level {rms_db:.1f} dBFS"
        assert np.mean(np.abs(x) >= 32767) < 1e-3, f"{f}: clipped"


def test_trials(corpus):
    test = corpus / "data/demo_test"
    utt2spk = read_map(test / "utt2spk")
    rows = [line.split() for line in (test / "trials").read_text().splitlines()]
    n = len(utt2spk)
    assert len(rows) == n * (n - 1) // 2
    labels = Counter(r[2] for r in rows)
    assert labels["target"] == 2 * (4 * 3 // 2) and labels["nontarget"] == len(rows) - labels["target"]
    for a, b, lab in rows:
        assert a in utt2spk and b in utt2spk and a != b
        assert lab == ("target" if utt2spk[a] == utt2spk[b] else "nontarget")
    train_utts = set(read_map(corpus / "data/demo_train/utt2spk"))
    assert not train_utts & ({r[0] for r in rows} | {r[1] for r in rows})


def test_deterministic_rerun_skipped_and_option_change_rebuilds(corpus, tmp_path, root, recipe_env):
    reference = checksums(corpus / "audio")
    build(root, recipe_env, tmp_path, "--nj", "1")  # other place, other number of jobs: same bytes
    assert checksums(tmp_path / "audio") == reference
    mtimes = {f: f.stat().st_mtime_ns for f in (tmp_path / "audio").glob("*.wav")}
    t0 = time.time()
    p = build(root, recipe_env, tmp_path, "--nj", "1")
    assert time.time() - t0 < 5 and "skipping" in p.stdout
    assert {f: f.stat().st_mtime_ns for f in (tmp_path / "audio").glob("*.wav")} == mtimes
    p = build(root, recipe_env, tmp_path, "--seed", "1")
    assert "skipping" not in p.stdout
    changed = checksums(tmp_path / "audio")
    assert set(changed) == set(reference) and all(changed[k] != reference[k] for k in reference)
    # fewer utterances: the surplus WAVs of the previous build are removed
    p = subprocess.run([str(root / "local/make_demo_corpus.sh"), "--num-train-spk", "4", "--num-test-spk",
                        "2", "--utts-per-spk", "2", str(tmp_path / "audio"), str(tmp_path / "data")],
                       cwd=root, env=recipe_env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert len(list((tmp_path / "audio").glob("*.wav"))) == 12
    assert len(read_map(tmp_path / "data/demo_train/utt2spk")) == 8


def test_name_gives_its_own_data_dirs(corpus, tmp_path, root, recipe_env):
    """--name (run.sh passes its own) writes <name>_train / <name>_test and leaves demo_* alone: before,
    another name rewrote data/demo_* to point at the other audio."""
    shutil.copytree(corpus / "data", tmp_path / "data")
    before = {f: f.read_bytes() for f in (tmp_path / "data").rglob("*") if f.is_file()}
    p = build(root, recipe_env, tmp_path, "--name", "demo2")
    assert "skipping" not in p.stdout
    assert {f: f.read_bytes() for f in before} == before
    scp = read_scp(tmp_path / "data/demo2_train/wav.scp")
    assert len(scp) == 16 and all(v.startswith(str(tmp_path / "audio")) for v in scp.values())
    assert (tmp_path / "data/demo2_test/trials").is_file()
    assert "skipping" in build(root, recipe_env, tmp_path, "--name", "demo2").stdout
    run_sh = (root / "run.sh").read_text()
    assert 'local/make_demo_corpus.sh --nj "$nj" --seed "$seed" --name "$name"' in run_sh


def test_killed_build_resumes_without_truncated_files(corpus, tmp_path, root, recipe_env):
    reference = checksums(corpus / "audio")
    cmd = [str(root / "local/make_demo_corpus.sh"), *SMALL, "--nj", "1", str(tmp_path / "audio"),
           str(tmp_path / "data")]
    p = subprocess.Popen(cmd, cwd=root, env=recipe_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
    deadline = time.time() + 30
    while time.time() < deadline and len(list((tmp_path / "audio").glob("*.wav"))) < 3:
        time.sleep(0.02)
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    partial = checksums(tmp_path / "audio")
    assert 0 < len(partial) < NUM_UTTS
    assert all(reference[k] == v for k, v in partial.items())  # every WAV present is complete
    assert not (tmp_path / "audio/.demo_corpus.demo.done").exists()
    out = build(root, recipe_env, tmp_path, "--nj", "2").stdout
    assert f"synthesising {NUM_UTTS - len(partial)} ({len(partial)} already done)" in out
    assert checksums(tmp_path / "audio") == reference
    assert not list((tmp_path / "audio").glob(".*.tmp"))


def test_speakers_are_distinguishable(corpus):
    """Leave-one-out nearest speaker centroid on standardised MFCC means: far above chance (1/6)."""
    feats, spks = [], []
    for name in ("demo_train", "demo_test"):
        d = corpus / "data" / name
        utt2spk = read_map(d / "utt2spk")
        utts, x = utterance_stats(d)
        feats.append(x[:, :24])
        spks += [utt2spk[u] for u in utts]
    x = np.concatenate(feats)
    x = (x - x.mean(0)) / x.std(0)
    spks_arr = np.array(spks)
    correct = 0
    for i in range(len(x)):
        keep = np.arange(len(x)) != i
        names = sorted(set(spks_arr[keep]))
        cents = np.stack([x[keep & (spks_arr == s)].mean(0) for s in names])
        correct += names[int(np.argmin(((cents - x[i]) ** 2).sum(1)))] == spks_arr[i]
    assert correct / len(x) >= 0.6, f"nearest-centroid accuracy {correct}/{len(x)}"


def test_design_of_default_corpus():
    plan = demo.plan_corpus(48, 12, 16, 0)
    assert plan == demo.plan_corpus(48, 12, 16, 0)
    assert plan.utterances != demo.plan_corpus(48, 12, 16, 1).utterances
    assert len(plan.speakers) == 60 and len(plan.utterances) == 960
    assert len(plan.train) == 48 and len(plan.test) == 12 and not set(plan.train) & set(plan.test)
    by_voice = Counter(s.voice.label for s in plan.speakers.values())
    assert set(by_voice.values()) == {2}
    assert {s.voice.engine for s in plan.speakers.values()} == {"flite", "espeak-ng"}
    for label in by_voice:  # speakers sharing a voice: separated by their shifts and channel
        a, b = [s for s in plan.speakers.values() if s.voice.label == label]
        assert np.hypot((a.pitch_cents - b.pitch_cents) / 150, (a.formant_cents - b.formant_cents) / 100) >= 1
        assert a.channel != b.channel
    texts = [u.text for u in plan.utterances]
    assert len(set(texts)) >= 0.98 * len(texts)
    assert len({u.snr_db for u in plan.utterances}) > 500 and {u.noise for u in plan.utterances} == set(
        demo.NOISES)
    assert 0.1 < np.mean([u.reverb is None for u in plan.utterances]) < 0.3
    for u in plan.utterances[:50]:
        sox = demo.sox_command(plan.speakers[u.spk], u)
        assert sox[:3] == ["sox", "-R", "-D"]  # repeatable, no dither
        assert sox[sox.index("rate") + 2] == "16000"


def test_voices_exist():
    out = subprocess.run(["flite", "-lv"], capture_output=True, text=True).stdout.split()
    assert set(demo.FLITE_VOICES) <= set(out)
    ver = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True).stdout
    data = Path(ver.split("Data at:")[1].strip())
    for v in demo.ESPEAK_VARIANTS:
        assert (data / "voices/!v" / v).is_file(), f"espeak-ng has no variant {v}"
    text = "The farmer parked the car near the river after dinner."
    plain = set()
    for a in demo.ESPEAK_ACCENTS:
        w0 = subprocess.run(["espeak-ng", "-v", a, "--stdout", text], capture_output=True, check=True).stdout
        w1 = subprocess.run(["espeak-ng", "-v", f"{a}+f4", "--stdout", text], capture_output=True,
                            check=True).stdout
        assert len(w0) > 1000 and w0 != w1, f"espeak-ng ignores the variant of {a}"
        plain.add(w0)
    assert len(plain) == len(demo.ESPEAK_ACCENTS)


def test_missing_tools_named(tmp_path, root, recipe_env):
    with pytest.raises(DataError, match=r"sox, flite, espeak-ng.*apt-get install"):
        demo.check_tools(path=str(tmp_path))
    # a PATH with every command of the current one except the synthesis tools
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for d in recipe_env["PATH"].split(os.pathsep):
        if os.path.isdir(d):
            for f in os.scandir(d):
                link = bin_dir / f.name
                if f.name not in demo.TOOLS and not link.exists() and os.access(f.path, os.X_OK):
                    link.symlink_to(f.path)
    env = dict(recipe_env, PATH=str(bin_dir))
    p = subprocess.run([str(root / "local/make_demo_corpus.sh"), str(tmp_path / "a"), str(tmp_path / "d")],
                       cwd=root, env=env, capture_output=True, text=True)
    assert p.returncode != 0 and "sox flite espeak-ng" in p.stderr and "apt-get install" in p.stderr
    assert not (tmp_path / "a").exists()


def test_clustering_scores_known_answers():
    truth = ["a", "a", "a", "b", "b", "c"]
    assert clustering_scores(truth, [2, 2, 2, 0, 0, 1]) == pytest.approx(
        {"nmi": 1.0, "ari": 1.0, "purity": 1.0, "accuracy": 1.0})
    # contingency a:{0:2,1:1} b:{1:2} c:{1:1}: purity (2+2)/6; one-to-one match a->0, b->1: 4/6
    s = clustering_scores(truth, [0, 0, 1, 1, 1, 1])
    assert s["purity"] == pytest.approx(4 / 6) and s["accuracy"] == pytest.approx(4 / 6)
    # all in one cluster: purity = largest class, accuracy the same, NMI and ARI 0
    s = clustering_scores(truth, [0] * 6)
    assert s["purity"] == pytest.approx(0.5) and s["accuracy"] == pytest.approx(0.5)
    assert s["nmi"] == pytest.approx(0.0) and s["ari"] == pytest.approx(0.0)


def test_baseline_script_and_feats_path(corpus, tmp_path, root, recipe_env):
    import kaldiio

    d = corpus / "data/demo_train"
    p = subprocess.run([str(root / "local/mfcc_kmeans_baseline.py"), "--json", str(d)], cwd=root,
                       env=recipe_env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    assert r["num_utts"] == 16 and r["num_speakers"] == 4
    assert all(0 <= r[k] <= 1 for k in ("nmi", "purity", "accuracy")) and r["purity"] >= r["accuracy"]
    # a data dir with feats.scp + vad.scp: statistics over the voiced frames of those features
    e = tmp_path / "withfeats"
    e.mkdir()
    for f in ("wav.scp", "utt2spk", "spk2utt"):
        (e / f).write_bytes((d / f).read_bytes())
    wavs = read_scp(d / "wav.scp")
    feats, vads = {}, {}
    for u in c_sorted(wavs):
        x, sr = sf.read(wavs[u], dtype="int16")
        feats[u] = mfcc(x.astype(np.float32), sr)
        vads[u] = (np.arange(len(feats[u])) % 3 != 0).astype(np.float32)
    with kaldiio.WriteHelper(f"ark,scp:{e}/feats.ark,{e}/feats.scp") as w:
        for u in c_sorted(feats):
            w(u, feats[u])
    with kaldiio.WriteHelper(f"ark,scp:{e}/vad.ark,{e}/vad.scp") as w:
        for u in c_sorted(vads):
            w(u, vads[u])
    utts, x = utterance_stats(e)
    assert utts == c_sorted(wavs)
    want = np.stack([mean_std(feats[u][vads[u] > 0.5]) for u in utts])
    np.testing.assert_allclose(x, want, rtol=1e-5, atol=1e-4)
    _, from_wav = utterance_stats(d)
    assert not np.allclose(x, from_wav)  # the VAD selection mattered
