"""local/prepare_voxceleb.sh on a tiny VoxCeleb-shaped tree built here: VoxCeleb1 WAV, VoxCeleb2 m4a
(ffmpeg's AAC encoder) and official-format trial lists."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from sslsv.audio import read_audio
from sslsv.corpora.voxceleb import ffprobe_duration, m4a_duration
from sslsv.tables import c_sorted, read_map, read_scp

SCRIPT = "local/prepare_voxceleb.sh"
VOX1_DEV = ["id10001", "id10002"]
VOX1_TEST = ["id10270", "id10271", "id10272"]
VOX2 = ["id00012", "id00015"]
VIDEOS = ["x6u-Yq_31kE", "8jEAjG6SegY"]
AAC_FRAME = 1024

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")


def run(root: Path, env: dict, *args: object, ok: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run([str(root / SCRIPT), *map(str, args)], env=env, capture_output=True, text=True,
                       timeout=120)
    assert (p.returncode == 0) == ok, p.stdout + p.stderr
    return p


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> tuple[Path, dict[str, int]]:
    """vox1/wav/<spk>/<yt>/<n>.wav and vox2/dev/aac/<spk>/<yt>/<n>.m4a; returns (root, samples by utt)."""
    top = tmp_path_factory.mktemp("vox")
    rng = np.random.default_rng(0)
    lengths: dict[str, int] = {}
    for spks, sub, ext in ((VOX1_DEV + VOX1_TEST, "vox1/wav", "wav"), (VOX2, "vox2/dev/aac", "m4a")):
        for spk in spks:
            for yt in VIDEOS:
                d = top / sub / spk / yt
                d.mkdir(parents=True)
                for k in (1, 2):
                    n = int(rng.integers(4000, 12000))
                    x = (np.sin(np.arange(n) * 0.05 * k) * 8000 + rng.normal(0, 300, n)).astype(np.int16)
                    utt = f"{spk}-{yt}-{k:05d}"
                    lengths[utt] = n
                    if ext == "wav":
                        sf.write(str(d / f"{k:05d}.wav"), x, 16000, subtype="PCM_16")
                    else:
                        tmp = d / f".{k}.wav"
                        sf.write(str(tmp), x, 16000, subtype="PCM_16")
                        subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(tmp), "-c:a", "aac",
                                        "-b:a", "64k", str(d / f"{k:05d}.m4a")], check=True)
                        tmp.unlink()
    (top / "vox1/wav/id10001/readme.txt").write_text("not audio\n")
    o = ["1 id10270/x6u-Yq_31kE/00001.wav id10270/8jEAjG6SegY/00002.wav",
         "0 id10270/x6u-Yq_31kE/00001.wav id10271/x6u-Yq_31kE/00002.wav",
         "1 id10271/8jEAjG6SegY/00001.wav id10271/x6u-Yq_31kE/00001.wav",
         "0 id10272/8jEAjG6SegY/00002.wav id10271/x6u-Yq_31kE/00001.wav"]
    (top / "vox1/veri_test.txt").write_text("\n".join(o) + "\n")
    (top / "vox1/veri_test2.txt").write_text("\n".join(o[:3]) + "\n")
    return top, lengths


def test_o_lists_pipes(root, recipe_env, tree, tmp_path):
    top, lengths = tree
    out = tmp_path / "data"
    p = run(root, recipe_env, "--vox1", top / "vox1", "--vox2", top / "vox2", "--nj", 2, out)
    assert "Vox1-O lists" in p.stdout
    train, test = out / "voxceleb_train", out / "voxceleb_test"
    u2s_tr, u2s_te = read_map(train / "utt2spk"), read_map(test / "utt2spk")
    # test = the Vox1-O speakers (all their utterances); train = Vox2 dev + Vox1 dev
    assert sorted(set(u2s_te.values())) == VOX1_TEST and len(u2s_te) == 12
    assert sorted(set(u2s_tr.values())) == sorted(VOX2 + VOX1_DEV) and len(u2s_tr) == 16
    assert all(u.startswith(s + "-") for u, s in {**u2s_tr, **u2s_te}.items())
    assert set(u2s_tr) | set(u2s_te) == set(lengths)
    for d in (train, test):
        for f in ("wav.scp", "utt2spk", "spk2utt", "utt2dur"):
            keys = [line.split()[0] for line in (d / f).read_text().splitlines()]
            assert keys == c_sorted(keys), d / f
    # trials in Kaldi form; "trials" is the cleaned Vox1-O list
    t_clean = (test / "trials_O_clean").read_text().splitlines()
    assert t_clean == ["id10270-x6u-Yq_31kE-00001 id10270-8jEAjG6SegY-00002 target",
                       "id10270-x6u-Yq_31kE-00001 id10271-x6u-Yq_31kE-00002 nontarget",
                       "id10271-8jEAjG6SegY-00001 id10271-x6u-Yq_31kE-00001 target"]
    assert (test / "trials").read_text().splitlines() == t_clean
    t_o = (test / "trials_O").read_text().splitlines()
    assert len(t_o) == 4 and t_o[3] == "id10272-8jEAjG6SegY-00002 id10271-x6u-Yq_31kE-00001 nontarget"
    assert not (test / "trials_E").exists()
    # Vox1 entries are WAV paths, Vox2 entries ffmpeg pipes that decode to the right length
    scp, dur = read_scp(train / "wav.scp"), read_map(train / "utt2dur")
    for utt, entry in scp.items():
        n = lengths[utt]
        if utt.startswith("id1"):
            assert entry == str(top / "vox1/wav" / utt[:7] / utt[8:-6] / f"{utt[-5:]}.wav")
            assert float(dur[utt]) == pytest.approx(n / 16000, abs=1e-3)
        else:
            m4a = top / "vox2/dev/aac" / utt[:7] / utt[8:-6] / f"{utt[-5:]}.m4a"
            assert entry == f"ffmpeg -v 8 -i {m4a} -f wav -acodec pcm_s16le - |"
            x, sr = read_audio(entry)
            assert sr == 16000 and n <= len(x) < n + AAC_FRAME
            assert float(dur[utt]) == pytest.approx(n / 16000, abs=1e-3)
            assert m4a_duration(str(m4a)) == pytest.approx(ffprobe_duration(str(m4a)), abs=1e-4)


def test_convert_m4a_resumes(root, recipe_env, tree, tmp_path):
    top, lengths = tree
    out, wav_dir = tmp_path / "data", tmp_path / "vox2_wav"
    args = ("--vox1", top / "vox1", "--vox2", top / "vox2", "--convert-m4a", "true", "--wav-dir", wav_dir,
            "--nj", 2, out)
    p = run(root, recipe_env, *args)
    assert "converted 8 m4a files" in p.stderr
    scp = read_scp(out / "voxceleb_train/wav.scp")
    vox2 = {u: e for u, e in scp.items() if u.startswith("id0")}
    assert len(vox2) == 8
    for utt, entry in vox2.items():
        assert entry == str(wav_dir / utt[:7] / utt[8:-6] / f"{utt[-5:]}.wav")
        x, sr = read_audio(entry)
        assert sr == 16000 and lengths[utt] <= len(x) < lengths[utt] + AAC_FRAME
        assert float(read_map(out / "voxceleb_train/utt2dur")[utt]) == pytest.approx(len(x) / sr, abs=1e-3)
    assert not list(wav_dir.rglob("*.tmp"))
    # resume: a missing and a broken file are redone, the complete ones kept untouched
    files = sorted(vox2.values())
    Path(files[0]).unlink()
    Path(files[1]).write_bytes(b"RIFF")
    mtimes = {f: os.stat(f).st_mtime_ns for f in files[2:]}
    p = run(root, recipe_env, *args)
    assert "converted 2 m4a files" in p.stderr and "(6 already there)" in p.stderr
    assert {f: os.stat(f).st_mtime_ns for f in files[2:]} == mtimes
    assert len(read_audio(files[1])[0]) >= lengths[c_sorted(vox2)[1]]


def test_e_lists_train_on_vox2_only(root, recipe_env, tree, tmp_path):
    top, _ = tree
    tdir = tmp_path / "lists"
    tdir.mkdir()
    shutil.copy(top / "vox1/veri_test2.txt", tdir)
    (tdir / "list_test_all2.txt").write_text(
        "1 id10001/x6u-Yq_31kE/00001.wav id10001/x6u-Yq_31kE/00002.wav\n"
        "0 id10002/8jEAjG6SegY/00001.wav id10270/x6u-Yq_31kE/00002.wav\n")
    out = tmp_path / "data"
    p = run(root, recipe_env, "--vox1", top / "vox1", "--vox2", top / "vox2", "--trials-dir", tdir, out)
    assert "training VoxCeleb2 dev only" in p.stdout
    assert sorted(set(read_map(out / "voxceleb_train/utt2spk").values())) == VOX2
    te = read_map(out / "voxceleb_test/utt2spk")
    # the Vox1 speakers named in the lists (id10272 is only in veri_test.txt, not given here: unused)
    assert sorted(set(te.values())) == ["id10001", "id10002", "id10270", "id10271"] and len(te) == 16
    assert (out / "voxceleb_test/trials_E_clean").read_text().splitlines()[1] == \
        "id10002-8jEAjG6SegY-00001 id10270-x6u-Yq_31kE-00002 nontarget"
    assert len((out / "voxceleb_test/trials").read_text().splitlines()) == 3  # Vox1-O cleaned
    # without VoxCeleb2 there is nothing left to train on
    p = run(root, recipe_env, "--vox1", top / "vox1", "--trials-dir", tdir, tmp_path / "x", ok=False)
    assert "training needs VoxCeleb2 dev (--vox2)" in p.stderr


def test_bad_trial_line(root, recipe_env, tree, tmp_path):
    top, _ = tree
    tdir = tmp_path / "lists"
    tdir.mkdir()
    good = (top / "vox1/veri_test2.txt").read_text().splitlines()
    bad = good[:2] + ["1 id10270/x6u-Yq_31kE/00001.wav id10270/x6u-Yq_31kE/00009.wav"]
    (tdir / "veri_test2.txt").write_text("\n".join(bad) + "\n")
    out = tmp_path / "data"
    p = run(root, recipe_env, "--vox1", top / "vox1", "--vox2", top / "vox2", "--trials-dir", tdir, out,
            ok=False)
    assert (f"{tdir}/veri_test2.txt:3: id10270/x6u-Yq_31kE/00009.wav (utterance id10270-x6u-Yq_31kE-00009) "
            "is not in the VoxCeleb1 audio tree") in p.stderr
    assert not out.exists()
    (tdir / "veri_test2.txt").write_text("\n".join(good[:1] + ["1 " + good[1][2:]]) + "\n")
    p = run(root, recipe_env, "--vox1", top / "vox1", "--trials-dir", tdir, out, ok=False)
    assert f"{tdir}/veri_test2.txt:2: label 1 contradicts the speakers" in p.stderr
    p = run(root, recipe_env, "--vox1", top / "vox1", "--trials-dir", tmp_path, out, ok=False)
    assert "no VoxCeleb1 trial list found" in p.stderr
