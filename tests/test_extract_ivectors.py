"""End to end on speech features: steps/train_ivector_extractor.sh (one process and parallel jobs, resume
after an interruption) and steps/extract_ivectors.sh on a small subset of ``speech_data``, with a small
full UBM fitted in the test (scikit-learn) to keep it fast; plus the sparse posterior files and the
speaker-mean outputs against direct computations."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
import warnings
from pathlib import Path

import kaldiio
import numpy as np
import pytest
from sslsv.ivector.extractor import IvectorExtractor
from sslsv.ivector.extractor_jobs import load_posteriors
from sslsv.ivector.frames import FrameOptions, iter_frames
from sslsv.ivector.gmm import FullGmm
from sslsv.ivector.posteriors import UbmPosteriors

NUM_UTTS = 36
CONFIG = """\
features: {delta_window: 3, delta_order: 2, cmn_window: 300}
extractor: {ivector_dim: 6, num_iters: 3, num_gselect: 5, min_post: 0.025, posterior_scale: 1.0,
            longest_utts: 0, gaussian_min_count: 20}
"""


def run(cmd: list[str], env: dict, cwd: Path) -> str:
    r = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    assert r.returncode == 0, f"{' '.join(cmd)} failed:\n{r.stdout}\n{r.stderr}"
    return r.stdout + r.stderr


@pytest.fixture(scope="module")
def setup(tmp_path_factory, root, recipe_env, speech_data):
    src = speech_data  # speech with features from ./run.sh
    from sklearn.mixture import GaussianMixture
    tmp = tmp_path_factory.mktemp("ie")
    data = tmp / "data"
    run(["utils/subset_data_dir.sh", "--per-spk", "1", str(src), str(tmp / "one")], recipe_env, root)
    run(["utils/subset_data_dir.sh", "--first", str(NUM_UTTS), str(tmp / "one"), str(data)], recipe_env, root)
    opts = FrameOptions()
    x = np.concatenate([f for _, f in iter_frames(data, opts, subsample=4)])
    with warnings.catch_warnings():   # a rough UBM is enough here; convergence does not matter
        warnings.simplefilter("ignore")
        gm = GaussianMixture(8, covariance_type="full", random_state=0, max_iter=20, reg_covar=1e-3).fit(x)
    ubmdir = tmp / "ubm"
    ubmdir.mkdir()
    FullGmm(gm.weights_, gm.means_, gm.covariances_).save(ubmdir / "final.ubm")
    opts.save(ubmdir / "frame_opts")
    (tmp / "conf.yaml").write_text(CONFIG)
    return tmp, data, ubmdir


def auxf_lines(out: str) -> list[float]:
    return [float(m) for m in re.findall(r"auxf/frame (-?[0-9.]+)", out)]


def test_train_resume_parallel_extract(setup, root, recipe_env):
    tmp, data, ubmdir = setup
    conf = str(tmp / "conf.yaml")
    # posteriors in two jobs, the iterations in one process reading both parts
    d1 = tmp / "ie1"
    out = run(["steps/train_ivector_extractor.sh", "--nj", "2", "--device", "cpu", "--config", conf,
               str(ubmdir), str(data), str(d1)], recipe_env, root)
    auxf = auxf_lines(out)
    print(out)
    assert len(auxf) == 3 and all(b - a >= -1e-6 for a, b in zip(auxf, auxf[1:], strict=False)), auxf
    assert (d1 / "final.ie").is_file() and (d1 / "final.ubm").is_file() and (d1 / "frame_opts").is_file()
    ref = IvectorExtractor.load(d1 / "final.ie")
    assert ref.M.shape == (8, 72, 6)
    # posterior file = UbmPosteriors on the same frames
    posts = {**load_posteriors(d1 / "post.1.npz"), **load_posteriors(d1 / "post.2.npz")}
    assert len(posts) == NUM_UTTS
    comp = UbmPosteriors(FullGmm.load(ubmdir / "final.ubm"), num_gselect=5)
    utt, x = next(iter_frames(data, FrameOptions()))
    idx, post = comp(x)
    n, (t, g, p) = posts[utt]
    dense = np.zeros((n, 8), np.float32)
    dense[t, g] = p
    ref_dense = np.zeros((n, 8), np.float32)
    np.put_along_axis(ref_dense, idx.numpy(), post.numpy(), axis=1)
    np.testing.assert_array_equal(dense, ref_dense)
    # idempotent: a rerun is skipped
    assert "up to date" in run(["steps/train_ivector_extractor.sh", "--nj", "2", "--device", "cpu",
                                "--config", conf, str(ubmdir), str(data), str(d1)], recipe_env, root)
    # interrupted after iteration 1 (2.ie, 3.ie never written): resume gives the same final model
    d2 = tmp / "ie2"
    shutil.copytree(d1, d2)
    for f in ("2.ie", "3.ie", "final.ie", "log/train_ivector_extractor.sslsv.stamp"):
        (d2 / f).unlink()
    # the copied fingerprint names d1's data path only through options: identical, so it resumes
    out = run(["steps/train_ivector_extractor.sh", "--nj", "2", "--device", "cpu", "--config", conf,
               str(ubmdir), str(data), str(d2)], recipe_env, root)
    assert "resuming after iteration 0" in out
    new = IvectorExtractor.load(d2 / "final.ie")
    np.testing.assert_allclose(new.M.numpy(), ref.M.numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(new.Sigma_inv.numpy(), ref.Sigma_inv.numpy(), rtol=1e-10, atol=1e-10)
    assert new.prior_offset == pytest.approx(ref.prior_offset, rel=1e-10)
    # parallel jobs (--nj 2 --iter-jobs 2, 1 iteration): same model as the one-process 1.ie up to
    # summation order
    d3 = tmp / "ie3"
    out = run(["steps/train_ivector_extractor.sh", "--nj", "2", "--iter-jobs", "2", "--num-iters", "1",
               "--device", "cpu", "--config", conf, str(ubmdir), str(data), str(d3)], recipe_env, root)
    par = IvectorExtractor.load(d3 / "final.ie")
    one = IvectorExtractor.load(d1 / "1.ie")
    np.testing.assert_allclose(par.M.numpy(), one.M.numpy(), rtol=1e-3, atol=1e-5)  # R rounded per job
    assert auxf_lines(out) == pytest.approx(auxf[:1], rel=1e-9)
    # extraction
    dx = tmp / "iv"
    out = run(["steps/extract_ivectors.sh", "--nj", "2", "--device", "cpu", "--config", conf, str(d1),
               str(data), str(dx)], recipe_env, root)
    ivs = {k: np.asarray(v) for k, v in kaldiio.load_scp(str(dx / "ivector.scp")).items()}
    assert len(ivs) == NUM_UTTS and all(v.dtype == np.float32 and v.shape == (6,) for v in ivs.values())
    spk = {k: np.asarray(v) for k, v in kaldiio.load_scp(str(dx / "spk_ivector.scp")).items()}
    u2s = dict(line.split() for line in (data / "utt2spk").read_text().splitlines())
    s0 = sorted(spk)[0]
    mine = [ivs[u] / np.linalg.norm(ivs[u]) * np.sqrt(6) for u in ivs if u2s[u] == s0]
    m = np.mean(mine, axis=0)
    np.testing.assert_allclose(spk[s0], m / np.linalg.norm(m) * np.sqrt(6), rtol=1e-5, atol=1e-5)
    assert (dx / "num_utts.ark").read_text().split("\n")[0] == f"{s0} {len(mine)}"
    assert "up to date" in run(["steps/extract_ivectors.sh", "--nj", "2", "--config", conf, str(d1),
                                str(data), str(dx)], recipe_env, root)


def test_training_killed_after_an_iteration_resumes_to_the_same_model(setup, root, recipe_env, tmp_path):
    """A real kill (process group, SIGKILL) once iteration 1 is written; the rerun continues from it and
    ends with the same final.ie as an uninterrupted run with the same jobs (accumulation in 2 jobs per
    iteration: an iteration takes seconds, so the kill reliably falls between two)."""
    tmp, data, ubmdir = setup
    conf = str(tmp / "conf.yaml")

    def cmd(out: Path) -> list[str]:
        return ["steps/train_ivector_extractor.sh", "--nj", "2", "--iter-jobs", "2", "--num-iters", "4",
                "--device", "cpu",
                "--config", conf, str(ubmdir), str(data), str(out)]

    ref_dir, out = tmp_path / "uninterrupted", tmp_path / "killed"
    run(cmd(ref_dir), recipe_env, root)
    p = subprocess.Popen(cmd(out), env=recipe_env, cwd=root, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True)
    t0 = time.time()
    while not (out / "1.ie").exists() and p.poll() is None and time.time() - t0 < 240:
        time.sleep(0.02)
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    assert (out / "1.ie").exists() and not (out / "final.ie").exists(), "not killed between iterations"
    log = run(cmd(out), recipe_env, root)
    assert "resuming after iteration" in log
    ref, new = IvectorExtractor.load(ref_dir / "final.ie"), IvectorExtractor.load(out / "final.ie")
    np.testing.assert_allclose(new.M.numpy(), ref.M.numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(new.Sigma_inv.numpy(), ref.Sigma_inv.numpy(), rtol=1e-10, atol=1e-10)
    assert new.prior_offset == pytest.approx(ref.prior_offset, rel=1e-10)
