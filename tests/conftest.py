"""Shared fixtures: the recipe root, an environment for running its shell scripts, the speechocean762 copy."""

from __future__ import annotations

import os
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


@pytest.fixture(scope="session")
def demo_ivectors(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A work dir in which ./run.sh has run stages 0-5 on the demo corpus with a small i-vector system
    (64 Gaussians, 50-dim i-vectors, 3 extractor iterations; noise and reverb copies only), so that the
    clustering stages have real i-vectors and augmented views to work on:
    ``<work>/exp/ivectors_demo_train{,_aug}/ivector.scp``, ``<work>/data/demo_train{,_aug}``."""
    import subprocess

    import yaml

    work = tmp_path_factory.mktemp("demo_recipe")
    cfg = yaml.safe_load((ROOT / "conf/ivector.yaml").read_text())
    cfg["diag_ubm"].update(num_gauss=64, num_iters_init=10, num_iters=2, num_frames=100000)
    cfg["full_ubm"].update(num_iters=2)
    cfg["extractor"].update(ivector_dim=50, num_iters=3)
    cfg["backend"].update(lda_dim=32)
    (work / "ivector.yaml").write_text(yaml.safe_dump(cfg))
    cmd = [str(ROOT / "run.sh"), "--corpus", "demo", "--corpus-dir", str(work / "corpus"),
           "--data", str(work / "data"), "--exp", str(work / "exp"), "--mfcc-dir", str(work / "mfcc"),
           "--aug-types", "noise,reverb", "--ivector-config", str(work / "ivector.yaml"),
           "--nj", "2", "--stop-stage", "5"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return work
