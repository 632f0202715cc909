#!/usr/bin/env python3
"""Local job runner with Kaldi's run.pl calling convention (the default $train_cmd / $cuda_cmd):
    utils/run.py [--max-jobs-run K] [--gpu N] [--pick failed] [JOB=a:b] <log> <command...>
See sslsv.jobs, or run with --help."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "pyscripts"))

from sslsv.jobs import main  # noqa: E402

sys.exit(main(backend="local"))
