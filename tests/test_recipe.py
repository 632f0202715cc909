"""End-to-end runs of ./run.sh on the real speechocean762 copy: stages 0-1 produce consistent Kaldi data
dirs, an unchanged rerun is skipped in under 5 s, and a run killed in the middle of stage 1 and started
again ends with feature archives byte-identical to an uninterrupted run."""

from __future__ import annotations

import hashlib
import os
import signal
import time
from pathlib import Path

import kaldiio
import numpy as np
import pytest
from conftest import run_speechocean_recipe
from sslsv.tables import read_map

pytestmark = pytest.mark.slow


def ark_digests(mfcc_dir: Path) -> dict[str, str]:
    return {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(mfcc_dir.glob("*.ark"))}


@pytest.fixture(scope="module")
def finished(speechocean_recipe: Path) -> Path:
    return speechocean_recipe


def test_stage_0_and_1_outputs(finished: Path) -> None:
    data = finished / "data"
    for name, n_utt, n_spk in [("speechocean762_train", 2000, 100), ("speechocean762_test", 500, 25)]:
        d = data / name
        utts = [line.split()[0] for line in (d / "utt2spk").read_text().splitlines()]
        assert len(utts) == n_utt
        assert len((d / "spk2utt").read_text().splitlines()) == n_spk
        assert utts == sorted(utts, key=str.encode)
        feats = dict(kaldiio.load_scp(str(d / "feats.scp")))
        vad = dict(kaldiio.load_scp(str(d / "vad.scp")))
        frames = {k: int(v) for k, v in read_map(d / "utt2num_frames").items()}
        assert sorted(feats) == sorted(vad) == sorted(frames) == sorted(utts)
        for utt in utts[:: max(1, n_utt // 25)]:
            m, v = feats[utt], vad[utt]
            assert m.shape == (frames[utt], 24) and m.dtype == np.float32
            assert v.shape == (frames[utt],) and set(np.unique(v)) <= {0.0, 1.0}
            # Kaldi's energy VAD with the voxceleb config: voiced iff E > 5.5 + 0.5 * mean(E).
            np.testing.assert_array_equal(v, (m[:, 0] > 5.5 + 0.5 * m[:, 0].mean()).astype(np.float32))
    trials = (data / "speechocean762_test" / "trials").read_text().splitlines()
    assert len(trials) == 500 * 499 // 2
    assert sum(t.endswith(" target") for t in trials) == 25 * 20 * 19 // 2


def test_unchanged_rerun_is_skipped_quickly(finished: Path, root: Path, speechocean: Path) -> None:
    before = ark_digests(finished / "mfcc")
    t0 = time.monotonic()
    r = run_speechocean_recipe(finished)
    elapsed = time.monotonic() - t0
    assert r.returncode == 0, r.stderr[-3000:]
    assert elapsed < 5.0, f"unchanged rerun took {elapsed:.1f} s"
    assert "stage 0:" in r.stdout and "up to date" in r.stdout
    assert r.stdout.count("skipping") >= 5  # stage 0, and MFCC + VAD of both sets
    assert ark_digests(finished / "mfcc") == before


def test_killed_stage_1_resumes_to_identical_features(finished: Path, tmp_path: Path, root: Path,
                                                      speechocean: Path) -> None:
    work = tmp_path / "killed"
    r = run_speechocean_recipe(work, "--stop-stage", "0")
    assert r.returncode == 0, r.stderr[-3000:]
    proc = run_speechocean_recipe(work, "--stage", "1", wait=False)
    deadline = time.monotonic() + 120
    while not list((work / "mfcc").glob("*train.*.done")):
        assert proc.poll() is None, "run.sh ended before any MFCC job finished"
        assert time.monotonic() < deadline, "no MFCC job finished within 120 s"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(list((work / "mfcc").glob("*train.*.done")))
    assert done < 4, "all jobs had finished before the kill; the test proves nothing"
    assert not (work / "data" / "speechocean762_train" / "feats.scp").exists()
    r = run_speechocean_recipe(work, "--stage", "1")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert ark_digests(work / "mfcc") == ark_digests(finished / "mfcc")
    for name in ("speechocean762_train", "speechocean762_test"):
        for f in ("utt2num_frames", "vad.scp"):
            ours = (work / "data" / name / f).read_text().replace(str(work), "")
            assert ours == (finished / "data" / name / f).read_text().replace(str(finished), "")
