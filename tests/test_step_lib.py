"""utils/step_lib.sh (and utils/ubm_lib.sh): the shell functions the steps share, each checked by running a
small script that sources them under the steps' ``set -euo pipefail``."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

HEADER = """#!/usr/bin/env bash
set -euo pipefail
help_message="Usage: demo.sh [options] <in> <out>"
. {root}/utils/step_lib.sh
"""


@pytest.fixture()
def sh(tmp_path: Path, root: Path, recipe_env: dict[str, str]):
    """sh(body, *args) runs ``body`` after the header in a script <tmp>/demo.sh; returns (result, script)."""
    script = tmp_path / "demo.sh"

    def run(body: str, *args: str) -> subprocess.CompletedProcess:
        script.write_text(HEADER.format(root=root) + body)
        return subprocess.run(["bash", str(script), *args], capture_output=True, text=True, env=recipe_env,
                              cwd=tmp_path, timeout=120)
    run.script = script
    return run


def test_usage_prints_help_and_exits_1(sh) -> None:
    r = sh('[ $# -eq 2 ] || usage\necho "ran $1 $2"\n', "a")
    assert r.returncode == 1 and r.stderr == "Usage: demo.sh [options] <in> <out>\n" and r.stdout == ""
    r = sh('[ $# -eq 2 ] || usage\necho "ran $1 $2"\n', "a", "b")
    assert r.returncode == 0 and r.stdout == "ran a b\n"


def test_die(sh) -> None:
    r = sh('die "no vectors at" "x"\necho after\n')
    assert r.returncode == 1 and r.stderr == f"{sh.script}: no vectors at x\n" and r.stdout == ""


def test_require_files(sh, tmp_path: Path) -> None:
    (tmp_path / "a").write_text("")
    (tmp_path / "d").mkdir()
    ok = sh('require_files a\necho ok\n')
    assert ok.returncode == 0 and ok.stdout == "ok\n"
    r = sh('require_files a b c\necho after\n')
    assert r.returncode == 1 and r.stderr == f"{sh.script}: no such file b\n" and r.stdout == ""
    r = sh('require_files d\n')                     # a folder is not a file
    assert r.returncode == 1 and r.stderr == f"{sh.script}: no such file d\n"
    r = sh('x=\nrequire_files ${x:+"$x"}\necho ok\n')         # an optional input that is not given
    assert r.returncode == 0 and r.stdout == "ok\n"


@pytest.mark.parametrize("value,ok", [("1", True), ("12", True), ("0", False), ("01", False), ("-3", False),
                                      ("", False), ("4x", False), ("1 2", False)])
def test_positive_int(sh, value: str, ok: bool) -> None:
    r = sh('positive_int --nj "$1"\necho ok\n', value)
    if ok:
        assert r.returncode == 0 and r.stdout == "ok\n" and r.stderr == ""
    else:
        assert r.returncode == 1 and r.stdout == ""
        assert r.stderr == f"{sh.script}: --nj must be a positive integer, got '{value}'\n"


@pytest.mark.parametrize("value,ok", [("0", True), ("64", True), ("-1", False), ("", False), ("x", False)])
def test_non_negative_int(sh, value: str, ok: bool) -> None:
    r = sh('non_negative_int --lda-dim "$1"\necho ok\n', value)
    assert (r.returncode, r.stdout) == ((0, "ok\n") if ok else (1, ""))
    if not ok:
        assert r.stderr == f"{sh.script}: --lda-dim must be a non-negative integer, got '{value}'\n"


UP_TO_DATE = """inputs=(in1 in2 --archives-of v.scp)
if up_to_date st out1 out2 -- "${inputs[@]}" --opts "$1"; then echo SKIP; exit 0; fi
echo REDO
"""


def test_up_to_date(sh, tmp_path: Path, recipe_env: dict[str, str]) -> None:
    for f, text in (("in1", "a\n"), ("in2", "b\n"), ("out1", ""), ("out2", ""), ("v.ark", "xyz"),
                    ("v.scp", f"u1 {tmp_path}/v.ark:0\n")):
        (tmp_path / f).write_text(text)
    stamp = tmp_path / "st"

    def write_stamp(opts: str = "x=1") -> None:
        subprocess.run(["stamp.py", "write", "st", "in1", "in2", "--archives-of", "v.scp", "--opts", opts],
                       cwd=tmp_path, env=recipe_env, check=True)

    r = sh(UP_TO_DATE, "x=1")                                 # no stamp yet
    assert r.returncode == 0 and r.stdout == "REDO\n" and not stamp.exists()
    write_stamp()
    r = sh(UP_TO_DATE, "x=1")                                 # outputs and stamp match
    assert r.returncode == 0 and r.stdout == (
        f"{sh.script}: out1 is up to date (inputs and options unchanged, st); skipping\nSKIP\n")
    assert stamp.exists()
    r = sh(UP_TO_DATE, "x=2")                                 # another option: redo, the stamp is gone
    assert r.stdout == "REDO\n" and not stamp.exists()
    write_stamp()
    (tmp_path / "in2").write_text("b2\n")                     # an input changed
    assert sh(UP_TO_DATE, "x=1").stdout == "REDO\n" and not stamp.exists()
    write_stamp()
    assert sh(UP_TO_DATE, "x=1").stdout.endswith("SKIP\n")
    (tmp_path / "v.ark").write_text("xyw")                    # an archive that the scp points into changed
    assert sh(UP_TO_DATE, "x=1").stdout == "REDO\n" and not stamp.exists()
    write_stamp()
    (tmp_path / "out2").unlink()                              # an output is missing
    assert sh(UP_TO_DATE, "x=1").stdout == "REDO\n" and not stamp.exists()
    # the arguments are checked
    r = sh('up_to_date st out1 in1 --opts x\n')
    assert r.returncode == 1 and "usage: up_to_date STAMP OUTPUT... -- INPUT..." in r.stderr


RESTART = """restart_if_changed d d/[0-9]*.mdl d/final.mdl d/sub -- in1 --opts "$1"
ls d | tr '\\n' ' '
"""


def test_restart_if_changed(sh, tmp_path: Path, recipe_env: dict[str, str]) -> None:
    d = tmp_path / "d"
    (d / "sub").mkdir(parents=True)
    (tmp_path / "in1").write_text("a\n")

    def populate() -> None:
        (d / "sub").mkdir(exist_ok=True)
        for f in ("1.mdl", "2.mdl", "final.mdl", "keep.txt", "sub/x"):
            (d / f).write_text("")

    populate()
    r = sh(RESTART, "x=1")                       # no fingerprint recorded: a fresh start
    assert r.returncode == 0 and r.stdout == "keep.txt ", r.stderr
    fp = subprocess.run(["stamp.py", "fingerprint", "in1", "--opts", "x=1"], cwd=tmp_path, env=recipe_env,
                        capture_output=True, text=True, check=True).stdout
    assert (d / ".inputs").read_text() == fp
    populate()
    assert sh(RESTART, "x=1").stdout == "1.mdl 2.mdl final.mdl keep.txt sub "    # same run: resume
    assert sh(RESTART, "x=2").stdout == "keep.txt "                             # other options
    assert (d / ".inputs").read_text() != fp


def _logs(tmp_path: Path) -> Path:
    d = tmp_path / "log"
    d.mkdir()
    (d / "extract.1.log").write_text(
        f"# extract.py --part 1/2 {tmp_path}/test_error_dir/data\n# Started at now\n#\n"
        "reading 10 utterances\nextract.py: ERROR: data/feats.scp:3: bad line\n"
        "# Accounting: time=1 threads=1\n# Ended (code 1) at now, elapsed time 1 seconds\n")
    (d / "extract.2.log").write_text(
        "# extract.py --part 2/2\nTraceback (most recent call last):\n"
        '  File "x.py", line 3, in <module>\n    raise ValueError("boom")\nValueError: boom\n'
        "# Ended (code 1) at now, elapsed time 1 seconds\n")
    return d


def test_failed_shows_the_error_lines_and_the_log(sh, tmp_path: Path) -> None:
    d = _logs(tmp_path)
    r = sh(f'false || failed "extraction failed" "{d}/extract.JOB.log"\necho after\n')
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.splitlines() == [
        "extract.py: ERROR: data/feats.scp:3: bad line",
        '    raise ValueError("boom")',
        "ValueError: boom",
        f"{sh.script}: extraction failed; see {d}/extract.*.log",
    ]
    # one log, a remark after it
    r = sh(f'failed "training failed" "{d}/extract.2.log" "(rerun to resume)"\n')
    assert r.returncode == 1 and r.stderr.splitlines() == [
        '    raise ValueError("boom")', "ValueError: boom",
        f"{sh.script}: training failed; see {d}/extract.2.log (rerun to resume)"]
    # at most the last 5 error lines; a missing log only gives the message
    (d / "many.log").write_text("".join(f"x.py: ERROR: e{i}\n" for i in range(8)))
    r = sh(f'failed "scoring failed" "{d}/many.log"\n')
    assert r.stderr.splitlines() == [f"x.py: ERROR: e{i}" for i in range(3, 8)] + [
        f"{sh.script}: scoring failed; see {d}/many.log"]
    r = sh(f'failed "update failed in iteration 3" "{d}/update.3.log"\n')
    want = f"{sh.script}: update failed in iteration 3; see {d}/update.3.log\n"
    assert r.returncode == 1 and r.stderr == want


def test_merge_jobs_and_copy_atomic(sh, tmp_path: Path) -> None:
    (tmp_path / "t.1.scp").write_text("b 2\nB 3\n")
    (tmp_path / "t.2.scp").write_text("a 1\n")
    (tmp_path / "src").write_text("model\n")
    r = sh('merge_jobs 2 t.JOB.scp > all.scp\ncopy_atomic src sub/dst || echo "no sub"\nmkdir sub\n'
           'copy_atomic src sub/dst\nls -A sub\n')
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "all.scp").read_text() == "B 3\na 1\nb 2\n"            # C order
    assert (tmp_path / "sub/dst").read_text() == "model\n" and r.stdout.endswith("no sub\ndst\n")
    r = sh('merge_jobs 3 t.JOB.scp > all.scp\necho after\n')                   # job 3 has no table
    assert r.returncode != 0 and "after" not in r.stdout and "t.3.scp" in r.stderr


FAKE_UBM = """#!/usr/bin/env python3
import pathlib, sys
a = sys.argv[1:]
with open(pathlib.Path(__file__).parent / "calls", "a") as f:
    f.write(" ".join(a) + "\\n")
if a[0].startswith("acc-"):
    pathlib.Path(a[-1]).write_text("acc")
elif a[0].startswith("est-"):
    models = [x for x in a if x.endswith("ubm")]
    pathlib.Path(models[1]).write_text("model")
    print("12:00:00 iteration " + a[a.index("--iter") + 1] + ": average log-likelihood per frame -1.0")
"""


@pytest.mark.parametrize("kind,ext", [("diag", "dubm"), ("full", "ubm")])
def test_ubm_em_in_parallel(sh, tmp_path: Path, recipe_env: dict[str, str], root: Path, kind: str,
                            ext: str) -> None:
    """ubm_em's --nj > 1 path with a stand-in ubm.py: the sub-commands of the kind, the option split
    (est gets --config and --set only), --last on the last iteration, resume, final.<ext>."""
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    (bin_ / "ubm.py").write_text(FAKE_UBM)
    (bin_ / "ubm.py").chmod(0o755)
    d = tmp_path / "exp"
    (d / "log").mkdir(parents=True)
    (d / f"0.{ext}").write_text("model")
    (d / f"1.{ext}").write_text("model")                  # iteration 0 was finished by an earlier run
    body = (f'. {root}/utils/ubm_lib.sh\ncmd=run.py\nPATH={bin_}:$PATH\n'
            f'ubm_em {kind} 2 data exp 3 --config c.yaml --frame-opts exp/frame_opts --device cpu '
            '--dtype float64 --set num_gauss=8\n')
    r = sh(body)
    assert r.returncode == 0, r.stdout + r.stderr
    calls = (bin_ / "calls").read_text().splitlines()
    opts = "--config c.yaml --frame-opts exp/frame_opts --device cpu --dtype float64 --set num_gauss=8"
    expected = [
        f"acc-{kind} {opts} --part 1/2 data exp/1.{ext} exp/0.{ext} exp/1.1.acc",
        f"acc-{kind} {opts} --part 2/2 data exp/1.{ext} exp/0.{ext} exp/1.2.acc",
        f"est-{kind} --config c.yaml --set num_gauss=8 --iter 1 exp/1.{ext} exp/2.{ext} "
        "exp/1.1.acc exp/1.2.acc",
        f"acc-{kind} {opts} --part 1/2 data exp/2.{ext} exp/0.{ext} exp/2.1.acc",
        f"acc-{kind} {opts} --part 2/2 data exp/2.{ext} exp/0.{ext} exp/2.2.acc",
        f"est-{kind} --config c.yaml --set num_gauss=8 --iter 2 --last exp/2.{ext} exp/3.{ext} "
        "exp/2.1.acc exp/2.2.acc",
    ]
    # the two jobs of an iteration run in either order
    assert [sorted(calls[:2]), calls[2], sorted(calls[3:5]), calls[5]] == [
        expected[:2], expected[2], expected[3:5], expected[5]]
    assert r.stdout.splitlines() == [
        f"{sh.script}: resuming after iteration 0 (exp/1.{ext} exists)",
        f"{sh.script}: iteration 1: average log-likelihood per frame -1.0",
        f"{sh.script}: iteration 2: average log-likelihood per frame -1.0",
    ]
    assert (d / f"final.{ext}").read_text() == "model" and not list(d.glob("*.acc"))
    # a failing M-step: the error lines of its log and the message, exit 1
    (bin_ / "ubm.py").write_text("#!/usr/bin/env bash\n"
                                 '[[ $1 == est-* ]] && { echo "ERROR: singular covariance" >&2; exit 1; }\n'
                                 'touch "${@: -1}"\n')
    r = sh(body.replace(" 3 --config", " 5 --config"))
    assert r.returncode == 1
    assert r.stderr.splitlines()[-2:] == [
        "ERROR: singular covariance", f"{sh.script}: update failed in iteration 3; see exp/log/update.3.log"]
