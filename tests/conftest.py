"""Shared fixtures: the recipe root, an environment for running its shell scripts, the speechocean762 copy."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SPEECHOCEAN = Path(os.environ.get("SSLSV_SPEECHOCEAN", ROOT.parent / "shared/data/speechocean762-train"))


@pytest.fixture(scope="session")
def root() -> Path:
    """The recipe root (where run.sh is)."""
    return ROOT


@pytest.fixture(scope="session")
def recipe_env() -> dict[str, str]:
    """Environment in which the recipe's shell scripts and pyscripts run as after sourcing path.sh."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(ROOT / "utils"), str(ROOT / "steps"), str(ROOT / "pyscripts"),
                                   env.get("PATH", "")])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "pyscripts"), env.get("PYTHONPATH")]))
    env["LC_ALL"] = "C"
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture(scope="session")
def speechocean() -> Path:
    """The speechocean762 training half (real speech); tests using it skip when it is absent."""
    if not (SPEECHOCEAN / "utt2spk").is_file():
        pytest.skip(f"speechocean762 copy not found at {SPEECHOCEAN} (set SSLSV_SPEECHOCEAN)")
    return SPEECHOCEAN


def run_speechocean_recipe(work: Path, *extra: str, wait: bool = True):
    """``./run.sh`` on the speechocean762 copy with data/exp/mfcc under ``work`` (stages 0-1 by default)."""
    import subprocess

    cmd = [str(ROOT / "run.sh"), "--corpus", "speechocean762", "--corpus-dir", str(SPEECHOCEAN),
           "--data", str(work / "data"), "--exp", str(work / "exp"), "--mfcc-dir", str(work / "mfcc"),
           "--nj", "4", "--stop-stage", "1", *extra]
    if wait:
        return subprocess.run(cmd, capture_output=True, text=True)
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


@pytest.fixture(scope="session")
def speechocean_recipe(tmp_path_factory: pytest.TempPathFactory, speechocean: Path) -> Path:
    """A work dir in which ./run.sh has prepared speechocean762 (100 / 25 speakers, seed 0) and computed
    its MFCC and VAD (stages 0-1): ``<work>/data/speechocean762_{train,test}`` with feats.scp, vad.scp,
    trials. Built once per test session (about 30 s on 2 cores) for every test that needs real features."""
    work = tmp_path_factory.mktemp("speechocean_recipe")
    r = run_speechocean_recipe(work)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return work


def have_speechocean() -> bool:
    return (SPEECHOCEAN / "utt2spk").is_file()


def _run_demo_recipe(work: Path, *args: str) -> None:
    """``./run.sh`` on the demo corpus with corpus, data, exp and mfcc under ``work``."""
    import subprocess

    cmd = [str(ROOT / "run.sh"), "--corpus", "demo", "--corpus-dir", str(work / "corpus"),
           "--data", str(work / "data"), "--exp", str(work / "exp"), "--mfcc-dir", str(work / "mfcc"),
           "--nj", "2", *args]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]


@pytest.fixture(scope="session")
def demo_recipe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A work dir in which ./run.sh has synthesised the demo corpus and computed its MFCC and VAD (stages
    0-1, about 45 s on 2 cores): ``<work>/data/demo_{train,test}`` (48 / 12 speakers x 16 utterances)."""
    work = tmp_path_factory.mktemp("demo_recipe")
    _run_demo_recipe(work, "--stop-stage", "1")
    return work


@pytest.fixture(scope="session")
def speech_data(request: pytest.FixtureRequest) -> Path:
    """A training data dir after stages 0-1 (wav.scp, utt2spk, spk2utt, feats.scp, vad.scp): speechocean762
    (real read speech) when the copy is there, otherwise the demo corpus (synthesised speech), so that the
    feature, VAD, UBM, i-vector, augmentation and embedding-training steps are tested on every clone."""
    if have_speechocean():
        return request.getfixturevalue("speechocean_recipe") / "data/speechocean762_train"
    return request.getfixturevalue("demo_recipe") / "data/demo_train"


@dataclass(frozen=True)
class SpeechAudio:
    """Audio files of speech (16 kHz, at least 40 utterances) and their speakers, sorted by utterance."""
    files: dict[str, Path]
    utt2spk: dict[str, str]


@pytest.fixture(scope="session")
def speech_audio(request: pytest.FixtureRequest) -> SpeechAudio:
    """The speechocean762 copy's FLAC files when it is there (first ``000010011``, the utterance the
    front-end tests have always used), otherwise the demo corpus's WAV files (stage 0 of ``demo_recipe``)."""
    def table(path: Path) -> dict[str, str]:
        return dict(sorted(ln.split(maxsplit=1) for ln in path.read_text().splitlines()))

    if have_speechocean():
        utt2spk = table(SPEECHOCEAN / "utt2spk")
        return SpeechAudio({u: SPEECHOCEAN / "audio" / f"{u}.flac" for u in utt2spk}, utt2spk)
    data = request.getfixturevalue("demo_recipe") / "data/demo_train"
    return SpeechAudio({u: Path(f) for u, f in table(data / "wav.scp").items()}, table(data / "utt2spk"))


@pytest.fixture(scope="session")
def demo_ivectors(demo_recipe: Path) -> Path:
    """The demo work dir of ``demo_recipe`` taken on through stage 5 with a small i-vector system
    (64 Gaussians, 50-dim i-vectors, 3 extractor iterations; noise and reverb copies only), so that the
    clustering stages have real i-vectors and augmented views to work on:
    ``<work>/exp/ivectors_demo_train{,_aug}/ivector.scp``, ``<work>/data/demo_train{,_aug}``."""
    import yaml

    work = demo_recipe
    cfg = yaml.safe_load((ROOT / "conf/ivector.yaml").read_text())
    cfg["diag_ubm"].update(num_gauss=64, num_iters_init=10, num_iters=2, num_frames=100000)
    cfg["full_ubm"].update(num_iters=2)
    cfg["extractor"].update(ivector_dim=50, num_iters=3)
    cfg["backend"].update(lda_dim=32)
    (work / "ivector.yaml").write_text(yaml.safe_dump(cfg))
    _run_demo_recipe(work, "--aug-types", "noise,reverb", "--ivector-config", str(work / "ivector.yaml"),
                     "--stage", "2", "--stop-stage", "5")
    return work


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    """One plain line when tests skipped for want of the speechocean762 copy (README, "Tests")."""
    skipped = [r for r in terminalreporter.stats.get("skipped", [])
               if "speechocean762 copy" in str(r.longrepr)]
    if skipped:
        terminalreporter.write_line(
            f"{len(skipped)} tests skipped: no speechocean762 copy at {SPEECHOCEAN} (set SSLSV_SPEECHOCEAN; "
            "README, 'Tests', says what they cover)", yellow=True)
