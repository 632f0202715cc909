"""Stage 10 (sslsv.report, make_report.py): on an exp/ tree written here with known numbers, the tables
hold exactly those numbers, cells not run are "–", the best head of a row is bold, the correlations are
numpy's, the figures are written; a partial or missing exp/ gives a report that says what is missing."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from sslsv.cluster.metrics import METRICS
from sslsv.report import Report, collect
from sslsv.report.analysis import correlation_panel, critical_r, pearson, reference
from sslsv.report.document import fmt
from sslsv.study import load_study

RNG = np.random.default_rng(7)
CLASSICAL = ("kmeans", "gmm", "spectral")


def _metrics(n_found: int) -> dict:
    m = {k: float(RNG.uniform(0.05, 0.95)) for k in METRICS}
    m["chs"] = float(RNG.uniform(1, 200))
    m["num_clusters"] = n_found
    return m


def _cluster(exp: Path, tag: str, method: str, norm: str, c: int, curve: bool) -> dict:
    d = exp / "cluster" / tag
    d.mkdir(parents=True)
    m = _metrics(c)
    (d / "metrics.json").write_text(json.dumps({
        "method": method, "estimator": "deep_im" if method in ("camsat", "imsat") else method,
        "input_norm": norm, "n_clusters_requested": c, "num_clusters_found": c, "metrics": m,
        "eval_labels": str(exp.parent / "utt2spk"), "date": "2026-11-26 10:00:00",
        "machine": "testbox, 2 cores"}))
    (d / "log").mkdir()
    (d / "log/cluster.log").write_text(
        f"# cluster.py --method {method} --config /abs/checkout/conf/cluster/{method}.yaml "
        f"--num-clusters {c} ivector.scp {d}\n# Started at x\n#\n")
    if curve:
        rows = ["epoch\tlr\ttotal\tnum_clusters\tacc\tnmi"]
        rows += [f"{e}\t0.01\t-1.0\t{min(c, 2 + e)}\t{0.1 * e:.3f}\t{0.05 * e:.3f}" for e in range(1, 6)]
        (d / "curve.tsv").write_text("\n".join(rows) + "\n")
    return m


def _system(exp: Path, labels: str, head: str, mixup: str = "none", scored: bool = True) -> dict | None:
    suffix = f"_{head}" + ("" if mixup == "none" else f"_{mixup}1")
    name = f"{labels}_ecapa_xs{suffix}"
    d = exp / "embed" / name
    (d / "log").mkdir(parents=True)
    (d / "config.yaml").write_text(f"head:\n  name: {head}\nmixup:\n  kind: {mixup}\n  alpha: 1.0\n")
    data = "data/x_train" if labels == "supervised" else f"data/x_train_pl_{labels}"
    (d / "log/train.log").write_text(
        "# /abs/checkout/pyscripts/train_embedding.py --config conf/embed/ecapa_xs.yaml --set '' "
        f"--device auto {data} {d}\n# Started at Thu Nov 26 10:00:00 UTC 2026\n#\n")
    (d / "final.pt").write_bytes(b"x")
    (d / "final.json").write_text(json.dumps({"final_epoch": 5, "epochs": 6, "date": "2026-11-26 10:01:00",
                                              "machine": "testbox, 2 cores"}))
    if not scored:
        return None
    r = {k: {"eer": float(RNG.uniform(2, 45)), "min_dcf_0.01": float(RNG.uniform(0.3, 1)), "num_trials": 1000}
         for k in ("cosine", "asnorm")}
    (d / "scores").mkdir()
    (d / "scores/result.json").write_text(json.dumps({
        "utt2spk": f"{data}/utt2spk", "trials": "data/x_test/trials", **r, "date": "2026-11-26 10:02:00",
        "machine": "testbox, 2 cores"}))
    return {"name": name, **r}


@pytest.fixture(scope="module")
def fixture_exp(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, dict]:
    base = tmp_path_factory.mktemp("report")
    (base / "utt2spk").write_text("".join(f"u{i} s{i % 6}\n" for i in range(30)))
    exp = base / "exp"
    metrics = {}
    for m in CLASSICAL:
        metrics[f"{m}_c6"] = _cluster(exp, f"{m}_c6", m, "l2", 6, False)
    metrics["kmeans_standard_c6"] = _cluster(exp, "kmeans_standard_c6", "kmeans", "standard", 6, False)
    for c in (6, 12):
        metrics[f"camsat_c{c}"] = _cluster(exp, f"camsat_c{c}", "camsat", "l2", c, True)
    metrics["imsat_c6"] = _cluster(exp, "imsat_c6", "imsat", "l2", 6, True)   # no system trained on it
    systems = {}
    for t in ("kmeans_c6", "gmm_c6", "spectral_c6", "kmeans_standard_c6", "camsat_c6", "supervised"):
        systems[(t, "aam", "none")] = _system(exp, t, "aam")
    for t in ("kmeans_c6", "supervised"):
        systems[(t, "adaface", "none")] = _system(exp, t, "adaface")
    for t in ("kmeans_c6", "spectral_c6", "camsat_c6"):
        systems[(t, "aam", "lmix")] = _system(exp, t, "aam", "lmix")
    _system(exp, "gmm_c6", "aam", "imix", scored=False)
    (exp / "scores/ivector_cosine").mkdir(parents=True)
    (exp / "scores/ivector_cosine/result.json").write_text(json.dumps(
        {"eer": 12.345, "min_dcf_0.01": 0.75, "trials": "data/x_test/trials", "num_trials": 1000}))
    (exp / "study/mini").mkdir(parents=True)
    (exp / "study/mini/cells.tsv").write_text("kmeans_c6_aam_none\t2026-11-26 10:03:00\ttestbox, 2 cores\t"
                                              "local/run_study.sh conf/study/mini.yaml\n")
    return exp, metrics, systems


def _row(text: str, first: str) -> list[str]:
    for line in text.splitlines():
        if line.startswith(f"| {first} |"):
            return [c.strip() for c in line.strip().strip("|").split("|")]
    raise AssertionError(f"no row {first!r}")


def _section(text: str, title: str) -> str:
    start = text.index(f"## {title}")
    end = text.find("\n## ", start + 3)
    return text[start:end if end > 0 else None]


def test_tables_hold_the_fixture_numbers(fixture_exp, tmp_path: Path) -> None:
    exp, metrics, systems = fixture_exp
    study = tmp_path / "study.yaml"
    study.write_text("grids:\n  - methods: [kmeans]\n    heads: [softmax, aam, adaface]\n"
                     "  - methods: [gmm]\n    mixups: [imix]\n")
    res = collect(exp)
    conf = Path(__file__).parents[1] / "conf/cluster"
    text = Report(res, tmp_path / "out", "x", "test", load_study(study, conf)).build()
    assert (tmp_path / "out/RESULTS.md").read_text() == text
    t1 = _section(text, "Table I")
    for tag, m in metrics.items():
        row = _row(t1, tag)
        assert row[4:15] == [fmt(m[k]) for k in METRICS], tag
        s = systems.get((tag, "aam", "none"))
        assert row[15:] == ([f"{s['cosine']['eer']:.2f}", f"{s['cosine']['min_dcf_0.01']:.3f}",
                             f"{s['asnorm']['eer']:.2f}"] if s else ["–", "–", "–"]), tag
    assert _row(t1, "camsat_c6")[1:4] == ["deep", "l2", "6"]
    assert _row(t1, "kmeans_standard_c6")[1:3] == ["classical", "standard"]
    # margin table: the study's softmax column is there and empty; the best of each row is bold
    mt = _section(text, "Margin-loss")
    assert "| labels | label ACC | softmax | aam | adaface |" in mt
    for t in ("kmeans_c6", "supervised"):
        a, b = systems[(t, "aam", "none")]["cosine"]["eer"], systems[(t, "adaface", "none")]["cosine"]["eer"]
        cells = _row(mt, t)[2:]
        assert cells[0] == "–"
        assert cells[1:] == [f"**{a:.2f}**" if a < b else f"{a:.2f}", f"**{b:.2f}**" if b < a else f"{b:.2f}"]
    # regulariser table: gmm's i-mix was trained but never scored -> missing
    rt = _section(text, "Regulariser table")
    assert _row(rt, "gmm_c6")[2:] == [f"{systems[('gmm_c6', 'aam', 'none')]['cosine']['eer']:.2f}", "–", "–"]
    lm = systems[("camsat_c6", "aam", "lmix")]["cosine"]["eer"]
    assert f"{lm:.2f}" in _row(rt, "camsat_c6")[4]
    # the i-vector baseline and the things missing
    assert "| ivector cosine | – | – | – | – | – | 12.35 | 0.750 | – | – |" in text
    missing = _section(text, "What is missing")
    assert "gmm_c6_ecapa_xs_aam_imix1: trained but not scored" in missing
    assert "gmm_c6 / aam / i-mix" in missing and "kmeans_c6 / softmax / No reg." in missing
    assert "supervised / softmax / No reg." in missing and "supervised / aam / No reg." not in missing
    # provenance: trial list, command (checkout path dropped), date and machine of each number
    prov = _section(text, "Provenance")
    assert "`data/x_test/trials` (1000 trials)" in prov
    assert ("| kmeans_c6_ecapa_xs_aam | `data/x_test/trials` | `pyscripts/train_embedding.py --config "
            "conf/embed/ecapa_xs.yaml --set '' --device auto data/x_train_pl_kmeans_c6 ") in prov
    assert "| 2026-11-26 10:02:00 | testbox, 2 cores |" in prov
    assert "| mini | kmeans_c6_aam_none | 2026-11-26 10:03:00 |" in prov
    assert (f"| kmeans_standard_c6 | `cluster.py --method kmeans --config conf/cluster/kmeans.yaml "
            f"--num-clusters 6 ivector.scp {exp}/cluster/kmeans_standard_c6` | 2026-11-26 10:00:00 | "
            "testbox, 2 cores |") in prov
    # figures: four heatmaps, curves for C = 6 and 12 and camsat's two starting C
    for f in ("heatmap_all_systems", "heatmap_classical_vs_deep", "heatmap_l2_vs_standard", "heatmap_acc50",
              "curves_c6", "curves_c12", "curves_camsat"):
        assert (tmp_path / f"out/{f}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f
        assert f"]({f}.png)" in text
    curves = _section(text, "Clustering over epochs")
    assert _row(curves, "camsat_c12")[1:5] == ["12", "3", "12", "6"]


def test_correlations_equal_numpy(fixture_exp) -> None:
    exp, metrics, systems = fixture_exp
    res = collect(exp)
    ref = reference(res)
    assert (ref.config, ref.head) == ("ecapa_xs", "aam")
    for mix, tags in (("none", ["kmeans_c6", "gmm_c6", "spectral_c6", "kmeans_standard_c6", "camsat_c6"]),
                      ("lmix", ["kmeans_c6", "spectral_c6", "camsat_c6"])):
        panel = correlation_panel(res, ref, "all", lambda c: True)
        j = panel.columns.index(mix)
        assert panel.n[j] == len(tags)
        eer = [systems[(t, "aam", mix)]["cosine"]["eer"] for t in tags]
        for i, m in enumerate(METRICS):
            x = [metrics[t][m] for t in tags]
            if m == "num_clusters":          # 6 everywhere: no correlation is defined
                assert np.isnan(panel.r[i, j])
            else:
                assert panel.r[i, j] == pytest.approx(np.corrcoef(x, eer)[0, 1], abs=1e-12)
    # the classical panel has the four classical sets; one deep set is too few
    deep = correlation_panel(res, ref, "deep", lambda c: c.family == "deep")
    assert deep.n[0] == 1 and np.isnan(deep.r).all()
    text = Report(res, exp.parent / "out2", "x", "test").build()
    table = _section(text, "Do clustering metrics")
    panel = correlation_panel(res, ref, "all", lambda c: True)
    assert _row(table, "ACC")[1] == f"{panel.r[0, 0]:+.2f}"
    assert _row(table, "ACC")[2] == "n/a"                      # i-mix: no scored system
    assert f"{critical_r(5):.2f} (n=5)" in table


def test_pearson_and_critical_r() -> None:
    x, y = RNG.normal(size=20), RNG.normal(size=20)
    assert pearson(x, y) == pytest.approx(np.corrcoef(x, y)[0, 1], abs=1e-12)
    assert np.isnan(pearson([1, 2], [3, 4])) and np.isnan(pearson([1, 1, 1], [1, 2, 3]))
    # the textbook table of critical values of r (two-sided, 0.05)
    assert [round(critical_r(n), 3) for n in (5, 10, 30)] == [0.878, 0.632, 0.361]


def test_partial_and_missing_exp(tmp_path: Path) -> None:
    exp = tmp_path / "exp"
    (exp / "scores/ivector_cosine").mkdir(parents=True)
    (exp / "scores/ivector_cosine/result.json").write_text(json.dumps(
        {"eer": 20.0, "min_dcf_0.01": 0.9, "trials": "t", "num_trials": 10}))
    (exp / "cluster/kmeans_c4").mkdir(parents=True)       # a stage-6 run that never finished
    text = Report(collect(exp), tmp_path / "out", "x", "test").build()
    missing = _section(text, "What is missing")
    assert "no i-vector baseline ivector_plda_supervised (stage 5 not run)" in missing
    assert "no clustering runs" in missing and "kmeans_c4: no metrics.json" in missing
    assert "no embedding systems" in missing
    assert "No clustering runs yet" in text and "| ivector cosine |" in text
    assert not list((tmp_path / "out").glob("*.png"))
    text = Report(collect(tmp_path / "nothing"), tmp_path / "out3", "x", "test").build()
    assert "does not exist (no stage has run)" in text


def test_make_report_sh(fixture_exp, root: Path, recipe_env: dict[str, str], tmp_path: Path) -> None:
    exp, _, _ = fixture_exp
    r = subprocess.run([str(root / "steps/make_report.sh"), "--corpus", "x", "--data", str(tmp_path),
                        str(exp), str(tmp_path / "rep")], env=recipe_env, capture_output=True, text=True,
                       cwd=root)
    assert r.returncode == 0, r.stderr
    assert re.search(r"wrote .*RESULTS.md \(7 clustering runs, 11 scored systems, 1 baselines\) and 7 "
                     r"figures; 2 things missing", r.stdout), r.stdout
    bad = subprocess.run([str(root / "steps/make_report.sh"), str(tmp_path / "none"), str(tmp_path / "r2")],
                         env=recipe_env, capture_output=True, text=True, cwd=root)
    assert bad.returncode != 0 and "no such exp dir" in bad.stderr


def test_log_dates_become_iso(tmp_path: Path) -> None:
    from sslsv.report.collect import _log_header
    log = tmp_path / "x.log"
    log.write_text("# /abs/pyscripts/score_trials.py a 'b c'\n# Started at Thu Nov 26 08:08:15 UTC 2026\n#\n")
    assert _log_header(log) == (["/abs/pyscripts/score_trials.py", "a", "b c"], "2026-11-26 08:08:15")


def test_epoch_cell_shows_selection_or_average() -> None:
    from sslsv.report.collect import _epoch_cell
    assert _epoch_cell({"final_epoch": 5, "epochs": 6}) == "5/6"
    assert _epoch_cell({"final_epoch": 12, "epochs": 12, "averaged_epochs": [10, 11, 12]}) == "avg 10-12/12"
    assert _epoch_cell(None) == "–"


def test_rounds_and_label_free_section(tmp_path: Path) -> None:
    """Round 2 clusters round 1's network embeddings, a third set clusters the label-free network's:
    the report's lineage follows metrics.json's "vectors" through system.json, and the label-free
    network's row names its loss from config.yaml."""
    (tmp_path / "utt2spk").write_text("".join(f"u{i} s{i % 6}\n" for i in range(30)))
    exp = tmp_path / "exp"
    m1 = _cluster(exp, "kmeans_c6", "kmeans", "l2", 6, False)
    m2 = _cluster(exp, "kmeans_c6_r2", "kmeans", "l2", 6, False)
    m3 = _cluster(exp, "kmeans_c6_ssl", "kmeans", "l2", 6, False)
    s1 = _system(exp, "kmeans_c6", "aam")
    s2 = _system(exp, "kmeans_c6_r2", "aam")
    ssl = _system(exp, "ssl", "ntxent")
    for tag, vec in (("kmeans_c6", f"{exp}/ivectors_x_train/ivector.scp"),
                     ("kmeans_c6_r2", f"{exp}/embed/{s1['name']}/emb_x_train/xvector.scp"),
                     ("kmeans_c6_ssl", f"{exp}/embed/{ssl['name']}/emb_x_train/xvector.scp")):
        f = exp / "cluster" / tag / "metrics.json"
        f.write_text(json.dumps({**json.loads(f.read_text()), "vectors": vec}))
    for name, labels in ((s1["name"], "kmeans_c6"), (s2["name"], "kmeans_c6_r2"), (ssl["name"], "ssl")):
        cfg = "head:\n  name: ntxent\n  margin: 0.2\n  symmetric: false\n" if labels == "ssl" else \
            "head:\n  name: aam\n"
        (exp / "embed" / name / "config.yaml").write_text(cfg + "mixup:\n  kind: none\n  alpha: 1.0\n")
        (exp / "embed" / name / "system.json").write_text(json.dumps(
            {"labels": labels, "config": "ecapa_xs", "head": "ntxent" if labels == "ssl" else "aam",
             "mixup": "none", "alpha": 1.0}))
    (exp / "scores/ivector_cosine").mkdir(parents=True)
    (exp / "scores/ivector_cosine/result.json").write_text(json.dumps(
        {"eer": 12.345, "min_dcf_0.01": 0.75, "trials": "t", "num_trials": 1000}))
    text = Report(collect(exp), tmp_path / "rep", "x", "cmd").build()
    sec = _section(text, "Beyond one round")
    row = _row(sec, "SSL: ssl_ecapa_xs_ntxent")
    assert row[1] == "NT-Xent-AM (m = 0.2), asymmetric, τ = 0.03"
    assert row[3] == f"{ssl['cosine']['eer']:.2f}" and row[5] == f"{ssl['asnorm']['eer']:.2f}"
    assert _row(sec, "i-vector cosine (stage 5)")[3] == "12.35"
    for tag, rnd, source, m, s in (("kmeans_c6", "1", "i-vectors", m1, s1),
                                   ("kmeans_c6_r2", "2", f"network {s1['name']}", m2, s2),
                                   ("kmeans_c6_ssl", "1", f"network {ssl['name']}", m3, None)):
        row = _row(sec, tag)
        assert row[1:4] == [rnd, source, "kmeans"] and row[5:7] == [fmt(m["acc"]), fmt(m["nmi"])], row
        assert row[7:] == ([s["name"], f"{s['cosine']['eer']:.2f}", f"{s['asnorm']['eer']:.2f}"] if s
                           else ["–", "–", "–"])
    # the label-free network never becomes the reference system of the pseudo-label tables
    assert reference(collect(exp)).head == "aam"
