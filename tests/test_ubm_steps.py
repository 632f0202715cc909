"""steps/train_diag_ubm.sh (--nj 2: per-part statistics through $cmd) and steps/train_full_ubm.sh
(--nj 1: one process) end to end on 40 utterances of speech (``speech_data``; 8 Gaussians), the skip of a
finished step, and resume: a diag run killed after its first iteration and rerun gives the same
final.dubm as an uninterrupted run (CPU, bitwise)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from sslsv.ivector.gmm import DiagGmm, FullGmm

CONFIG = """features:
  delta_window: 3
  delta_order: 2
  cmn_window: 300
diag_ubm:
  num_gauss: 8
  initial_gauss_proportion: 0.5
  num_iters_init: 6
  num_frames: 4000
  num_iters: 2
  num_gselect: 4
  subsample: 2
  min_gaussian_weight: 1.0e-4
  remove_low_count_gaussians: true
full_ubm:
  num_iters: 2
  num_gselect: 3
  subsample: 2
  min_gaussian_weight: 1.0e-4
  remove_low_count_gaussians: false
"""


@pytest.fixture(scope="module")
def small(root, tmp_path_factory, speech_data) -> tuple[Path, Path]:
    src = speech_data
    tmp = tmp_path_factory.mktemp("ubm")
    data = tmp / "data"
    data.mkdir()
    for f in ("feats.scp", "vad.scp", "utt2spk"):
        lines = (src / f).read_text().splitlines()[:40]
        (data / f).write_text("\n".join(lines) + "\n")
    cfg = tmp / "ivector.yaml"
    cfg.write_text(CONFIG)
    return data, cfg


def run(cmd: list[str], env, cwd) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    return r


@pytest.fixture(scope="module")
def trained(small, root, recipe_env, tmp_path_factory) -> tuple[Path, Path, str]:
    data, cfg = small
    out = tmp_path_factory.mktemp("ubm_out")
    r = run(["steps/train_diag_ubm.sh", "--nj", "2", "--device", "cpu", "--config", str(cfg), str(data),
             str(out / "diag")], recipe_env, root)
    r2 = run(["steps/train_full_ubm.sh", "--nj", "1", "--device", "cpu", "--config", str(cfg), str(data),
              str(out / "diag"), str(out / "full")], recipe_env, root)
    return out / "diag", out / "full", r.stdout + r2.stdout


def test_steps_end_to_end(trained, small, root, recipe_env):
    diag, full, log = trained
    d = DiagGmm.load(diag / "final.dubm")
    f = FullGmm.load(full / "final.ubm")
    assert d.dim == 72 and d.num_gauss <= 8 and f.num_gauss == d.num_gauss
    for p in ("0.dubm", "1.dubm", "2.dubm", "frame_opts", "log/init.log"):
        assert (diag / p).is_file(), p
    for p in ("0.ubm", "1.ubm", "2.ubm", "frame_opts"):
        assert (full / p).is_file(), p
    assert "iteration 1: average log-likelihood per frame" in log
    assert "wrote" in log and "final.ubm" in log
    np.testing.assert_array_equal(FullGmm.load(full / "0.ubm").covars[:, 0, 0], d.vars[:, 0])
    # full-UBM EM with fixed gselect: the per-iteration log-likelihood does not decrease
    lls = [float(line.split("per frame ")[1].split()[0]) for line in log.splitlines()
           if "train_full_ubm.sh: iteration" in line]
    assert len(lls) == 2 and lls[1] >= lls[0] - 1e-9
    data, cfg = small
    r = run(["steps/train_diag_ubm.sh", "--nj", "2", "--device", "cpu", "--config", str(cfg), str(data),
             str(diag)], recipe_env, root)
    assert "up to date" in r.stdout


def test_resume_after_kill_gives_same_model(trained, small, root, recipe_env, tmp_path):
    diag, _, _ = trained
    data, cfg = small
    out = tmp_path / "diag"
    cmd = ["steps/train_diag_ubm.sh", "--nj", "2", "--device", "cpu", "--config", str(cfg), str(data),
           str(out)]
    p = subprocess.Popen(cmd, env=recipe_env, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         start_new_session=True)
    t0 = time.time()
    while not (out / "1.dubm").exists() and p.poll() is None and time.time() - t0 < 240:
        time.sleep(0.05)
    os.killpg(p.pid, signal.SIGKILL)                # the step and its running jobs
    p.wait()
    assert (out / "1.dubm").exists() and not (out / "final.dubm").exists()
    r = run(cmd, recipe_env, root)
    assert "resuming after iteration 0" in r.stdout
    a, b = DiagGmm.load(diag / "final.dubm"), DiagGmm.load(out / "final.dubm")
    np.testing.assert_array_equal(a.weights, b.weights)
    np.testing.assert_array_equal(a.means, b.means)
    np.testing.assert_array_equal(a.vars, b.vars)
