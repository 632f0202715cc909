"""Stage 7: the pseudo-label data dir (relabelling, dropping small clusters, format checks)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from sslsv.datadir import validate_data_dir
from sslsv.pseudo_labels import make_pseudo_label_dir
from sslsv.tables import DataError, read_map, read_scp


def _src(tmp: Path) -> Path:
    d = tmp / "train"
    d.mkdir()
    utts = [f"spk{s}-u{i}" for s in "ABC" for i in range(4)]
    (d / "utt2spk").write_text("".join(f"{u} {u.split('-')[0]}\n" for u in utts))
    (d / "spk2utt").write_text("".join(f"spk{s} " + " ".join(f"spk{s}-u{i}" for i in range(4)) + "\n"
                                       for s in "ABC"))
    (d / "wav.scp").write_text("".join(f"{u} /audio/{u}.wav\n" for u in utts))
    (d / "utt2num_frames").write_text("".join(f"{u} {100 + i}\n" for i, u in enumerate(utts)))
    (d / "spk2gender").write_text("spkA m\nspkB f\nspkC m\n")
    return d


def test_relabel_drop_small_and_unassigned(tmp_path: Path) -> None:
    src = _src(tmp_path)
    # clusters: 7 -> 5 utterances, 3 -> 4, 12 -> 1 (dropped at min size 2); one unassigned; one unlabelled
    labels = {"spkA-u0": 7, "spkA-u1": 7, "spkA-u2": 7, "spkA-u3": 7, "spkB-u0": 7,
              "spkB-u1": 3, "spkB-u2": 3, "spkB-u3": 3, "spkC-u0": 3,
              "spkC-u1": 12, "spkC-u2": -1}
    (tmp_path / "labels").write_text("".join(f"{u} {c}\n" for u, c in labels.items()))
    dest = tmp_path / "train_pl"
    r = make_pseudo_label_dir(src, tmp_path / "labels", dest, min_cluster_size=2)
    assert (r.utterances, r.speakers, r.dropped_utterances, r.dropped_clusters, r.unassigned, r.missing) == \
        (9, 2, 1, 1, 1, 1)
    u2s = read_map(dest / "utt2spk")
    assert u2s["spkA-u0"] == u2s["spkB-u0"] == "pl00007" and u2s["spkC-u0"] == "pl00003"
    assert set(u2s) == {u for u, c in labels.items() if c in (3, 7)}
    assert set(read_scp(dest / "wav.scp")) == set(u2s)
    assert read_map(dest / "utt2num_frames")["spkB-u1"] == "105"
    assert not (dest / "spk2gender").exists()       # nothing of the true speakers is carried over
    spk2utt = read_scp(dest / "spk2utt")
    assert spk2utt["pl00003"].split() == ["spkB-u1", "spkB-u2", "spkB-u3", "spkC-u0"]
    validate_data_dir(dest, require_feats=False, spk_sort=False)   # raises on any problem


def test_min_cluster_size_one_keeps_singletons(tmp_path: Path) -> None:
    src = _src(tmp_path)
    (tmp_path / "labels").write_text("".join(f"spk{s}-u{i} {n}\n" for n, (s, i) in
                                             enumerate((s, i) for s in "ABC" for i in range(4))))
    r = make_pseudo_label_dir(src, tmp_path / "labels", tmp_path / "pl", min_cluster_size=1)
    assert (r.utterances, r.speakers) == (12, 12)


def test_errors_name_the_file(tmp_path: Path) -> None:
    src = _src(tmp_path)
    (tmp_path / "labels").write_text("spkA-u0 1\nnobody 2\n")
    with pytest.raises(DataError, match="nobody"):
        make_pseudo_label_dir(src, tmp_path / "labels", tmp_path / "pl")
    (tmp_path / "labels").write_text("spkA-u0 one\n")
    with pytest.raises(DataError, match=r"labels:1"):
        make_pseudo_label_dir(src, tmp_path / "labels", tmp_path / "pl")
    (tmp_path / "labels").write_text("spkA-u0 1\nspkA-u1 2\n")
    with pytest.raises(DataError, match="no cluster has at least 2"):
        make_pseudo_label_dir(src, tmp_path / "labels", tmp_path / "pl")


def test_step_script_validates_and_skips(tmp_path: Path, root: Path, recipe_env: dict[str, str]) -> None:
    src = _src(tmp_path)
    cdir = tmp_path / "cluster"
    cdir.mkdir()
    (cdir / "labels").write_text("".join(f"spk{s}-u{i} {i % 2}\n" for s in "ABC" for i in range(4)))
    cmd = [str(root / "steps/make_pseudo_label_dir.sh"), str(src), str(cdir), str(tmp_path / "pl")]
    r = subprocess.run(cmd, env=recipe_env, capture_output=True, text=True, cwd=root)
    assert r.returncode == 0, r.stderr
    assert "12 utterances in 2 pseudo speakers" in r.stdout
    v = subprocess.run([str(root / "utils/validate_data_dir.sh"), "--no-feats", "--no-spk-sort",
                        str(tmp_path / "pl")], env=recipe_env, capture_output=True, text=True)
    assert v.returncode == 0, v.stdout + v.stderr
    r2 = subprocess.run(cmd, env=recipe_env, capture_output=True, text=True, cwd=root)
    assert r2.returncode == 0 and "up to date" in r2.stdout
