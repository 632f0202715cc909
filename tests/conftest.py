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
