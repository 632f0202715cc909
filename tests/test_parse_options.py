"""utils/parse_options.sh: Kaldi's option semantics, checked by running a script that sources it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

SCRIPT = """#!/usr/bin/env bash
set -euo pipefail
nj=4
use_gpu=false
stop_stage=10
cmd="utils/run.py"
empty=
help_message="Usage: demo.sh [options] <dir>"
. {root}/utils/parse_options.sh
printf '%s|%s|%s|%s|%s|%s\\n' "$nj" "$use_gpu" "$stop_stage" "$cmd" "$empty" "$*"
"""


@pytest.fixture()
def script(tmp_path: Path, root: Path) -> Path:
    p = tmp_path / "demo.sh"
    p.write_text(SCRIPT.format(root=root))
    return p


def run(script: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(script), *args], capture_output=True, text=True)


def test_defaults_and_positional(script: Path) -> None:
    r = run(script, "a", "b c")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "4|false|10|utils/run.py||a b c"


def test_dashes_become_underscores_and_values_with_spaces(script: Path) -> None:
    r = run(script, "--nj", "8", "--use-gpu", "true", "--stop_stage", "3", "--cmd", "run.py --mem 4G",
            "--empty=x y", "data/train")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "8|true|3|run.py --mem 4G|x y|data/train"


def test_unknown_option_is_an_error_naming_it(script: Path) -> None:
    r = run(script, "--num-jobs", "3", "x")
    assert r.returncode != 0
    assert "invalid option --num-jobs" in r.stderr
    assert r.stdout == ""


def test_boolean_checked(script: Path) -> None:
    r = run(script, "--use-gpu", "yes")
    assert r.returncode != 0
    assert "--use-gpu expects true or false, got 'yes'" in r.stderr


def test_missing_value_and_empty_cmd(script: Path) -> None:
    r = run(script, "--nj")
    assert r.returncode != 0 and "--nj needs a value" in r.stderr
    r = run(script, "--cmd", "")
    assert r.returncode != 0 and "empty argument to --cmd" in r.stderr


def test_help_prints_help_message(script: Path) -> None:
    r = run(script, "--help")
    assert r.returncode == 0
    assert "Usage: demo.sh [options] <dir>" in r.stderr
    assert r.stdout == ""


def test_config_file_is_sourced_and_later_options_win(script: Path, tmp_path: Path) -> None:
    conf = tmp_path / "opts.conf"
    conf.write_text("nj=16\nstop_stage=5\n")
    r = run(script, "--config", str(conf), "--stop-stage", "7")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "16|false|7|utils/run.py||"


def test_config_is_ordinary_option_when_script_defines_it(tmp_path: Path, root: Path) -> None:
    p = tmp_path / "withconf.sh"
    p.write_text(f"config=conf/x.yaml\n. {root}/utils/parse_options.sh\necho \"$config\"\n")
    r = subprocess.run(["bash", str(p), "--config", "conf/cluster/imsat.yaml"], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "conf/cluster/imsat.yaml"


def test_double_dash_ends_options(script: Path) -> None:
    r = run(script, "--nj", "2", "--", "--not-an-option")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "2|false|10|utils/run.py||--not-an-option"


def test_run_sh_rejects_unknown_option_and_lists_stages(root: Path) -> None:
    r = subprocess.run([str(root / "run.sh"), "--no-such-thing", "1"], capture_output=True, text=True)
    assert r.returncode != 0 and "invalid option --no-such-thing" in r.stderr
    r = subprocess.run([str(root / "run.sh"), "--help"], capture_output=True, text=True)
    assert r.returncode == 0
    assert "0  data preparation" in r.stderr and "1  MFCC" in r.stderr and "--corpus-dir" in r.stderr


@pytest.mark.parametrize("opt", ["--PATH", "--home", "--help-message", "--HOME", "--Nj"])
def test_only_the_scripts_lower_case_variables_are_options(script: Path, opt: str) -> None:
    """Environment variables (exported, or upper case) and the help text are not options."""
    r = subprocess.run(["bash", str(script), opt, "/x"], capture_output=True, text=True,
                       env={"PATH": "/usr/bin:/bin", "home": "/h"})
    assert r.returncode != 0 and f"invalid option {opt}" in r.stderr, r.stderr
    assert r.stdout == ""


@pytest.mark.parametrize(("args", "message"), [
    (["--stage", "99"], "--stage must be a stage number from 0 to 10, got '99'"),
    (["--stage", "abc"], "--stage must be a stage number from 0 to 10, got 'abc'"),
    (["--stop-stage", "-1"], "--stop-stage must be a stage number from 0 to 10, got '-1'"),
    (["--stage", "08"], "--stage must be a stage number from 0 to 10, got '08'"),
    (["--stage", "5", "--stop-stage", "2"], "--stage 5 is after --stop-stage 2: no stage to run"),
    (["--PATH", "/x"], "invalid option --PATH"),
    (["--run-command", "x"], "invalid option --run-command"),
    (["--num-clusters", "-3"], "--num-clusters must be an integer >= 2, got '-3'"),
    (["--num-clusters", "1"], "--num-clusters must be an integer >= 2, got '1'"),
    (["--device", "gpu"], "--device must be auto, cpu, cuda or cuda:N, got 'gpu'"),
])
def test_run_sh_rejects_bad_stage_ranges_before_any_work(root: Path, tmp_path: Path, args: list[str],
                                                        message: str) -> None:
    r = subprocess.run([str(root / "run.sh"), "--data", str(tmp_path / "data"), *args],
                       capture_output=True, text=True)
    assert r.returncode != 0 and message in r.stderr, r.stderr
    assert "done" not in r.stdout and not (tmp_path / "data").exists()


def test_run_sh_cuda_on_a_machine_without_cuda_is_one_line(root: Path, tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    r = subprocess.run([str(root / "run.sh"), "--data", str(tmp_path / "data"), "--device", "cuda"],
                       capture_output=True, text=True)
    assert r.returncode == 1 and r.stderr.strip().splitlines()[-1].startswith(
        f"{root}/run.sh: --device cuda: CUDA is not available (torch "), r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "data").exists()
