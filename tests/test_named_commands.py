"""The named commands the shell steps call instead of inline Python (``stamp.py fingerprint`` and
``--archives-of``, ``python3 -m sslsv.{scoring,backend,features,embed.config,device}``): each against
what the step computed before (the awk pipeline over scp files, the hash of the resolved config) or a
known answer, and no shell script of the recipe running ``python -c``."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from kaldiio import WriteHelper
from sslsv.embed.config import config_hash, dump, load_embed_config
from sslsv.stamp import fingerprint, scp_archives

ROOT = Path(__file__).resolve().parents[1]


def sh(*args: str | Path, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{ROOT / 'pyscripts'}:{os.environ['PATH']}",
               PYTHONPATH=str(ROOT / "pyscripts"))
    return subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True)


def py(*args: str | Path) -> subprocess.CompletedProcess:
    return sh(sys.executable, *args)


def _vectors(tmp_path: Path) -> tuple[Path, Path]:
    """Two scp files over three archives (one shared), as stage 5 writes them."""
    rng = np.random.default_rng(0)
    scps = []
    for name, arks in (("a", ("x", "y")), ("b", ("y", "z"))):
        lines = []
        for ark in arks:
            with WriteHelper(f"ark,scp:{tmp_path / ark}_{name}.ark,{tmp_path / ark}_{name}.scp") as w:
                for i in range(3):
                    w(f"{ark}{name}{i}", rng.standard_normal(4).astype(np.float32))
            lines.append((tmp_path / f"{ark}_{name}.scp").read_text())
        scp = tmp_path / f"{name}.scp"
        scp.write_text("".join(lines))
        scps.append(scp)
    return scps[0], scps[1]


def test_archives_of_equals_the_awk_pipeline_it_replaced(tmp_path: Path) -> None:
    a, b = _vectors(tmp_path)
    awk = subprocess.run(
        ["bash", "-c", "awk '{v = $2; sub(/:[0-9]+$/, \"\", v); print v}' \"$1\" \"$2\" | LC_ALL=C sort -u",
         "-", str(a), str(b)], capture_output=True, text=True, check=True).stdout.split()
    assert len(awk) == 4
    assert scp_archives([a, b]) == awk
    assert scp_archives([a, tmp_path / "missing.scp"]) == scp_archives([a])


def test_fingerprint_command_and_stamps_cover_the_archives(tmp_path: Path) -> None:
    a, b = _vectors(tmp_path)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("k: 1\n")
    out = sh("stamp.py", "fingerprint", cfg, a, "--archives-of", a, b, "--opts", "x=1")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == fingerprint([cfg, a, *scp_archives([a, b])], "x=1")
    stamp = tmp_path / "s.stamp"
    base = ("stamp.py", "check", stamp, cfg, a, "--archives-of", a, b, "--opts", "x=1")
    assert sh(*base).returncode == 1
    assert sh("stamp.py", "write", *base[2:]).returncode == 0
    assert sh(*base).returncode == 0
    # vectors rewritten in place (same scp, same offsets) are a changed input
    ark = Path(scp_archives([b])[-1])
    data = bytearray(ark.read_bytes())
    data[-1] ^= 1
    ark.write_bytes(bytes(data))
    assert sh(*base).returncode == 1


def test_scoring_summary(tmp_path: Path) -> None:
    r = {"eer": 5.3333, "min_dcf_0.01": 0.49331, "min_dcf_0.001": 0.6168, "num_trials": 37720,
         "label": "cosine"}
    (tmp_path / "one.json").write_text(json.dumps(r))
    (tmp_path / "two.json").write_text(json.dumps({"cosine": r, "asnorm": {**r, "label": "AS-norm"}}))
    one = py("-m", "sslsv.scoring", "summary", tmp_path / "one.json")
    assert one.stdout == "cosine: EER 5.33 %  minDCF(0.01) 0.4933  minDCF(0.001) 0.6168  (37720 trials)\n"
    two = py("-m", "sslsv.scoring", "summary", tmp_path / "two.json", "cosine", "asnorm").stdout.splitlines()
    assert [x.split(":")[0] for x in two] == ["cosine", "AS-norm"]


def test_backend_options(tmp_path: Path) -> None:
    defaults = py("-m", "sslsv.backend", "options", ROOT / "conf/ivector.yaml").stdout.split()
    assert defaults == ["64", "10", "0.0"]
    c = tmp_path / "b.yaml"
    c.write_text("backend:\n  lda_dim: 32\n")
    assert py("-m", "sslsv.backend", "options", c).stdout.split() == ["32", "10", "0.0"]
    c.write_text("backend:\n  lda: 32\n")
    bad = py("-m", "sslsv.backend", "options", c)
    assert bad.returncode == 1 and f"{c}: backend.lda: unknown option" in bad.stderr


def test_features_config_commands(tmp_path: Path) -> None:
    ok = py("-m", "sslsv.features", "mfcc-config", ROOT / "conf/mfcc.conf")
    assert ok.stdout.split() == ["16000", "400", "0.01"]
    bad = tmp_path / "mfcc.conf"
    bad.write_text("--num-ceps=24\n--no-such-option=1\n")
    out = py("-m", "sslsv.features", "mfcc-config", bad)
    assert out.returncode == 1 and f"{bad}:2" in out.stderr
    assert py("-m", "sslsv.features", "vad-config", ROOT / "conf/vad.conf").returncode == 0


def test_network_tag_and_config_hash() -> None:
    conf = ROOT / "conf/embed/ecapa_xs.yaml"
    tag = py("-m", "sslsv.naming", "network-tag", conf, "mixup.kind=lmix mixup.alpha=0.5").stdout.strip()
    assert tag == "ecapa_xs_aam_lmix0.5"
    assert py("-m", "sslsv.naming", "network-tag", "--seed", "2", conf).stdout.strip() == "ecapa_xs_aam_s2"
    h = py("-m", "sslsv.embed.config", "hash", conf, "head.name=aam").stdout.strip()
    assert h == py("-m", "sslsv.embed.config", "hash", conf).stdout.strip()   # the same system
    assert h == config_hash(load_embed_config(conf)) and len(h) == 40
    assert dump(load_embed_config(conf, ["mixup.kind=imix"])) != dump(load_embed_config(conf))
    bad = py("-m", "sslsv.naming", "network-tag", conf, "mixup.kind=cutmix")
    assert bad.returncode == 1 and bad.stderr.startswith("ERROR:")
    # the contrastive head's variants are part of the name (the NT-Xent-AM study's rows differ)
    ssl = ROOT / "conf/embed/simclr_xs.yaml"
    for opts, want in [("", "simclr_xs_ntxent_am0.1"), ("head.margin=0 head.symmetric=false",
                                                         "simclr_xs_ntxent_m0_asym"),
                       ("head.margin_type=aam head.margin=0.2", "simclr_xs_ntxent_aam0.2")]:
        assert py("-m", "sslsv.naming", "network-tag", ssl, opts).stdout.strip() == want


def test_device_command() -> None:
    assert py("-m", "sslsv.device", "cpu").returncode == 0
    out = py("-m", "sslsv.device", "tpu")
    assert out.returncode == 1 and out.stderr.strip() == "--device 'tpu': expected auto, cpu, cuda or cuda:N"


@pytest.mark.parametrize("folder", ["steps", "utils", "local", "."])
def test_no_inline_python_in_shell_scripts(folder: str) -> None:
    scripts = [p for p in (ROOT / folder).glob("*.sh")] + ([ROOT / "run.sh"] if folder == "." else [])
    assert scripts
    offenders = [f"{p.relative_to(ROOT)}:{i}" for p in scripts
                 for i, line in enumerate(p.read_text().splitlines(), 1)
                 if re.search(r"\bpython3?\s+-c\b", line)]
    assert not offenders, f"inline Python in shell scripts (use a named command): {offenders}"
