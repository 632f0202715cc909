"""Embedding scoring (docs/network.md §6.4-6.5): speaker means, AS-norm / S-norm against literal per-trial
loops, mean-subtraction invariance of the cosine back end, and steps/score_trials.sh end to end."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess

import kaldiio
import numpy as np
import pytest
from sslsv.score_norm import adaptive_snorm, center_normalize, cohort_stats, speaker_means
from sslsv.tables import DataError


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def literal_asnorm(enroll, test, e_idx, t_idx, cohort, top_n):
    """Per-trial reference in plain Python: both sides' cohort cosines, sorted, top N, pstdev."""
    raw, normed = [], []
    for i, j in zip(e_idx, t_idx, strict=True):
        e, t = enroll[i], test[j]
        s = sum(float(a) * float(b) for a, b in zip(e, t, strict=True))
        stats = []
        for v in (e, t):
            cos = sorted((sum(float(a) * float(b) for a, b in zip(v, c, strict=True)) for c in cohort),
                         reverse=True)[:top_n]
            mu = sum(cos) / len(cos)
            sd = math.sqrt(sum((c - mu) ** 2 for c in cos) / len(cos))
            stats.append((mu, sd))
        raw.append(s)
        normed.append(0.5 * ((s - stats[0][0]) / stats[0][1] + (s - stats[1][0]) / stats[1][1]))
    return np.array(raw), np.array(normed)


@pytest.fixture(scope="module")
def random_setup():
    rng = np.random.default_rng(3)
    d = 8
    enroll = unit(rng.normal(size=(12, d)))
    test = unit(rng.normal(size=(15, d)))
    cohort = unit(rng.normal(size=(50, d)))
    e_idx = rng.integers(0, 12, size=60)
    t_idx = rng.integers(0, 15, size=60)
    return enroll, test, e_idx, t_idx, cohort


@pytest.mark.parametrize("top_n", [10, 50])
def test_asnorm_matches_literal_loop(random_setup, top_n):
    enroll, test, e_idx, t_idx, cohort = random_setup
    ref_raw, ref = literal_asnorm(enroll, test, e_idx, t_idx, cohort, top_n)
    for chunk in (None, 3):  # one block, and several blocks of rows
        raw, normed = adaptive_snorm(enroll, test, e_idx, t_idx, cohort, top_n, chunk=chunk)
        np.testing.assert_allclose(raw, ref_raw, rtol=0, atol=1e-13)
        np.testing.assert_allclose(normed, ref, rtol=1e-11, atol=1e-12)
    # normalisation changes the scores (scale ~ 1/σ), so the comparison above is not of raw cosines
    assert np.max(np.abs(normed - raw)) > 0.5
    # the same vectors on both sides (as the CLI scores a test set against itself)
    both = np.vstack([enroll, test])
    raw2, normed2 = adaptive_snorm(both, both, e_idx, t_idx + 12, cohort, top_n)
    np.testing.assert_allclose(normed2, ref, rtol=1e-11, atol=1e-12)


def test_snorm_special_case(random_setup):
    """top_n ≥ cohort size is S-norm: μ, σ over all cohort cosines (np.mean / np.std of the full matrix)."""
    enroll, test, e_idx, t_idx, cohort = random_setup
    ce, ct = enroll @ cohort.T, test @ cohort.T
    s = np.einsum("ij,ij->i", enroll[e_idx], test[t_idx])
    ref = 0.5 * ((s - ce.mean(1)[e_idx]) / ce.std(1)[e_idx] + (s - ct.mean(1)[t_idx]) / ct.std(1)[t_idx])
    for n in (50, 51, 10_000):
        _, normed = adaptive_snorm(enroll, test, e_idx, t_idx, cohort, n)
        np.testing.assert_allclose(normed, ref, rtol=1e-12, atol=1e-12)
    _, top49 = adaptive_snorm(enroll, test, e_idx, t_idx, cohort, 49)
    assert np.max(np.abs(top49 - ref)) > 1e-3  # dropping the lowest cosine does change the result


def test_cohort_stats_top_n_and_errors():
    # cohort cosines of x = e0 are the first coordinates: 0.9, 0.5, 0.1, -0.3 (hand-computed stats)
    c = np.array([0.9, 0.5, 0.1, -0.3])
    cohort = np.column_stack([c, np.sqrt(1 - c**2)])
    mu, sd = cohort_stats(np.array([[1.0, 0.0]]), cohort, 2)
    np.testing.assert_allclose([mu[0], sd[0]], [0.7, 0.2], atol=1e-15)
    mu, sd = cohort_stats(np.array([[1.0, 0.0]]), cohort, 3)
    np.testing.assert_allclose([mu[0], sd[0]], [0.5, math.sqrt(0.32 / 3)], atol=1e-15)
    with pytest.raises(ValueError, match="top_n >= 2"):
        cohort_stats(np.ones((1, 2)), cohort, 1)
    with pytest.raises(ValueError, match="all equal"):
        cohort_stats(np.zeros((2, 2)), cohort, 3)  # a zero vector: all cosines 0


def test_speaker_means_vs_loop():
    rng = np.random.default_rng(4)
    keys = [f"u{i:03d}" for i in range(200)]
    spk = rng.integers(0, 17, size=200)
    utt2spk = {k: f"pl{s:02d}" for k, s in zip(keys, spk, strict=True)}
    x = rng.normal(size=(200, 6))
    names, means = speaker_means(keys, x, utt2spk)
    assert names == sorted(set(utt2spk.values()))
    for name, m in zip(names, means, strict=True):
        rows = [x[i] for i, k in enumerate(keys) if utt2spk[k] == name]
        ref = [sum(r[j] for r in rows) / len(rows) for j in range(6)]
        np.testing.assert_allclose(m, ref, rtol=1e-13, atol=1e-14)
    with pytest.raises(DataError, match="'u005'"):
        speaker_means(keys, x, {k: v for k, v in utt2spk.items() if k != "u005"})


def test_center_normalize():
    x = np.array([[4.0, 3.0], [1.0, 1.0]])
    np.testing.assert_allclose(center_normalize(x, np.array([1.0, -1.0])), [[0.6, 0.8], [0.0, 1.0]])


# ----------------------------------------------------------------------------- the CLI and the step


def write_vectors(path, keys, x):
    kaldiio.save_ark(str(path.with_suffix(".ark")),
                     {k: v.astype(np.float32) for k, v in zip(keys, x, strict=True)}, scp=str(path))


@pytest.fixture(scope="module")
def score_trials_mod(root):
    spec = importlib.util.spec_from_file_location("score_trials", root / "pyscripts/score_trials.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def separable_data(rng, d=32, n_spk=40, per=2, n_test_spk=4, per_test=4):
    """Speakers at random directions (radius 3) plus a large common offset (which only mean subtraction
    removes) and within-speaker noise 0.1: targets far above nontargets. The default 40-speaker cohort
    keeps the S-norm statistics stable (tried on 200 seeds: margin between the lowest target and the
    highest nontarget AS-norm score always > 1.3; with 6 cohort speakers it is negative in ~15 %)."""
    offset = rng.normal(size=d) * 5
    dirs = unit(rng.normal(size=(n_spk + n_test_spk, d))) * 3

    def draw(spk_ids, per_spk, prefix):
        keys, x, lab = [], [], []
        for s in spk_ids:
            for i in range(per_spk):
                keys.append(f"{prefix}{s:02d}-{i:02d}")
                x.append(offset + dirs[s] + 0.1 * rng.normal(size=d))
                lab.append(s)
        return keys, np.array(x), lab

    ktr, xtr, ltr = draw(range(n_spk), per, "tr")
    kte, xte, lte = draw(range(n_spk, n_spk + n_test_spk), per_test, "te")
    return ktr, xtr, ltr, kte, xte, lte


def write_trials(path, kte, lte):
    lines = [f"{kte[i]} {kte[j]} {'target' if lte[i] == lte[j] else 'nontarget'}\n"
             for i in range(len(kte)) for j in range(i + 1, len(kte))]
    path.write_text("".join(lines))
    return len(lines)


def test_mean_subtraction_invariance(tmp_path, score_trials_mod, capsys):
    """Adding one constant vector to every embedding (train and test) leaves the scores unchanged when μ
    is subtracted; the cosine without mean subtraction does change (so the check can fail)."""
    rng = np.random.default_rng(5)
    ktr, xtr, ltr, kte, xte, lte = separable_data(rng)
    write_trials(tmp_path / "trials", kte, lte)
    shift = rng.normal(size=xtr.shape[1]) * 4
    (tmp_path / "utt2spk").write_text("".join(f"{k} s{s}\n" for k, s in zip(ktr, ltr, strict=True)))
    scores = {}
    for name, c in (("a", 0.0), ("b", shift)):
        write_vectors(tmp_path / f"train_{name}.scp", ktr, xtr + c)
        write_vectors(tmp_path / f"test_{name}.scp", kte, xte + c)
        rc = score_trials_mod.main(["embedding", "--train-scp", str(tmp_path / f"train_{name}.scp"),
                                    "--utt2spk", str(tmp_path / "utt2spk"), "--top-n", "20",
                                    str(tmp_path / "trials"), str(tmp_path / f"test_{name}.scp"),
                                    str(tmp_path / name)])
        assert rc == 0
        for sub in ("cosine", "asnorm"):
            lines = (tmp_path / name / sub / "scores").read_text().split("\n")
            scores[name, sub] = np.array([float(v.split()[2]) for v in lines if v])
        rc = score_trials_mod.main(["cosine", str(tmp_path / "trials"), str(tmp_path / f"test_{name}.scp"),
                                    str(tmp_path / f"plain_{name}")])
        lines = (tmp_path / f"plain_{name}/scores").read_text().split("\n")
        scores[name, "plain"] = np.array([float(v.split()[2]) for v in lines if v])
    out = capsys.readouterr().out
    assert "embedding cosine: EER 0.00 %" in out and "embedding AS-norm (top 20): EER" in out
    # float32 storage of shifted vectors: agreement to ~1e-5 (scores printed with 6 digits)
    np.testing.assert_allclose(scores["a", "cosine"], scores["b", "cosine"], atol=2e-5)
    np.testing.assert_allclose(scores["a", "asnorm"], scores["b", "asnorm"], atol=2e-4)
    assert np.max(np.abs(scores["a", "plain"] - scores["b", "plain"])) > 1e-3  # 50x the tolerance above
    np.testing.assert_allclose(np.load(tmp_path / "b/mean_vec.npy"),
                               (xtr + shift).astype(np.float32).astype(np.float64).mean(0), atol=1e-12)


def run_step(root, env, *args, ok=True):
    out = subprocess.run(["bash", "steps/score_trials.sh", *map(str, args)], cwd=root, env=env,
                         capture_output=True, text=True, timeout=120)
    if ok:
        assert out.returncode == 0, out.stdout + out.stderr
    return out


def test_step_end_to_end(tmp_path, root, recipe_env):
    rng = np.random.default_rng(6)
    ktr, xtr, ltr, kte, xte, lte = separable_data(rng)
    for name, keys, x in (("train", ktr, xtr), ("test", kte, xte)):
        (tmp_path / name).mkdir()
        write_vectors(tmp_path / name / "xvector.scp", keys, x)
    n_trials = write_trials(tmp_path / "trials", kte, lte)
    (tmp_path / "utt2spk").write_text("".join(f"{k} pl{s}\n" for k, s in zip(ktr, ltr, strict=True)))
    args = [tmp_path / "trials", tmp_path / "train", tmp_path / "test", tmp_path / "out"]

    out = run_step(root, recipe_env, "--utt2spk", tmp_path / "utt2spk", "--label", "pl", *args)
    log = out.stdout + out.stderr
    assert "capped at the cohort size 40" in log
    assert "pl cosine: EER 0.00 %" in log and "pl AS-norm (top 40): EER 0.00 %" in log
    r = json.loads((tmp_path / "out/result.json").read_text())
    assert r["label"] == "pl" and r["top_n"] == 40 and r["top_n_requested"] == 300
    assert r["cohort"] == {"size": 40, "kind": "speaker_means"}
    for sub in ("cosine", "asnorm"):
        assert r[sub]["eer"] == 0.0 and r[sub]["num_trials"] == n_trials and r[sub]["num_target"] == 4 * 6
        assert r[sub] == json.loads((tmp_path / "out" / sub / "result.json").read_text())
        assert len((tmp_path / "out" / sub / "scores").read_text().splitlines()) == n_trials
    # the AS-norm scores file equals the library on the same (float32-stored) vectors
    xtr32, xte32 = xtr.astype(np.float32).astype(np.float64), xte.astype(np.float32).astype(np.float64)
    mu = xtr32.mean(0)
    _, means = speaker_means(ktr, xtr32, dict(zip(ktr, map(str, ltr), strict=True)))
    pos = {k: i for i, k in enumerate(kte)}
    rows = [ln.split() for ln in (tmp_path / "trials").read_text().splitlines()]
    xn = center_normalize(xte32, mu)
    _, ref = adaptive_snorm(xn, xn, [pos[a] for a, _, _ in rows], [pos[b] for _, b, _ in rows],
                            center_normalize(means, mu), 40)
    got = [float(ln.split()[2]) for ln in (tmp_path / "out/asnorm/scores").read_text().splitlines()]
    np.testing.assert_allclose(got, ref, rtol=1e-5)

    # an unchanged rerun is skipped and still prints both summaries
    out = run_step(root, recipe_env, "--utt2spk", tmp_path / "utt2spk", "--label", "pl", *args)
    assert "skipping" in out.stdout and "pl AS-norm (top 40): EER 0.00 %" in out.stdout
    assert "log in" not in out.stdout

    # no utt2spk: the cohort is the 80 training utterances; an option change reruns
    out = run_step(root, recipe_env, "--top-n", "300", *args)
    assert "skipping" not in out.stdout and "capped at the cohort size 80" in out.stdout + out.stderr
    r = json.loads((tmp_path / "out/result.json").read_text())
    assert r["cohort"] == {"size": 80, "kind": "utterances"} and r["top_n"] == 80
    assert r["asnorm"]["eer"] == 0.0 and r["cosine"]["eer"] == 0.0


def test_step_bad_inputs(tmp_path, root, recipe_env):
    rng = np.random.default_rng(7)
    ktr, xtr, ltr, kte, xte, lte = separable_data(rng, n_spk=3, per=2, n_test_spk=2, per_test=2)
    for name, keys, x in (("train", ktr, xtr), ("test", kte, xte)):
        (tmp_path / name).mkdir()
        write_vectors(tmp_path / name / "xvector.scp", keys, x)
    write_trials(tmp_path / "trials", kte, lte)
    with open(tmp_path / "trials", "a") as f:
        f.write(f"{kte[0]} nosuch nontarget\n")
    out = run_step(root, recipe_env, tmp_path / "trials", tmp_path / "train", tmp_path / "test",
                   tmp_path / "bad", ok=False)
    assert out.returncode != 0
    assert f"{tmp_path / 'trials'}:7" in out.stderr and str(tmp_path / "test/xvector.scp") in out.stderr
    assert not (tmp_path / "bad/result.json").exists()
    # an utt2spk utterance without a training embedding is named with its utt2spk line; a training
    # utterance missing from utt2spk (dropped by stage 7) only leaves the cohort
    write_trials(tmp_path / "trials", kte, lte)
    (tmp_path / "utt2spk").write_text("".join(f"{k} s{s}\n" for k, s in zip([*ktr, "ghost"], [*ltr, 0],
                                                                           strict=True)))
    out = run_step(root, recipe_env, "--utt2spk", tmp_path / "utt2spk", tmp_path / "trials",
                   tmp_path / "train", tmp_path / "test", tmp_path / "bad2", ok=False)
    assert out.returncode != 0
    assert f"{tmp_path / 'utt2spk'}:{len(ktr) + 1}" in out.stderr and "ghost" in out.stderr
    (tmp_path / "utt2spk").write_text("".join(f"{k} s{s}\n" for k, s in zip(ktr[:-1], ltr, strict=False)))
    out = run_step(root, recipe_env, "--utt2spk", tmp_path / "utt2spk", tmp_path / "trials",
                   tmp_path / "train", tmp_path / "test", tmp_path / "ok3")
    assert out.returncode == 0
    assert f"of {len(ktr) - 1} training embeddings" in (tmp_path / "ok3/log/score_trials.log").read_text()
