"""utils/slurm.py against a real SLURM: a one-node cluster on localhost (slurmctld, slurmd and munged from
Debian's slurm-wlm and munge packages, each with its own key, socket, ports and state under a temporary
dir). Stage 1 and a few UBM iterations run through sbatch and give the local runner's outputs; a failing
task is reported with its log; SIGINT and timeout(1) cancel the array; a request no node can satisfy
(pending with PartitionConfig) fails instead of waiting; a time-limit kill is named; a job's threads
follow its allocation. The
daemons are stopped by PID at the end, also when a test fails. Without the packages the module skips
and says why (the other job tests use stand-ins and never touch a real SLURM)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import kaldiio
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SLURM = str(ROOT / "utils" / "slurm.py")
DAEMONS = ("slurmctld", "slurmd", "munged", "sbatch", "squeue", "scancel", "sinfo")

pytestmark = pytest.mark.skipif(
    any(shutil.which(d, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin") is None for d in DAEMONS),
    reason="real-SLURM tests need Debian's slurm-wlm and munge packages "
           "(apt-get install slurm-wlm munge, or utils/setup_env.sh sbatch munged)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _which(name: str) -> str:
    found = shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    assert found, name
    return found


class Cluster:
    """A running one-node SLURM; ``env`` points its clients (sbatch, squeue, ...) at it."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.procs: list[subprocess.Popen] = []
        self.env = dict(os.environ, SLURM_CONF=str(base / "slurm.conf"))

    def start(self) -> None:
        b = self.base
        (b / "state").mkdir()
        (b / "spool").mkdir()
        key = b / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        user = subprocess.run(["id", "-un"], capture_output=True, text=True, check=True).stdout.strip()
        cpus = 2
        (b / "slurm.conf").write_text(f"""\
ClusterName=sslsvtest
SlurmctldHost=localhost
SlurmUser={user}
SlurmdUser={user}
AuthType=auth/munge
AuthInfo=socket={b}/munge.sock
CredType=cred/munge
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
StateSaveLocation={b}/state
SlurmdSpoolDir={b}/spool
SlurmctldPidFile={b}/slurmctld.pid
SlurmdPidFile={b}/slurmd.pid
SlurmctldLogFile={b}/slurmctld.log
SlurmdLogFile={b}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=100
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
SwitchType=switch/none
PlugStackConfig=/dev/null
NodeName=localhost CPUs={cpus} RealMemory=2000 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
""")
        self._spawn([_which("munged"), "-F", "-f", f"--socket={b}/munge.sock", f"--key-file={key}",
                     f"--log-file={b}/munged.log", f"--pid-file={b}/munged.pid",
                     f"--seed-file={b}/munged.seed"], "munged.out")
        self._wait(lambda: (b / "munge.sock").exists(), "munged")
        self._spawn([_which("slurmctld"), "-D", "-f", str(b / "slurm.conf")], "slurmctld.out")
        self._spawn([_which("slurmd"), "-D", "-N", "localhost", "-f", str(b / "slurm.conf")], "slurmd.out")
        self._wait(self._idle, "slurmctld and slurmd (node idle)")

    def _spawn(self, cmd: list[str], out: str) -> None:
        with open(self.base / out, "w") as f:
            self.procs.append(subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT,
                                               stdin=subprocess.DEVNULL, start_new_session=True))

    def _idle(self) -> bool:
        r = subprocess.run(["sinfo", "-h", "-o", "%T"], env=self.env, capture_output=True, text=True)
        return r.returncode == 0 and r.stdout.strip() == "idle"

    def _wait(self, ready, what: str, timeout: float = 60) -> None:
        deadline = time.time() + timeout
        while not ready():
            dead = [p for p in self.procs if p.poll() is not None]
            if dead or time.time() > deadline:
                files = sorted(self.base.glob("*.out")) + sorted(self.base.glob("*.log"))
                logs = "\n".join(f"--- {f.name}\n" + f.read_text()[-1500:] for f in files)
                raise RuntimeError(f"{what} did not come up:\n{logs}")
            time.sleep(0.2)

    def jobs(self) -> list[str]:
        r = subprocess.run(["squeue", "-h", "-o", "%i|%T|%r"], env=self.env, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        return r.stdout.split()

    def stop(self) -> None:
        """Stop the daemons by PID (TERM, then KILL), newest first."""
        for p in reversed(self.procs):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in reversed(self.procs):
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("slurm"))
    try:
        c.start()
        yield c
    finally:
        c.stop()


def slurm(cluster: Cluster, cwd: Path, *args: str, timeout: float = 300, **env: str
          ) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, SLURM, *args], cwd=cwd, env=dict(cluster.env, **env),
                          capture_output=True, text=True, timeout=timeout)


def _until(cond, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while not cond():
        assert time.time() < deadline
        time.sleep(0.2)


def test_stage1_and_ubm_through_sbatch_equal_the_local_runner(cluster: Cluster, tmp_path: Path,
                                                             root: Path, recipe_env: dict[str, str],
                                                             speech_audio) -> None:
    from sslsv.corpora.common import write_data_dir
    from test_ubm_steps import CONFIG

    utts = list(speech_audio.utt2spk)[:12]
    cfg = tmp_path / "ivector.yaml"
    cfg.write_text(CONFIG)
    outs = {}
    for runner in ("run.py", "slurm.py"):
        d = tmp_path / runner
        write_data_dir(d / "data", {u: str(speech_audio.files[u]) for u in utts},
                       {u: speech_audio.utt2spk[u] for u in utts})
        env = dict(recipe_env, SLURM_CONF=cluster.env["SLURM_CONF"])
        jobs = ["--nj", "2", "--cmd", runner]
        for step in (["steps/make_mfcc.sh", *jobs, d / "data", d / "log", d / "mfcc"],
                     ["steps/compute_vad.sh", *jobs, d / "data", d / "log", d / "mfcc"],
                     ["steps/train_diag_ubm.sh", *jobs, "--device", "cpu", "--config", cfg, d / "data",
                      d / "diag"]):
            r = subprocess.run(list(map(str, step)), cwd=root, env=env, capture_output=True, text=True,
                               timeout=600)
            assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
        outs[runner] = d
        if runner == "slurm.py":
            assert list((d / "log").rglob("q/*.out")), "nothing went through sbatch"
    a, b = outs["run.py"], outs["slurm.py"]
    for table in ("feats.scp", "vad.scp"):
        fa = dict(kaldiio.load_scp(str(a / "data" / table)))
        fb = dict(kaldiio.load_scp(str(b / "data" / table)))
        assert sorted(fa) == sorted(fb) == sorted(utts)
        for u in utts:
            np.testing.assert_array_equal(fa[u], fb[u])
    assert (a / "diag/final.dubm").read_bytes() == (b / "diag/final.dubm").read_bytes()
    assert cluster.jobs() == []


def test_failing_task_is_reported_with_its_log(cluster: Cluster, tmp_path: Path) -> None:
    r = slurm(cluster, tmp_path, "JOB=1:3", "log/f.JOB.log", "test", "JOB", "!=", "2")
    assert r.returncode == 1
    assert "slurm.py: 1 / 3 failed, log is in log/f.*.log (first failed: log/f.2.log)" in r.stderr, r.stderr
    assert (tmp_path / "log/f.2.log").read_text().splitlines()[-1].startswith("# Ended (code 1) at ")
    assert (tmp_path / "log/f.3.log").read_text().splitlines()[-1].startswith("# Ended (code 0) at ")


@pytest.mark.parametrize("how", ["SIGINT", "timeout"])
def test_interrupt_cancels_the_array(cluster: Cluster, tmp_path: Path, how: str) -> None:
    cmd = [sys.executable, SLURM, "JOB=1:2", "log/s.JOB.log", "sleep", "120"]
    if how == "timeout":
        cmd = ["timeout", "8", *cmd]
    p = subprocess.Popen(cmd, cwd=tmp_path, env=cluster.env, stderr=subprocess.PIPE, text=True)
    _until(lambda: any("RUNNING" in j for j in cluster.jobs()))
    if how == "SIGINT":
        p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == (128 + signal.SIGINT if how == "SIGINT" else 124), err
    assert "received: cancelled job" in err
    _until(lambda: cluster.jobs() == [], timeout=30)


def test_a_request_no_node_can_satisfy_fails(cluster: Cluster, tmp_path: Path) -> None:
    """4 CPUs per task on a 2-CPU node: SLURM keeps the job pending (PartitionConfig) for ever."""
    t0 = time.time()
    r = slurm(cluster, tmp_path, "--num-threads", "4", "JOB=1:2", "log/p.JOB.log", "true",
              timeout=120, SSLSV_SQUEUE_POLL="1")
    assert r.returncode == 1 and time.time() - t0 < 60
    assert "can never start (pending, reason PartitionConfig" in r.stderr, r.stderr
    _until(lambda: cluster.jobs() == [], timeout=30)


def test_threads_follow_the_allocation(cluster: Cluster, tmp_path: Path) -> None:
    """A task given one CPU runs its job with one thread, although the node (and the affinity, with
    TaskPlugin=task/none) has two."""
    env = {k: v for k, v in cluster.env.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS",
                                                             "OPENBLAS_NUM_THREADS")}
    r = subprocess.run([sys.executable, SLURM, "log/t.log", "echo", "threads=$OMP_NUM_THREADS"], cwd=tmp_path,
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "threads=1" in (tmp_path / "log/t.log").read_text().splitlines()


def test_a_time_limit_kill_is_named(cluster: Cluster, tmp_path: Path) -> None:
    """--time 1 (a minute) on a task that sleeps longer: SLURM kills it; slurm.py says so with the task's
    id (the reason from the line slurmstepd writes into the task's .out file)."""
    r = slurm(cluster, tmp_path, "--time", "1", "JOB=1:1", "log/t.JOB.log", "sleep", "600", timeout=300)
    assert r.returncode == 1
    assert "(log/t.1.log) was killed by SLURM at its time limit (--time); see log/q/t-1.out" in r.stderr, \
        r.stderr + (tmp_path / "log/q/t-1.out").read_text()
    _until(lambda: cluster.jobs() == [], timeout=30)
