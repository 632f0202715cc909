"""The job runners (utils/run.py, utils/slurm.py): JOB expansion, bounded parallelism, run.pl's log
format, exit codes, --pick reruns, signals, GPU assignment, and the SLURM back-end against a stand-in
``sbatch`` that runs the array tasks locally."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from sslsv.jobs import (
    DEFAULT_SLURM_CONFIG,
    THREAD_VARS,
    SlurmConfig,
    UsageError,
    array_spec,
    cpu_count,
    join_words,
    parse_args,
)
from sslsv.tables import DataError

ROOT = Path(__file__).resolve().parents[1]
RUN = str(ROOT / "utils" / "run.py")
SLURM = str(ROOT / "utils" / "slurm.py")
FOOTER_RE = re.compile(r"^# Ended \(code (\d+)\) at .+, elapsed time \d+ seconds$")


def env_without(*names: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in names}
    env.update(extra)
    return env


def run(args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 60
        ) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def max_overlap(tdir: Path, n: int) -> int:
    """Most jobs running at the same time, from the start/end times each job wrote."""
    events = []
    for i in range(1, n + 1):
        events.append((float((tdir / f"{i}.start").read_text()), 1))
        events.append((float((tdir / f"{i}.end").read_text()), -1))
    events.sort(key=lambda e: (e[0], e[1]))  # an end before a start at the same instant
    cur = best = 0
    for _, d in events:
        cur += d
        best = max(best, cur)
    return best


TIMED_JOB = ["date", "+%s.%N", ">", "t/JOB.start", ";", "sleep", "0.6", ";",
             "date", "+%s.%N", ">", "t/JOB.end"]


# ---------------------------------------------------------------------------------------------------
# Local back-end


def test_job_substitution_and_log_format(tmp_path: Path) -> None:
    r = run([RUN, "--num-threads", "3", "JOB=1:3", "log/deep/x.JOB.log", "echo", "job", "JOB", "of", "x.JOB"],
            tmp_path)
    assert r.returncode == 0, r.stderr
    for i in range(1, 4):
        ls = lines(tmp_path / f"log/deep/x.{i}.log")
        assert ls[0] == f"# echo job {i} of x.{i}"
        assert re.match(r"^# Started at \w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d .+ \d{4}$", ls[1])
        assert ls[3] == f"job {i} of x.{i}"
        assert re.match(r"^# Accounting: time=\d+ threads=3$", ls[-2])
        m = FOOTER_RE.match(ls[-1])
        assert m and m.group(1) == "0"
    # any variable name; a single index; no range at all
    r = run([RUN, "TASK=1:2", "log/t.TASK.log", "echo", "TASK"], tmp_path)
    assert r.returncode == 0 and lines(tmp_path / "log/t.2.log")[3] == "2"
    r = run([RUN, "JOB=7", "log/s.JOB.log", "echo", "JOB"], tmp_path)
    assert r.returncode == 0 and lines(tmp_path / "log/s.7.log")[3] == "7"
    r = run([RUN, "log/one.log", "echo", "JOB"], tmp_path)
    assert r.returncode == 0 and lines(tmp_path / "log/one.log")[3] == "JOB"


@pytest.mark.parametrize("k", [1, 2, 3])
def test_parallelism_bounded_by_max_jobs_run(tmp_path: Path, k: int) -> None:
    (tmp_path / "t").mkdir()
    t0 = time.time()
    r = run([RUN, "--max-jobs-run", str(k), "JOB=1:6", "log/p.JOB.log", *TIMED_JOB], tmp_path)
    wall = time.time() - t0
    assert r.returncode == 0, r.stderr
    assert max_overlap(tmp_path / "t", 6) == k
    assert wall < 6 * 0.6 / k + 3.0  # no idle gaps between jobs


def test_kaldi_style_options_accepted(tmp_path: Path) -> None:
    (tmp_path / "t").mkdir()
    r = run([RUN, "--mem=4G", "--num_threads", "2", "--time", "1:00:00", "-tc", "2", "JOB=1:4",
             "log/o.JOB.log", *TIMED_JOB], tmp_path)
    assert r.returncode == 0, r.stderr
    assert max_overlap(tmp_path / "t", 4) == 2
    assert lines(tmp_path / "log/o.1.log")[-2].endswith("threads=2")


def test_unknown_option_and_bad_usage(tmp_path: Path) -> None:
    r = run([RUN, "--bogus-opt", "3", "JOB=1:2", "log/u.JOB.log", "true"], tmp_path)
    assert r.returncode == 2 and "unknown option --bogus-opt" in r.stderr
    r = run([RUN, "--max-jobs-run", "zero", "log/u.log", "true"], tmp_path)
    assert r.returncode == 2 and "--max-jobs-run expects an integer" in r.stderr
    r = run([RUN, "JOB=1:2", "log/same.log", "true"], tmp_path)
    assert r.returncode == 2 and "does not contain JOB" in r.stderr
    r = run([RUN, "JOB=3:2", "log/u.JOB.log", "true"], tmp_path)
    assert r.returncode == 2 and "invalid job range" in r.stderr
    assert not (tmp_path / "log").exists()
    with pytest.raises(UsageError, match="--config"):
        parse_args(["--config", "x.conf", "log", "true"])  # only the SLURM runner takes --config


def test_failure_exit_code_names_log_and_waits_for_all(tmp_path: Path) -> None:
    # jobs 3 and 4 fail at once; job 1 succeeds late: the runner must wait for it before exiting 1
    r = run([RUN, "JOB=1:4", "log/f.JOB.log", "test", "JOB", "-lt", "3", "&&", "sleep", "0.JOB"], tmp_path)
    assert r.returncode == 1
    assert "run.py: 2 / 4 failed, log is in log/f.*.log (first failed: log/f.3.log)" in r.stderr
    codes = [FOOTER_RE.match(lines(tmp_path / f"log/f.{i}.log")[-1]) for i in (1, 2)]
    assert all(m and m.group(1) == "0" for m in codes)
    for i in (3, 4):
        assert re.match(r"^# Ended \(code 1\) at ", lines(tmp_path / f"log/f.{i}.log")[-1])
    r = run([RUN, "log/single.log", "exit", "3"], tmp_path)
    assert r.returncode == 1 and "run.py: job failed, log is in log/single.log" in r.stderr
    assert lines(tmp_path / "log/single.log")[-1].startswith("# Ended (code 3) at ")


def test_pipes_words_with_spaces_and_pipefail(tmp_path: Path) -> None:
    assert join_words(["echo", "a b", "|", "x'y", "", "c\td"]) == "echo 'a b' | x'y '' 'c\td'"
    r = run([RUN, "log/p.log", "echo", "hello", "world", "|", "tr", "a-z", "A-Z"], tmp_path)
    assert r.returncode == 0
    ls = lines(tmp_path / "log/p.log")
    assert ls[0] == "# echo hello world | tr a-z A-Z" and ls[3] == "HELLO WORLD"
    # a word with spaces stays one argument (two spaces kept), a single quote in it survives
    r = run([RUN, "log/w.log", "printf", "'<%s>\\n'", "it's  two", "x"], tmp_path)
    assert r.returncode == 0
    assert lines(tmp_path / "log/w.log")[3:5] == ["<it's  two>", "<x>"]
    # stderr goes to the log too; a failure early in a pipe fails the job (pipefail)
    r = run([RUN, "log/pf.log", "sh", "-c", "echo oops >&2; exit 4", "|", "cat"], tmp_path)
    assert r.returncode == 1
    ls = lines(tmp_path / "log/pf.log")
    assert "oops" in ls and ls[-1].startswith("# Ended (code 4) at ")


def test_pick_failed_reruns_only_failed_jobs(tmp_path: Path) -> None:
    for i in (1, 3):
        (tmp_path / f"ok.{i}").touch()
    job = ["echo", "JOB", ">>", "runs.txt", ";", "test", "-e", "ok.JOB"]
    r = run([RUN, "JOB=1:4", "log/k.JOB.log", *job], tmp_path)
    assert r.returncode == 1 and "2 / 4 failed" in r.stderr
    assert sorted(lines(tmp_path / "runs.txt")) == ["1", "2", "3", "4"]
    kept = {i: (tmp_path / f"log/k.{i}.log").read_text() for i in (1, 3)}
    for i in (2, 4):
        (tmp_path / f"ok.{i}").touch()
    (tmp_path / "runs.txt").unlink()
    r = run([RUN, "--pick", "failed", "JOB=1:4", "log/k.JOB.log", *job], tmp_path)
    assert r.returncode == 0, r.stderr
    assert sorted(lines(tmp_path / "runs.txt")) == ["2", "4"]
    assert all((tmp_path / f"log/k.{i}.log").read_text() == kept[i] for i in (1, 3))
    assert all(FOOTER_RE.match(lines(tmp_path / f"log/k.{i}.log")[-1]) for i in (2, 4))
    # nothing left to do
    (tmp_path / "runs.txt").unlink()
    r = run([RUN, "--pick", "failed", "JOB=1:4", "log/k.JOB.log", *job], tmp_path)
    assert r.returncode == 0 and "nothing to rerun" in r.stderr and not (tmp_path / "runs.txt").exists()
    # an unfinished log (no footer, e.g. the machine went down) and a missing one are rerun too
    log3 = tmp_path / "log/k.3.log"
    log3.write_text("\n".join(lines(log3)[:-2]) + "\n")
    (tmp_path / "log/k.4.log").unlink()
    r = run([RUN, "--pick", "incomplete", "JOB=1:4", "log/k.JOB.log", *job], tmp_path)
    assert r.returncode == 0 and sorted(lines(tmp_path / "runs.txt")) == ["3", "4"]


def test_job_killed_by_signal_is_logged(tmp_path: Path) -> None:
    r = run([RUN, "log/sig.log", "echo", "before", ";", "kill", "-KILL", "$$"], tmp_path)
    assert r.returncode == 1
    ls = lines(tmp_path / "log/sig.log")
    assert "before" in ls
    assert re.match(r"^# Ended \(code 137; signal 9 SIGKILL\) at ", ls[-1])


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_runner_signal_terminates_children(tmp_path: Path, signum: int) -> None:
    p = subprocess.Popen([sys.executable, RUN, "--max-jobs-run", "2", "JOB=1:3", "log/s.JOB.log",
                          "echo", "$$", ">", "pid.JOB", ";", "sleep", "60", "|", "cat"],
                         cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 20
    while not all((tmp_path / f"pid.{i}").is_file() and (tmp_path / f"pid.{i}").read_text().strip()
                  for i in (1, 2)):
        assert time.time() < deadline, "jobs did not start"
        time.sleep(0.05)
    pids = [int((tmp_path / f"pid.{i}").read_text()) for i in (1, 2)]
    p.send_signal(signum)
    _, err = p.communicate(timeout=20)
    assert p.returncode == 128 + signum
    assert f"{signal.Signals(signum).name} received" in err and "1 not started" in err
    assert not (tmp_path / "log/s.3.log").exists()
    for i, pid in zip((1, 2), pids, strict=True):
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
        ls = lines(tmp_path / f"log/s.{i}.log")
        assert ls[-3] == f"# Terminated by run.py ({signal.Signals(signum).name} received)"
        assert re.match(r"^# Ended \(code 143; signal 15 SIGTERM\) at ", ls[-1])


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie, waiting for a parent that will never reap it, counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


def test_jobs_die_with_a_runner_killed_by_sigkill(tmp_path: Path) -> None:
    """kill -9 of the runner's process group (run.sh's, in a recipe) stops the jobs within seconds: before,
    each job's own session outlived it and raced a rerun. The rerun then starts cleanly."""
    cmd = [sys.executable, RUN, "JOB=1:2", "log/k.JOB.log", "echo", "$$", ">", "pid.JOB", ";",
           "sleep", "60", "|", "cat"]
    p = subprocess.Popen(cmd, cwd=tmp_path, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 20
    while not all((tmp_path / f"pid.{i}").is_file() and (tmp_path / f"pid.{i}").read_text().strip()
                  for i in (1, 2)):
        assert time.time() < deadline, "jobs did not start"
        time.sleep(0.05)
    pids = [int((tmp_path / f"pid.{i}").read_text()) for i in (1, 2)]
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    deadline = time.time() + 10
    while any(_alive(pid) for pid in pids):
        assert time.time() < deadline, "jobs outlived their runner"
        time.sleep(0.1)
    for i in (1, 2):
        text = (tmp_path / f"log/k.{i}.log").read_text()
        assert f"the runner (pid {p.pid}) is gone: stopping this job" in text
    r = run([RUN, "JOB=1:2", "log/k.JOB.log", "echo", "again"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert "again" in lines(tmp_path / "log/k.1.log")


def test_a_log_held_by_a_live_job_is_never_shared(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """A job whose log (its stdout) is still held by a live process of an earlier run is not started over
    it: the runner waits for the lock, and fails with a clear message if it is not released."""
    import sslsv.jobs as jobs

    (tmp_path / "log").mkdir()
    log = tmp_path / "log/x.log"
    holder = subprocess.Popen(["flock", str(log), "sleep", "30"], start_new_session=True)
    try:
        deadline = time.time() + 10
        while subprocess.run(["flock", "-n", str(log), "true"]).returncode == 0:
            assert time.time() < deadline
            time.sleep(0.05)
        monkeypatch.setattr(jobs, "LOG_LOCK_WAIT", 0.5)
        monkeypatch.chdir(tmp_path)
        assert jobs.main(["log/x.log", "echo", "new"]) == 1
        assert "log/x.log is still written by a live job of an earlier run" in capsys.readouterr().err
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait()
        assert jobs.main(["log/x.log", "echo", "new"]) == 0
        assert "new" in lines(log)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(holder.pid, signal.SIGKILL)


def test_gpu_jobs_get_distinct_devices(tmp_path: Path) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    smi = bindir / "nvidia-smi"
    smi.write_text("#!/usr/bin/env bash\n"
                   "echo 'GPU 0: Fake GPU (UUID: GPU-a)'\necho 'GPU 1: Fake GPU (UUID: GPU-b)'\n")
    smi.chmod(0o755)
    env = env_without("CUDA_VISIBLE_DEVICES", PATH=f"{bindir}:{os.environ['PATH']}")
    (tmp_path / "t").mkdir()
    job = ["echo", "$CUDA_VISIBLE_DEVICES", ">", "t/JOB.dev", ";", *TIMED_JOB]
    r = run([RUN, "--gpu", "1", "JOB=1:6", "log/g.JOB.log", *job], tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    assert max_overlap(tmp_path / "t", 6) == 2  # default: one job per GPU
    spans = []
    for i in range(1, 7):
        dev = (tmp_path / f"t/{i}.dev").read_text().strip()
        spans.append((float((tmp_path / f"t/{i}.start").read_text()),
                      float((tmp_path / f"t/{i}.end").read_text()), dev))
    assert {s[2] for s in spans} == {"0", "1"}
    for a in spans:
        for b in spans:
            if a is not b and a[0] < b[1] and b[0] < a[1]:
                assert a[2] != b[2], "two jobs ran on one GPU at the same time"
    # CUDA_VISIBLE_DEVICES restricts the pool; --gpu 2 gives each job both devices
    r = run([RUN, "--gpu", "2", "JOB=1:2", "log/g2.JOB.log", "echo", "$CUDA_VISIBLE_DEVICES"], tmp_path,
            env=dict(env, CUDA_VISIBLE_DEVICES="5,7"))
    assert r.returncode == 0 and lines(tmp_path / "log/g2.1.log")[3] == "5,7"


def test_train_cmd_from_a_script_that_sourced_path_sh(tmp_path: Path) -> None:
    script = tmp_path / "stage.sh"
    script.write_text(textwrap.dedent(f"""\
        #!/usr/bin/env bash
        set -euo pipefail
        cd {ROOT}
        . ./path.sh
        . ./cmd.sh
        $train_cmd JOB=1:2 {tmp_path}/log/x.JOB.log echo JOB
        $cuda_cmd {tmp_path}/log/gpu.log echo on gpu \\| tr a-z A-Z
        """))
    r = subprocess.run(["bash", str(script)], env=env_without("train_cmd", "cuda_cmd", "VIRTUAL_ENV"),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    for i in (1, 2):
        ls = lines(tmp_path / f"log/x.{i}.log")
        assert ls[0] == f"# echo {i}" and ls[3] == str(i) and FOOTER_RE.match(ls[-1])
    assert lines(tmp_path / "log/gpu.log")[3] == "ON GPU"


# ---------------------------------------------------------------------------------------------------
# SLURM back-end

FAKE_SBATCH = r'''#!/usr/bin/env python3
"""Stand-in sbatch: records its argv, runs the batch script once per --array index."""
import json, os, subprocess, sys
args = sys.argv[1:]
with open(os.environ["SBATCH_RECORD"], "a") as f:
    f.write(json.dumps(args) + "\n")
if os.environ.get("SBATCH_FAIL"):
    print("sbatch: error: Batch job submission failed: Invalid account", file=sys.stderr)
    sys.exit(1)
spec, out, wait = None, "slurm-%j.out", False
i = 0
while i < len(args) - 1:
    a = args[i]
    if a.startswith("--array="): spec = a.split("=", 1)[1]
    elif a in ("-o", "--output"): out = args[i + 1]; i += 1
    elif a == "--wait": wait = True
    i += 1
script = args[-1]
indices = [None]
if spec is not None:
    indices = []
    for part in spec.split("%")[0].split(","):
        a, _, b = part.partition("-")
        indices += range(int(a), int(b or a) + 1)
print("4242", flush=True)
if os.environ.get("SBATCH_HANG") and wait:   # a job that never starts: wait for the stand-in scancel
    import time
    give_up = time.time() + 120                # never outlive a test that failed to cancel
    while not os.path.exists(os.environ["SBATCH_RECORD"] + ".cancelled") and time.time() < give_up:
        time.sleep(0.05)
    sys.exit(1)
def run_all():
    rc = 0
    for idx in indices:
        env = dict(os.environ, SLURM_JOB_ID="4242")
        if idx is not None:
            env["SLURM_ARRAY_TASK_ID"] = str(idx)
        path = out.replace("%a", str(idx)).replace("%j", "4242")
        open(path, "w").close()
        with open(path, "a") as o:       # appending, as the lines slurmstepd adds must survive
            rc = max(rc, subprocess.call(["bash", script], env=env, stdout=o, stderr=subprocess.STDOUT))
    return rc
sys.exit(run_all() if wait else 0)
'''


FAKE_QUEUE_TOOL = r'''#!/usr/bin/env python3
"""Stand-in squeue / scancel: records its name and argv. squeue prints <record>.squeue_out if the test
wrote one (no live jobs otherwise); scancel creates <record>.cancelled."""
import json, os, sys
rec, tool = os.environ["SBATCH_RECORD"], os.path.basename(sys.argv[0])
with open(rec + "." + tool, "a") as f:
    f.write(json.dumps(sys.argv[1:]) + "\n")
if tool == "squeue" and os.path.exists(rec + ".squeue_out"):
    sys.stdout.write(open(rec + ".squeue_out").read())
if tool == "scancel":
    open(rec + ".cancelled", "w").close()
'''


@pytest.fixture
def slurm_env(tmp_path: Path) -> dict[str, str]:
    """Stand-ins for sbatch, squeue and scancel first on the PATH, so that these tests never reach a real
    SLURM installation (configured or not) on the machine that runs them."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for name, text in (("sbatch", FAKE_SBATCH), ("squeue", FAKE_QUEUE_TOOL), ("scancel", FAKE_QUEUE_TOOL)):
        (bindir / name).write_text(text)
        (bindir / name).chmod(0o755)
    (tmp_path / "conf").mkdir()
    shutil.copy(ROOT / "conf" / "slurm.conf", tmp_path / "conf" / "slurm.conf")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SSLSV_") and k not in THREAD_VARS}
    return dict(env, PATH=f"{bindir}:{os.environ['PATH']}", SBATCH_RECORD=str(tmp_path / "sbatch.argv"),
                SSLSV_ROOT=str(ROOT), OMP_NUM_THREADS="3")


def sbatch_calls(tmp_path: Path) -> list[list[str]]:
    return [json.loads(x) for x in lines(tmp_path / "sbatch.argv")]


def test_slurm_maps_options_and_writes_logs(tmp_path: Path, slurm_env: dict[str, str]) -> None:
    r = run([SLURM, "--mem", "4G", "--num-threads", "2", "--gpu", "1", "--max-jobs-run", "2",
             "--time=1:00:00", "JOB=1:3", "exp/log/mfcc.JOB.log",
             "echo", "task", "JOB", "|", "tr", "a-z", "A-Z"],
            tmp_path, env=slurm_env)
    assert r.returncode == 0, r.stderr
    assert "submitted job 4242" in r.stderr
    # the recipe's variables travel with Kaldi's --export=PATH (the batch script sources path.sh)
    assert sbatch_calls(tmp_path) == [[
        "--export=PATH,SSLSV_ROOT,OMP_NUM_THREADS", "--ntasks-per-node=1", "--mem", "4G", "--cpus-per-task",
        "2", "--gres=gpu:1", "--time", "1:00:00", "--job-name=mfcc", "--array=1-3%2", "--wait", "--parsable",
        "-o", "exp/log/q/mfcc-%a.out", str(tmp_path.resolve() / "exp/log/q/mfcc.sh")]]
    assert os.access(tmp_path / "exp/log/q/mfcc.sh", os.X_OK)
    for i in (1, 2, 3):
        ls = lines(tmp_path / f"exp/log/mfcc.{i}.log")
        assert ls[0] == f"# echo task {i} | tr a-z A-Z" and ls[3] == f"TASK {i}"
        # the user's OMP_NUM_THREADS (3, exported with the task) wins over --num-threads 2, and the
        # footer records what the job ran with
        assert ls[-2].endswith("threads=3") and FOOTER_RE.match(ls[-1])
        assert f"job 4242 (4242_{i})" in (tmp_path / f"exp/log/q/mfcc-{i}.out").read_text()
    # gpu 0 (the default) adds nothing; a single job is not an array
    r = run([SLURM, "exp/log/one.log", "true"], tmp_path, env=slurm_env)
    assert r.returncode == 0, r.stderr
    assert sbatch_calls(tmp_path)[-1] == [
        "--export=PATH,SSLSV_ROOT,OMP_NUM_THREADS", "--ntasks-per-node=1", "--job-name=one", "--wait",
        "--parsable", "-o", "exp/log/q/one.out", str(tmp_path.resolve() / "exp/log/q/one.sh")]
    assert FOOTER_RE.match(lines(tmp_path / "exp/log/one.log")[-1])


def test_slurm_failing_task_and_pick_failed(tmp_path: Path, slurm_env: dict[str, str]) -> None:
    for i in (1, 3, 4):
        (tmp_path / f"ok.{i}").touch()
    job = ["JOB=1:5", "exp/log/f.JOB.log", "echo", "JOB", ">>", "runs.txt", ";", "test", "-e", "ok.JOB"]
    r = run([SLURM, *job], tmp_path, env=slurm_env)
    assert r.returncode == 1
    assert "slurm.py: 2 / 5 failed, log is in exp/log/f.*.log (first failed: exp/log/f.2.log)" in r.stderr
    assert lines(tmp_path / "exp/log/f.5.log")[-1].startswith("# Ended (code 1) at ")
    for i in (2, 5):
        (tmp_path / f"ok.{i}").touch()
    (tmp_path / "runs.txt").unlink()
    r = run([SLURM, "--pick", "failed", "--max-jobs-run", "4", *job], tmp_path, env=slurm_env)
    assert r.returncode == 0, r.stderr
    assert "--array=2,5%4" in sbatch_calls(tmp_path)[-1]
    assert sorted(lines(tmp_path / "runs.txt")) == ["2", "5"]


def test_slurm_sbatch_error_propagates(tmp_path: Path, slurm_env: dict[str, str]) -> None:
    r = run([SLURM, "JOB=1:2", "exp/log/e.JOB.log", "true"], tmp_path, env=dict(slurm_env, SBATCH_FAIL="1"))
    assert r.returncode == 1
    assert "Invalid account" in r.stderr and "sbatch exited with code 1" in r.stderr
    # a submit command that cannot be started (as sbatch on a machine without SLURM): one clear line
    conf = tmp_path / "missing.conf"
    conf.write_text(f"command {tmp_path}/no-such-dir/sbatch\n")
    r = run([SLURM, "--config", str(conf), "JOB=1:2", "exp/log/e.JOB.log", "true"], tmp_path, env=slurm_env)
    assert r.returncode == 1 and f"cannot run {tmp_path}/no-such-dir/sbatch" in r.stderr


def test_slurm_signal_cancels_the_job(tmp_path: Path, slurm_env: dict[str, str]) -> None:
    """SIGTERM while the array runs: the job id that sbatch printed goes to (the stand-in) scancel."""
    p = subprocess.Popen([sys.executable, SLURM, "JOB=1:2", "exp/log/s.JOB.log", "sleep", "3"], cwd=tmp_path,
                         env=slurm_env, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 30
    while not (tmp_path / "exp/log/s.1.log").exists() and time.time() < deadline:
        time.sleep(0.05)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 128 + signal.SIGTERM, err
    assert "SIGTERM received: cancelled job 4242" in err
    assert lines(tmp_path / "sbatch.argv.scancel") == ['["4242"]']


def test_slurm_refuses_to_resubmit_over_a_live_array(tmp_path: Path, slurm_env: dict[str, str]) -> None:
    """After kill -9 of an earlier slurm.py its array still runs; a rerun does not submit a second one
    for the same outputs (before, it did)."""
    script = tmp_path.resolve() / "exp/log/q/l.sh"
    (tmp_path / "sbatch.argv.squeue_out").write_text(f"777|RUNNING|{script}\n"
                                                     "778|PENDING|/elsewhere/l.sh\n")
    r = run([SLURM, "JOB=1:2", "exp/log/l.JOB.log", "true"], tmp_path, env=slurm_env)
    assert r.returncode == 1
    assert (f"job 777 (RUNNING) of an earlier run still runs {script}, which writes exp/log/l.*.log; "
            "wait for it to end or cancel it (scancel 777)") in r.stderr
    assert not (tmp_path / "sbatch.argv").exists()
    squeue = [json.loads(x) for x in lines(tmp_path / "sbatch.argv.squeue")]
    assert "--name=l" in squeue[0] and "--format=%i|%T|%o" in squeue[0]


def test_slurm_cancels_a_job_that_can_never_start(tmp_path: Path, slurm_env: dict[str, str]) -> None:
    """Tasks pending for a reason that never clears (more CPUs than a node has: PartitionConfig) are
    cancelled and reported, instead of a silent wait forever."""
    (tmp_path / "sbatch.argv.squeue_out").write_text("4242_1|PENDING|PartitionConfig\n"
                                                     "4242_2|PENDING|PartitionConfig\n")
    env = dict(slurm_env, SBATCH_HANG="1", SSLSV_SQUEUE_POLL="0.3")
    r = run([SLURM, "--num-threads", "4", "JOB=1:2", "exp/log/p.JOB.log", "true"], tmp_path, env=env)
    assert r.returncode == 1
    assert ("slurm.py: job 4242 can never start (pending, reason PartitionConfig: the request "
            "--cpus-per-task 4 exceeds") in r.stderr, r.stderr
    assert [json.loads(x) for x in lines(tmp_path / "sbatch.argv.scancel")] == [["4242"]]
    # a reason that can clear (waiting for resources) is waited for
    (tmp_path / "sbatch.argv.squeue_out").write_text("4242_1|PENDING|Resources\n4242_2|RUNNING|None\n")
    (tmp_path / "sbatch.argv.cancelled").unlink()
    p = subprocess.Popen([sys.executable, SLURM, "JOB=1:2", "exp/log/p.JOB.log", "true"], cwd=tmp_path,
                         env=env, stderr=subprocess.PIPE, text=True)
    time.sleep(2.0)
    assert p.poll() is None and not (tmp_path / "sbatch.argv.cancelled").exists()
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 128 + signal.SIGINT and "SIGINT received: cancelled job 4242" in err


def test_slurm_second_signal_still_cancels(tmp_path: Path, slurm_env: dict[str, str]) -> None:
    """A double Ctrl-C (or timeout's TERM then a user's INT) still reaches scancel: the handler only
    sets a flag (before, it raised inside itself and the second signal skipped the cancel)."""
    env = dict(slurm_env, SBATCH_HANG="1")
    p = subprocess.Popen([sys.executable, SLURM, "JOB=1:2", "exp/log/d.JOB.log", "true"], cwd=tmp_path,
                         env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 30
    while not (tmp_path / "sbatch.argv").exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    p.send_signal(signal.SIGINT)
    p.send_signal(signal.SIGINT)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 128 + signal.SIGINT, err
    assert "SIGINT received: cancelled job 4242" in err and "Traceback" not in err
    assert ["4242"] in [json.loads(x) for x in lines(tmp_path / "sbatch.argv.scancel")]


def test_slurm_names_a_time_limit_kill(tmp_path: Path, slurm_env: dict[str, str]) -> None:
    """A task stopped by SLURM at its time limit is reported as such, with the task's own id."""
    job = ["JOB=1:2", "exp/log/t.JOB.log", "test", "JOB", "=", "1", "||", "{", "echo",
           "'*** JOB 4243 ON node1 CANCELLED AT 2026-12-05T10:00:00 DUE TO TIME LIMIT ***'", ">>",
           "exp/log/q/t-JOB.out", ";", "kill", "-9", "$$", ";", "}"]
    r = run([SLURM, "--time", "0:01:00", *job], tmp_path, env=slurm_env)
    assert r.returncode == 1
    assert ("slurm.py: task 4242_2 (exp/log/t.2.log) was killed by SLURM at its time limit (--time); "
            "see exp/log/q/t-2.out") in r.stderr, r.stderr
    assert "4242_1" not in r.stderr


def test_threads_follow_the_slurm_allocation(monkeypatch: pytest.MonkeyPatch) -> None:
    """Inside a SLURM job the thread count is the allocation, not the node's cores (the affinity shows
    every core when the cluster does not bind tasks)."""
    for var in ("SLURM_JOB_ID", "SLURM_CPUS_PER_TASK", "SLURM_CPUS_ON_NODE"):
        monkeypatch.delenv(var, raising=False)
    cores = cpu_count()
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "1")
    assert cpu_count() == cores                      # not in a job: ignored
    monkeypatch.setenv("SLURM_JOB_ID", "12")
    assert cpu_count() == 1
    monkeypatch.delenv("SLURM_CPUS_PER_TASK")
    monkeypatch.setenv("SLURM_CPUS_ON_NODE", "1")
    assert cpu_count() == 1
    monkeypatch.setenv("SLURM_CPUS_ON_NODE", "100000")
    assert cpu_count() == cores                      # never more than the process may use


def test_slurm_config_options(tmp_path: Path, slurm_env: dict[str, str]) -> None:
    r = run([SLURM, "--partition", "long", "exp/log/c.log", "true"], tmp_path, env=slurm_env)
    assert r.returncode == 2 and "--partition long is not described in conf/slurm.conf" in r.stderr
    conf = tmp_path / "site.conf"
    conf.write_text("command sbatch -A speech  # the account\noption partition=* -p $0\n"
                    "option mem=* --mem-per-cpu $0\ndefault partition=short\n")
    r = run([SLURM, "--config", str(conf), "--mem", "2G", "exp/log/c.log", "true"], tmp_path, env=slurm_env)
    assert r.returncode == 0, r.stderr
    assert sbatch_calls(tmp_path)[-1][:5] == ["-A", "speech", "-p", "short", "--mem-per-cpu"]
    r = run([SLURM, "--config", str(conf), "--gpu", "1", "exp/log/c.log", "true"], tmp_path, env=slurm_env)
    assert r.returncode == 2 and "--gpu 1 is not described" in r.stderr
    # without conf/slurm.conf the built-in default applies
    (tmp_path / "conf" / "slurm.conf").unlink()
    r = run([SLURM, "--gpu", "2", "exp/log/c.log", "true"], tmp_path, env=slurm_env)
    assert r.returncode == 0, r.stderr
    assert "--gres=gpu:2" in sbatch_calls(tmp_path)[-1]


def test_slurm_config_parsing_and_array_spec() -> None:
    cfg = SlurmConfig.parse(DEFAULT_SLURM_CONFIG, "<default>")
    assert cfg.command == ["sbatch", "--export=PATH", "--ntasks-per-node=1"]
    assert cfg.options({"mem": "0", "num_threads": "4"}) == ["--cpus-per-task", "4"]
    with pytest.raises(DataError, match=r"bad\.conf:2: expected"):
        SlurmConfig.parse("command sbatch\nbogus line\n", "bad.conf")
    assert array_spec([1, 2, 3, 4]) == "1-4"
    assert array_spec([2, 5], 3) == "2,5%3"
    assert array_spec([1, 2, 4, 6, 7, 8]) == "1-2,4,6-8"


def test_threads_per_job_share_the_cores(tmp_path: Path, root: Path) -> None:
    """Each local job gets OMP/MKL/OpenBLAS thread counts: --num-threads when given, otherwise the
    cores divided among the jobs running at once; a value the user exported wins."""
    runner = str(root / "utils" / "run.py")
    log = tmp_path / "t.JOB.log"
    cmd = [runner, "--max-jobs-run", "2", "JOB=1:2", str(log), "echo", "threads=$OMP_NUM_THREADS"]
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS",
                                                             "OPENBLAS_NUM_THREADS")}
    subprocess.run(cmd, check=True, env=env)
    assert f"threads={max(1, cpu_count() // 2)}" in (tmp_path / "t.1.log").read_text()
    subprocess.run([runner, "--num-threads", "3", *cmd[1:]], check=True, env=env)
    assert "threads=3" in (tmp_path / "t.2.log").read_text()
    subprocess.run(cmd, check=True, env=dict(env, OMP_NUM_THREADS="7"))
    assert "threads=7" in (tmp_path / "t.1.log").read_text()


def test_rerun_of_one_job_keeps_its_thread_count(tmp_path: Path, root: Path) -> None:
    """A float sum depends on how it is split between threads, so a job rerun alone (``--pick failed``)
    gets the threads it had among its siblings, not all the cores: a resumed stage reproduces an
    uninterrupted one."""
    if cpu_count() < 2:
        pytest.skip("needs 2 cores to tell 'shared' from 'all'")
    runner = str(root / "utils" / "run.py")
    log = tmp_path / "t.JOB.log"
    # job 2 fails until tmp_path/ok exists
    job = ["echo", "threads=$OMP_NUM_THREADS", ";", "test", "JOB", "=", "1", "-o", "-e", f"{tmp_path}/ok"]
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS",
                                                             "OPENBLAS_NUM_THREADS")}
    first = subprocess.run([runner, "--max-jobs-run", "2", "JOB=1:2", str(log), *job], env=env)
    assert first.returncode == 1
    shared = f"\nthreads={max(1, cpu_count() // 2)}\n"
    assert shared in (tmp_path / "t.2.log").read_text()
    (tmp_path / "ok").touch()
    subprocess.run([runner, "--max-jobs-run", "2", "--pick", "failed", "JOB=1:2", str(log), *job],
                   check=True, env=env)
    assert shared in (tmp_path / "t.2.log").read_text()
