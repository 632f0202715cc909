"""The job runner behind ``$train_cmd`` / ``$cuda_cmd``, with the calling convention of Kaldi's
``run.pl`` / ``slurm.pl``::

    <runner> [--num-threads N] [--mem X] [--gpu N] [--max-jobs-run K] [--time T] [--pick failed]
             [JOB=a:b] <log> <command...>

``JOB`` (any variable name) is replaced by the job index in the log path and in the command, the
command words are joined as run.pl joins them and run with ``bash -o pipefail -c``. Each job writes
one log file in run.pl's format (``# <command>``, ``# Started at``, output, ``# Accounting:`` and
``# Ended (code N)`` footers), so Kaldi users' greps and ``--pick failed`` reruns work.

Two back-ends share the parsing, JOB expansion, command joining and log writing/checking written here:
:func:`run_local` (parallel processes on this machine, ``utils/run.py``) and :func:`run_slurm` (one
``sbatch --array ... --wait`` per call, ``utils/slurm.py``), whose batch script runs each task through
the local runner so that the logs are identical. Standard library only: the runner must start even
where the project's virtualenv is not active (a compute node, a bare shell).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import queue
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .tables import DataError, atomic_path

USAGE = """\
usage: {prog} [options] [JOB=a:b] <log> <command...>
  e.g. {prog} --max-jobs-run 4 JOB=1:8 exp/x/log/mfcc.JOB.log compute.py data/split8/JOB \\| gzip -c
options:
  --num-threads N     threads per job ({threads})
  --mem X             memory per job, e.g. 4G ({mem})
  --gpu N             GPUs per job ({gpu})
  --time T            time limit per job ({time})
  --max-jobs-run K    run at most K jobs at once (alias -tc K){maxjobs}
  --pick all|failed|incomplete
                      rerun only the jobs whose log does not end with '# Ended (code 0)'{extra}
Option values may be given as '--opt V' or '--opt=V'; '_' and '-' are interchangeable in names.
The JOB variable (any name) is replaced by the job index in <log> and in the command. Command words are
joined with spaces (a word with whitespace is quoted as one word; escape a pipe or ';' in the calling
shell: \\| \\;) and run by 'bash -o pipefail -c'."""

# Options every back-end understands; values are validated by _OPTION_TYPES.
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
BUILTIN_OPTIONS = ("num_threads", "mem", "gpu", "max_jobs_run", "time", "pick")
PICKS = ("all", "failed", "incomplete")
_RANGE_RE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(\d+)(?::(\d+))?$")
_ENDED_OK_RE = re.compile(r"^# Ended \(code 0\)")


class UsageError(Exception):
    """A bad command line for a runner; the message says what is wrong."""


@dataclass
class JobSpec:
    """One runner call: the options, the job range and the command, before any expansion."""

    log: str
    words: list[str]
    var: str | None = None
    start: int = 1
    end: int = 1
    num_threads: int = 1
    mem: str | None = None
    gpu: int = 0
    max_jobs_run: int | None = None
    time: str | None = None
    pick: str = "all"
    config: str | None = None
    # Options given on the command line, as text, in order (what the SLURM config maps).
    given: dict[str, str] = field(default_factory=dict)

    def indices(self) -> list[int]:
        """The job indices of the range (``[1]`` for a call without ``JOB=``)."""
        return list(range(self.start, self.end + 1))

    def command(self) -> str:
        """The command words joined as run.pl joins them (JOB not yet replaced)."""
        return join_words(self.words)

    def command_for(self, index: int) -> str:
        """The shell command of job ``index``."""
        return substitute(self.command(), self.var, index)

    def log_for(self, index: int) -> str:
        """The log path of job ``index``."""
        return substitute(self.log, self.var, index)

    def log_glob(self) -> str:
        """The log path with the JOB variable shown as ``*`` (for messages)."""
        return self.log.replace(self.var, "*") if self.var else self.log


def join_words(words: list[str]) -> str:
    """Join command words as run.pl does: a word without whitespace verbatim (so an escaped ``\\|``
    becomes a real pipe, ``>`` a redirection), any other word quoted so that it stays one word."""
    return " ".join(w if w and not any(c.isspace() for c in w) else shlex.quote(w) for w in words)


def substitute(text: str, var: str | None, index: int) -> str:
    """Replace every occurrence of the job variable in ``text`` by ``index`` (as run.pl does)."""
    return text.replace(var, str(index)) if var else text


def _int_option(name: str, value: str, minimum: int) -> int:
    try:
        n = int(value)
    except ValueError:
        raise UsageError(f"option --{name.replace('_', '-')} expects an integer, got {value!r}") from None
    if n < minimum:
        raise UsageError(f"option --{name.replace('_', '-')} must be >= {minimum}, got {n}")
    return n


def parse_args(argv: list[str], extra_options: bool = False, config_option: bool = False) -> JobSpec:
    """Parse a runner command line (Kaldi's convention; options and ``JOB=a:b`` may be interleaved
    before the log). Options outside :data:`BUILTIN_OPTIONS` are an error unless ``extra_options``
    (the SLURM back-end accepts any option its config describes); ``--config F`` only if
    ``config_option``. Raises :class:`UsageError`."""
    args = list(argv)
    given: dict[str, str] = {}
    var: str | None = None
    start = end = 1
    while args:
        a = args[0]
        if a == "-tc" or (a.startswith("--") and len(a) > 2):
            args.pop(0)
            if a == "-tc":
                name, value = "max_jobs_run", None
            else:
                name, eq, value = a[2:].partition("=")
                name = name.replace("-", "_")
                if not eq:
                    value = None
            known = name in BUILTIN_OPTIONS or (name == "config" and config_option)
            if not known and not extra_options:
                raise UsageError(f"unknown option {a.partition('=')[0]}")
            if value is None:
                if not args:
                    raise UsageError(f"option {a} needs a value")
                value = args.pop(0)
            given[name] = value
            continue
        m = _RANGE_RE.match(a)
        if m and var is None:
            args.pop(0)
            var, start = m.group(1), int(m.group(2))
            end = int(m.group(3)) if m.group(3) is not None else start
            if end < start:
                raise UsageError(f"invalid job range {a}: end before start")
            continue
        if a.startswith("-") and a != "-":
            raise UsageError(f"unknown option {a}")
        break
    if len(args) < 2:
        raise UsageError("expected <log> <command...>" if not args
                         else f"no command to run after log {args[0]}")
    log, words = args[0], args[1:]
    if var is not None and end > start and var not in log:
        raise UsageError(f"{end - start + 1} jobs ({var}={start}:{end}) but the log {log} does not contain "
                         f"{var}: every job would write the same log")
    spec = JobSpec(log=log, words=words, var=var, start=start, end=end, given=given)
    if "num_threads" in given:
        spec.num_threads = _int_option("num_threads", given["num_threads"], 1)
    if "gpu" in given:
        spec.gpu = _int_option("gpu", given["gpu"], 0)
    if "max_jobs_run" in given:
        spec.max_jobs_run = _int_option("max_jobs_run", given["max_jobs_run"], 1)
    spec.mem = given.get("mem")
    spec.time = given.get("time")
    spec.config = given.get("config")
    if "pick" in given:
        if given["pick"] not in PICKS:
            raise UsageError(f"option --pick expects one of {'|'.join(PICKS)}, got {given['pick']!r}")
        spec.pick = given["pick"]
    return spec


# ---------------------------------------------------------------------------------------------------
# Logs


def log_date(t: float | None = None) -> str:
    """The date as ``date`` prints it in the C locale (what run.pl puts in its logs)."""
    return time.strftime("%a %b %e %H:%M:%S %Z %Y", time.localtime(t))


def log_header(command: str) -> str:
    """The first lines of a job log: the command and the start date."""
    return f"# {command}\n# Started at {log_date()}\n#\n"


def ended_text(returncode: int) -> str:
    """The ``code ...`` part of the Ended footer; a job killed by a signal says which."""
    if returncode < 0:
        sig = -returncode
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = "unknown signal"
        return f"code {128 + sig}; signal {sig} {name}"
    return f"code {returncode}"


def log_footer(returncode: int, start: float, end: float, num_threads: int | str) -> str:
    """run.pl's two footer lines (whole seconds, as run.pl measures with ``date +%s``)."""
    secs = int(end) - int(start)
    return (f"# Accounting: time={secs} threads={num_threads}\n"
            f"# Ended ({ended_text(returncode)}) at {log_date(end)}, elapsed time {secs} seconds\n")


def log_succeeded(path: str | os.PathLike) -> bool:
    """Whether the log exists and its last line is ``# Ended (code 0) ...`` (what --pick checks)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 4096))
            tail = f.read().decode("utf-8", errors="replace")
    except OSError:
        return False
    lines = tail.rstrip("\n").split("\n")
    return bool(lines) and bool(_ENDED_OK_RE.match(lines[-1]))


def picked_indices(spec: JobSpec) -> list[int]:
    """The job indices to run: all, or with ``--pick failed|incomplete`` those whose log does not end
    with ``# Ended (code 0)`` (missing, unfinished or failed)."""
    if spec.pick == "all":
        return spec.indices()
    return [i for i in spec.indices() if not log_succeeded(spec.log_for(i))]


def failure_message(prog: str, spec: JobSpec, failed: list[int], total: int) -> str:
    """``<prog>: F / N failed, log is in <glob>`` naming the first failed log (run.pl's message)."""
    if spec.var is None:
        return f"{prog}: job failed, log is in {spec.log}"
    first = spec.log_for(failed[0])
    return f"{prog}: {len(failed)} / {total} failed, log is in {spec.log_glob()} (first failed: {first})"


# ---------------------------------------------------------------------------------------------------
# Local back-end


def gpu_devices() -> list[str]:
    """The GPUs jobs may use: ``$CUDA_VISIBLE_DEVICES`` if set, else the indices ``nvidia-smi -L``
    lists, else none."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [d.strip() for d in visible.split(",") if d.strip() and d.strip() != "-1"]
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [m.group(1) for m in re.finditer(r"^GPU (\d+):", out, re.M)]


def cpu_count() -> int:
    """The cores this process may run on: inside a SLURM job the allocation (``SLURM_CPUS_PER_TASK``, else
    ``SLURM_CPUS_ON_NODE``), which the CPU affinity does not show when the cluster does not bind tasks
    to cores (``TaskPlugin=task/none``); elsewhere the affinity."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:
        n = os.cpu_count() or 1
    if os.environ.get("SLURM_JOB_ID"):
        for var in ("SLURM_CPUS_PER_TASK", "SLURM_CPUS_ON_NODE"):
            v = os.environ.get(var, "")
            if v.isdigit() and int(v) > 0:
                return min(n, int(v))
    return n


@dataclass
class _Running:
    proc: subprocess.Popen
    devices: list[str]
    thread: threading.Thread


class _Stop(Exception):
    pass


# Each local job runs under this guard (bash -c GUARD job <runner-pid> <command>), the leader of the
# job's own process group: it runs the command and, once a second, checks that the runner is alive; when
# the runner is gone (kill -9 of run.sh's process group, which the job's own group escapes), it stops the
# job's whole group, so no job outlives its pipeline by more than about a second. A command killed by a
# signal is re-raised on the guard, so the log footer names the signal as before; on SIGTERM the guard
# waits for (and so reaps) the job's processes before it dies.
GUARD = r"""runner=$1
trap 'wait; trap - TERM; kill -TERM $$' TERM   # reap the job's processes before dying (no zombies)
bash -o pipefail -c "$2" &
job=$!
while kill -0 "$job" 2>/dev/null; do
  if ! kill -0 "$runner" 2>/dev/null; then
    echo "# $0: the runner (pid $runner) is gone: stopping this job"
    kill -TERM 0
  fi
  sleep 1 & wait $! 2>/dev/null
done
wait "$job"; rc=$?
if [ "$rc" -gt 128 ] && [ "$rc" -lt 160 ]; then trap - $((rc - 128)); kill -$((rc - 128)) $$; fi
exit "$rc"
"""
# How long a job waits for its log to be released by a live job of an earlier run (its guard stops it
# within about a second of that run's death) before failing.
LOG_LOCK_WAIT = 15.0


def _lock_log(log: str, prog: str) -> int:
    """Open ``log`` for a new job and take an exclusive lock on it, held by the job (the log is its
    stdout) for as long as any of its processes runs: a rerun never writes the outputs of a job that
    is still alive. Returns the file descriptor, truncated."""
    fd = os.open(log, os.O_WRONLY | os.O_CREAT, 0o666)
    deadline = time.time() + LOG_LOCK_WAIT
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.time() > deadline:
                os.close(fd)
                raise OSError(f"{log} is still written by a live job of an earlier run (waited "
                              f"{LOG_LOCK_WAIT:g} s); stop it first (e.g. fuser -k {log})") from None
            time.sleep(0.2)
    os.ftruncate(fd, 0)
    return fd


def _nothing_to_rerun(spec: JobSpec, prog: str) -> int:
    print(f"{prog}: all {len(spec.indices())} jobs of {spec.log_glob()} already succeeded, nothing to rerun "
          f"(--pick {spec.pick})", file=sys.stderr)
    return 0


def run_local(spec: JobSpec, prog: str = "run.py") -> int:
    """Run the jobs as local processes, at most ``--max-jobs-run`` at once (default: the cores, or
    with ``--gpu`` the GPUs / GPUs per job), each in its own process group. Returns the exit status:
    0, 1 if any job failed (after all finished), 128+signal if interrupted by SIGINT/SIGTERM/SIGHUP
    (running jobs are terminated, their logs say so)."""
    todo = picked_indices(spec)
    if not todo:
        return _nothing_to_rerun(spec, prog)
    devices = gpu_devices() if spec.gpu > 0 else []
    assign_gpus = spec.gpu > 0 and len(devices) >= spec.gpu
    if spec.max_jobs_run is not None:
        limit = spec.max_jobs_run
    elif spec.gpu > 0:
        limit = max(1, len(devices) // spec.gpu) if assign_gpus else 1
    else:
        limit = cpu_count()
    load = dict.fromkeys(devices, 0)
    # Threads per job for OpenMP/BLAS (torch, numpy): --num-threads when given, otherwise the cores
    # shared among the jobs that run at once, so parallel jobs do not oversubscribe the CPU. Counted over
    # all the jobs of the array, not the ones left to rerun: a float sum depends on how it is split
    # between threads, so a rerun of one job must get the threads the first run gave it
    # (docs/shared_server.md, "Reproducibility").
    concurrent = max(1, min(limit, len(spec.indices())))
    threads = spec.num_threads if spec.num_threads > 1 else max(1, cpu_count() // concurrent)
    job_threads = os.environ.get("OMP_NUM_THREADS", str(threads))  # what the log's footer reports

    done: queue.Queue[tuple[int, int]] = queue.Queue()
    running: dict[int, _Running] = {}
    results: dict[int, int] = {}
    pending = deque(todo)
    stop: list[int] = []
    terminated_by = ""

    def waiter(index: int, proc: subprocess.Popen, log: str, started: float) -> None:
        rc = proc.wait()
        ended = time.time()
        try:
            with open(log, "a", encoding="utf-8") as f:
                if terminated_by:
                    f.write(f"# Terminated by {prog} ({terminated_by} received)\n")
                f.write(log_footer(rc, started, ended, job_threads))
        finally:
            done.put((index, rc))

    def start(index: int) -> None:
        log = spec.log_for(index)
        command = spec.command_for(index)
        Path(log).parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        for var in THREAD_VARS:  # a user's own setting wins
            env.setdefault(var, str(threads))
        chosen: list[str] = []
        if assign_gpus:
            chosen = sorted(devices, key=lambda d: (load[d], devices.index(d)))[:spec.gpu]
            for d in chosen:
                load[d] += 1
            env["CUDA_VISIBLE_DEVICES"] = ",".join(chosen)
        with open(_lock_log(log, prog), "w", encoding="utf-8") as f:
            f.write(log_header(command))
            f.flush()
            started = time.time()
            proc = subprocess.Popen(["bash", "-c", GUARD, prog, str(os.getpid()), command],
                                    stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT, env=env,
                                    start_new_session=True)
        t = threading.Thread(target=waiter, args=(index, proc, log, started), daemon=True)
        running[index] = _Running(proc, chosen, t)
        t.start()

    def finish(index: int, rc: int) -> None:
        job = running.pop(index)
        job.thread.join()
        for d in job.devices:
            load[d] -= 1
        results[index] = rc

    def on_signal(signum: int, _frame: object) -> None:
        stop.append(signum)

    handled = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {s: signal.signal(s, on_signal) for s in handled}
    try:
        while (pending or running) and not stop:
            while pending and len(running) < limit and not stop:
                index = pending.popleft()
                try:
                    start(index)
                except OSError as e:  # e.g. an unwritable log directory: the job fails, the others go on
                    print(f"{prog}: cannot start job {index}: {e}", file=sys.stderr)
                    results[index] = 1
            with contextlib.suppress(queue.Empty):
                finish(*done.get(timeout=0.2))
        if stop:
            terminated_by = signal.Signals(stop[0]).name
            _terminate(running, done, finish)
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    if stop:
        print(f"{prog}: {terminated_by} received: terminated the running jobs, {len(pending)} not started; "
              f"logs are in {spec.log_glob()}", file=sys.stderr)
        return 128 + stop[0]
    failed = sorted(i for i, rc in results.items() if rc != 0)
    if failed:
        print(failure_message(prog, spec, failed, len(todo)), file=sys.stderr)
        return 1
    return 0


def _terminate(running: dict[int, _Running], done: queue.Queue, finish, grace: float = 5.0) -> None:
    """SIGTERM every running job's process group, SIGKILL what is left after ``grace`` seconds."""
    for job in running.values():
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(job.proc.pid, signal.SIGTERM)
    deadline = time.time() + grace
    while running:
        try:
            finish(*done.get(timeout=max(0.01, deadline - time.time())))
        except queue.Empty:
            for job in running.values():
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(job.proc.pid, signal.SIGKILL)
            deadline = time.time() + 60.0


# ---------------------------------------------------------------------------------------------------
# SLURM back-end

DEFAULT_CONFIG_PATH = "conf/slurm.conf"
DEFAULT_SLURM_CONFIG = """\
command sbatch --export=PATH --ntasks-per-node=1
option mem=* --mem $0
option mem=0
option num_threads=* --cpus-per-task $0
option gpu=* --gres=gpu:$0
option gpu=0
option time=* --time $0
default gpu=0
"""


@dataclass
class SlurmConfig:
    """A Kaldi ``conf/slurm.conf``: the submit command, and how each generic option maps to sbatch
    arguments (``option name=* ... $0 ...`` for any value, ``option name=value ...`` for one value,
    possibly to nothing; ``default name=value`` when the option is not given)."""

    source: str
    command: list[str]
    star: dict[str, list[str]] = field(default_factory=dict)
    exact: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    defaults: dict[str, str] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)

    @classmethod
    def parse(cls, text: str, source: str) -> SlurmConfig:
        """Parse the config text; errors name ``source:line``."""
        cfg = cls(source=source, command=[])
        for lineno, line in enumerate(text.splitlines(), 1):
            try:
                words = shlex.split(line, comments=True)
            except ValueError as e:
                raise DataError(f"{source}:{lineno}: {e}: {line!r}") from None
            if not words:
                continue
            kind = words[0]
            if kind == "command":
                if len(words) < 2:
                    raise DataError(f"{source}:{lineno}: 'command' needs the submit program")
                cfg.command = words[1:]
                continue
            if kind not in ("option", "default") or len(words) < 2 or "=" not in words[1]:
                raise DataError(f"{source}:{lineno}: expected 'command ...', 'option name=value ...' or "
                                f"'default name=value', got {line.strip()!r}")
            name, _, value = words[1].partition("=")
            name = name.replace("-", "_")
            if not name or not value:
                raise DataError(f"{source}:{lineno}: empty option name or value in {words[1]!r}")
            if name not in cfg.order:
                cfg.order.append(name)
            if kind == "default":
                if len(words) > 2:
                    raise DataError(f"{source}:{lineno}: 'default {words[1]}' takes nothing after it")
                cfg.defaults[name] = value
            elif value == "*":
                cfg.star[name] = words[2:]
            else:
                cfg.exact[(name, value)] = words[2:]
        if not cfg.command:
            raise DataError(f"{source}: no 'command' line (e.g. 'command sbatch --export=PATH')")
        return cfg

    @classmethod
    def load(cls, path: str | None) -> SlurmConfig:
        """Read ``path`` (explicit: must exist), else ``conf/slurm.conf`` of the recipe root (the current
        directory, as in Kaldi), else use the built-in default."""
        if path is None and not os.path.isfile(DEFAULT_CONFIG_PATH):
            return cls.parse(DEFAULT_SLURM_CONFIG, "<built-in slurm config>")
        path = path or DEFAULT_CONFIG_PATH
        if not os.path.isfile(path):
            raise DataError(f"{path}: no such config file")
        return cls.parse(Path(path).read_text(encoding="utf-8"), path)

    def options(self, given: dict[str, str]) -> list[str]:
        """The sbatch arguments for the generic options ``given`` (plus the config's defaults), in the
        config's order. An option the config does not describe, or a value it does not allow, is an
        error (as in Kaldi's queue.pl)."""
        values = dict(self.defaults)
        values.update({k: v for k, v in given.items() if k not in ("max_jobs_run", "pick", "config")})
        for name in values:
            if name not in self.order:
                raise UsageError(f"option --{name.replace('_', '-')} {values[name]} is not described in "
                                 f"{self.source} (add an 'option {name}=* ...' line)")
        out: list[str] = []
        for name in self.order:
            if name not in values:
                continue
            value = values[name]
            if (name, value) in self.exact:
                out += self.exact[(name, value)]
            elif name in self.star:
                out += [w.replace("$0", value) for w in self.star[name]]
            else:
                raise UsageError(f"option --{name.replace('_', '-')} {value}: value not allowed by "
                                 f"{self.source}")
        return out


def array_spec(indices: list[int], max_jobs_run: int | None = None) -> str:
    """sbatch's ``--array`` value: consecutive runs as ``a-b``, others comma-separated, ``%K`` limit."""
    parts: list[str] = []
    i = 0
    while i < len(indices):
        j = i
        while j + 1 < len(indices) and indices[j + 1] == indices[j] + 1:
            j += 1
        parts.append(str(indices[i]) if i == j else f"{indices[i]}-{indices[j]}")
        i = j + 1
    return ",".join(parts) + (f"%{max_jobs_run}" if max_jobs_run else "")


def queue_paths(spec: JobSpec) -> tuple[Path, str]:
    """The ``<logdir>/q`` directory and the job name (the log's name without JOB and ``.log``)."""
    log = Path(spec.log_for(spec.start))
    name = Path(spec.log).name
    if spec.var:
        name = re.sub(r"[._-]?" + re.escape(spec.var), "", name)
    name = re.sub(r"\.log$", "", name) or "job"
    return log.parent / "q", name


def batch_script(spec: JobSpec, runner: str, array: bool) -> str:
    """The batch script: in the submit directory, with ``./path.sh`` sourced if there is one, run the
    task ``$SLURM_ARRAY_TASK_ID`` through the local runner, which writes the log."""
    args = [sys.executable, runner]
    if spec.num_threads != 1:
        args += ["--num-threads", str(spec.num_threads)]
    head = " ".join(shlex.quote(a) for a in args)
    job = f"{spec.var}=${{SLURM_ARRAY_TASK_ID}} " if spec.var and array else ""
    rest = " ".join(shlex.quote(a) for a in [spec.log, *spec.words])
    return (f"#!/usr/bin/env bash\n"
            f"# Written by utils/slurm.py; runs one task of: {rest.replace(chr(10), ' ')}\n"
            f"cd {shlex.quote(os.getcwd())} || exit 1\n"
            f"if [ -f ./path.sh ]; then . ./path.sh; fi\n"
            f"echo \"# Running on $(hostname): job ${{SLURM_JOB_ID:-}}"
            f" (${{SLURM_ARRAY_JOB_ID:-${{SLURM_JOB_ID:-}}}}_${{SLURM_ARRAY_TASK_ID:-}})\"\n"
            f"exec {head} {job}{rest}\n")


# Pending reasons (squeue %r) that no amount of waiting clears: the request exceeds what the partition,
# its nodes or the account's QOS allow. A job pending for one of these is cancelled and reported.
HOPELESS_REASONS = ("PartitionConfig", "PartitionNodeLimit", "PartitionTimeLimit", "BadConstraints",
                    "InvalidQOS", "InvalidAccount", "QOSMaxCpuPerJobLimit", "QOSMaxGRESPerJob",
                    "QOSMaxMemoryPerJob", "QOSMaxWallDurationPerJobLimit", "QOSMaxNodePerJobLimit",
                    "DependencyNeverSatisfied")
SQUEUE_POLL = 10.0     # seconds between squeue looks at a running array (SSLSV_SQUEUE_POLL overrides)
# What slurmstepd writes into a task's output when it stops the task, and what it means.
_STEPD_KILLS = (("DUE TO TIME LIMIT", "killed by SLURM at its time limit (--time)"),
                ("DUE TO PREEMPTION", "preempted by SLURM"),
                ("Exceeded job memory limit", "killed by SLURM for exceeding its memory (--mem)"),
                ("oom-kill", "killed by the out-of-memory killer (--mem)"),
                ("CANCELLED AT", "cancelled (scancel)"))


def export_option(command: list[str], env: Mapping[str, str] | None = None) -> list[str]:
    """``command`` with the variables the recipe needs added to a restrictive ``--export=`` list (such
    as Kaldi's ``--export=PATH``): every ``SSLSV_*`` variable and the thread settings that are set. The
    batch script sources path.sh itself, so the environment (venv, PYTHONPATH) is rebuilt on the node."""
    env = os.environ if env is None else env
    names = sorted(k for k in env if k.startswith("SSLSV_")) + [k for k in THREAD_VARS if k in env]
    out = []
    for w in command:
        if w.startswith("--export=") and names:
            have = w.split("=", 1)[1].split(",")
            if not {"ALL", "NONE"} & set(have):
                w = "--export=" + ",".join(have + [n for n in names if n not in have])
        out.append(w)
    return out


def _squeue(args: list[str]) -> list[list[str]] | None:
    """``squeue --noheader`` rows split at ``|``; None when squeue cannot be run or fails."""
    try:
        r = subprocess.run(["squeue", "--noheader", *args], capture_output=True, text=True, timeout=60,
                           stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if r.returncode != 0:
        return None
    return [line.strip().split("|") for line in r.stdout.splitlines() if line.strip()]


def live_jobs(name: str, script: Path) -> list[tuple[str, str]]:
    """``(job id, state)`` of the live jobs (pending or running) of this user that run ``script``
    under job name ``name``: an earlier run's array whose runner died (kill -9) and which would write the
    same logs and outputs."""
    user = os.environ.get("USER") or os.environ.get("LOGNAME") or ""
    rows = _squeue([f"--name={name}", *([f"--user={user}"] if user else []), "--format=%i|%T|%o"]) or []
    return [(r[0], r[1]) for r in rows if len(r) >= 3 and Path(r[2]) == script]


def _task_kill_reason(out: Path) -> str | None:
    """Why SLURM stopped a task, from the ``*** ... ***`` lines slurmstepd writes into its output."""
    try:
        text = out.read_text(errors="replace")
    except OSError:
        return None
    for marker, why in _STEPD_KILLS:
        if marker in text:
            return why
    return None


def run_slurm(spec: JobSpec, prog: str = "slurm.py", runner: str | None = None,
              settle: float = 10.0) -> int:
    """Submit the jobs as one SLURM array job (``sbatch --array=... --wait --parsable``), wait, and
    check every task's log. Returns 0, or 1 if sbatch failed, the job could never start, or any task's
    log lacks ``# Ended (code 0)``; 128+signal if interrupted (the job is cancelled with scancel).

    Before submitting, a live array of an earlier run for the same batch script is an error (its
    runner was killed; it still writes these outputs). While waiting, squeue is asked every
    ``SQUEUE_POLL`` seconds whether the tasks are pending for a reason that never clears
    (``HOPELESS_REASONS``); such a job is cancelled. SIGINT / SIGTERM / SIGHUP only set a flag (a second
    one changes nothing); the main loop then cancels the job and waits for sbatch to return."""
    cfg = SlurmConfig.load(spec.config)
    mapped = cfg.options(spec.given)
    todo = picked_indices(spec)
    if not todo:
        return _nothing_to_rerun(spec, prog)
    runner = runner or str(Path(__file__).resolve().parents[2] / "utils" / "run.py")
    array = spec.var is not None
    qdir, name = queue_paths(spec)
    qdir.mkdir(parents=True, exist_ok=True)
    script = (qdir / f"{name}.sh").resolve()
    live = live_jobs(name, script)
    if live:
        ids = " ".join(j for j, _ in live)
        print(f"{prog}: job {live[0][0]} ({live[0][1]}) of an earlier run still runs {script}, which writes "
              f"{spec.log_glob()}; wait for it to end or cancel it (scancel {ids}), then rerun",
              file=sys.stderr)
        return 1
    with atomic_path(script) as tmp:
        tmp.write_text(batch_script(spec, runner, array), encoding="utf-8")
        tmp.chmod(0o755)
    for i in todo:  # a stale log from an earlier run must not pass for this run's result
        with contextlib.suppress(FileNotFoundError):
            os.unlink(spec.log_for(i))
    cmd = [*export_option(cfg.command), *mapped, f"--job-name={name}"]
    if array:
        cmd += [f"--array={array_spec(todo, spec.max_jobs_run)}"]
        out = qdir / f"{name}-%a.out"
    else:
        out = qdir / f"{name}.out"
    cmd += ["--wait", "--parsable", "-o", str(out), str(script)]

    job_id: list[str] = []
    stop: list[int] = []

    def read_id(stream) -> None:
        for line in stream:
            if line.strip() and not job_id:
                job_id.append(line.strip().split(";")[0])
            if line.strip():
                print(f"{prog}: submitted job {line.strip()} ({len(todo)} task(s)) for {spec.log_glob()}",
                      file=sys.stderr)

    def on_signal(signum: int, _frame: object) -> None:
        stop.append(signum)          # only a flag: the loop below cancels, whatever arrives next

    handled = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {s: signal.signal(s, on_signal) for s in handled}
    try:
        try:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
        except OSError as e:
            print(f"{prog}: cannot run {cfg.command[0]}: {e}", file=sys.stderr)
            return 1
        reader = threading.Thread(target=read_id, args=(proc.stdout,), daemon=True)
        reader.start()
        hopeless = ""
        asked_at = cancelled_at = None     # when a stop was first wanted / when scancel was run
        poll = float(os.environ.get("SSLSV_SQUEUE_POLL", SQUEUE_POLL))
        next_poll = time.time() + poll
        while True:
            try:
                rc = proc.wait(timeout=0.2)
                break
            except subprocess.TimeoutExpired:
                pass
            now = time.time()
            if (stop or hopeless) and cancelled_at is None:
                asked_at = asked_at or now
                if job_id:
                    if shutil.which("scancel"):
                        subprocess.run(["scancel", job_id[0]], check=False, stdin=subprocess.DEVNULL)
                    cancelled_at = now
                elif now > asked_at + 5:      # sbatch never printed an id: nothing to cancel
                    proc.terminate()
                    cancelled_at = now
            elif cancelled_at is not None and now > cancelled_at + 60:
                proc.terminate()              # sbatch --wait did not return after the cancel: stop waiting
                cancelled_at = now
            elif not stop and job_id and now >= next_poll:
                next_poll = now + poll
                rows = _squeue(["--array", f"--jobs={job_id[0]}", "--format=%i|%T|%r"]) or []
                pending = [r for r in rows if len(r) >= 3 and r[1] == "PENDING"]
                if pending and len(pending) == len(rows):
                    bad = [r[2] for r in pending if r[2] in HOPELESS_REASONS]
                    if len(bad) == len(pending):
                        hopeless = bad[0]
        reader.join(timeout=5)
        if (stop or hopeless) and cancelled_at is None and job_id and shutil.which("scancel"):
            # sbatch ended first (timeout(1) signals the whole process group, sbatch included)
            subprocess.run(["scancel", job_id[0]], check=False, stdin=subprocess.DEVNULL)
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    jid = job_id[0] if job_id else "(not yet submitted)"
    if stop:
        print(f"{prog}: {signal.Signals(stop[0]).name} received: cancelled job {jid}", file=sys.stderr)
        return 128 + stop[0]
    if hopeless:
        print(f"{prog}: job {jid} can never start (pending, reason {hopeless}: the request "
              f"{' '.join(mapped) or '(no options)'} exceeds what the partition, its nodes or your QOS "
              f"allow); cancelled it. Ask for fewer resources (see conf/slurm.conf)", file=sys.stderr)
        return 1

    def failures() -> list[int]:
        return [i for i in todo if not log_succeeded(spec.log_for(i))]

    failed = failures()
    deadline = time.time() + settle
    while failed and rc == 0 and time.time() < deadline:  # a shared file system may lag behind
        time.sleep(0.5)
        failed = failures()
    if rc != 0 and not job_id:
        print(f"{prog}: {cmd[0]} exited with code {rc}; nothing was submitted", file=sys.stderr)
        return 1
    if failed:
        print(failure_message(prog, spec, failed, len(todo)), file=sys.stderr)
        for i in failed[:5]:
            task_out = Path(str(out).replace("%a", str(i)))
            why = _task_kill_reason(task_out)
            if why:
                tid = f"{jid}_{i}" if array else jid
                print(f"{prog}: task {tid} ({spec.log_for(i)}) was {why}; see {task_out}", file=sys.stderr)
        return 1
    if rc != 0:
        print(f"{prog}: {cmd[0]} exited with code {rc} for job {jid} although every task's log ends "
              f"with code 0; see the SLURM output in {out}", file=sys.stderr)
        return 1
    return 0


# ---------------------------------------------------------------------------------------------------
# Command-line entry points


def _usage(prog: str, slurm: bool) -> str:
    if slurm:
        return USAGE.format(prog=prog, threads="--cpus-per-task via the config", mem="via the config",
                            gpu="--gres=gpu:N via the config", time="via the config",
                            maxjobs="; passed as --array=...%K",
                            extra="\n  --config F          option mapping (default conf/slurm.conf, "
                                  "else built in)\nOther options are accepted if the config describes them.")
    return USAGE.format(prog=prog, threads="ignored here, written in the log", mem="ignored here",
                        gpu="sets CUDA_VISIBLE_DEVICES per job", time="ignored here",
                        maxjobs="; default: the cores, or the GPUs with --gpu", extra="")


def main(argv: list[str] | None = None, backend: str = "local") -> int:
    """Entry point of ``utils/run.py`` (``backend='local'``) and ``utils/slurm.py`` (``'slurm'``)."""
    argv = sys.argv[1:] if argv is None else argv
    slurm = backend == "slurm"
    prog = "slurm.py" if slurm else "run.py"
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage(prog, slurm), file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    try:
        spec = parse_args(argv, extra_options=slurm, config_option=slurm)
        return run_slurm(spec, prog) if slurm else run_local(spec, prog)
    except (UsageError, DataError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        print(f"(run '{prog} --help' for the usage)", file=sys.stderr)
        return 2
