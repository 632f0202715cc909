#!/usr/bin/env python3
"""SLURM job runner with Kaldi's slurm.pl calling convention: one `sbatch --array ... --wait` per call,
generic options mapped to sbatch arguments by conf/slurm.conf:
    utils/slurm.py [--mem 4G] [--num-threads N] [--gpu N] [--time T] [--max-jobs-run K] [--config F]
                   [--pick failed] [JOB=a:b] <log> <command...>
See sslsv.jobs, or run with --help."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "pyscripts"))

from sslsv.jobs import main  # noqa: E402

sys.exit(main(backend="slurm"))
