"""Kaldi data-dir tools: validate, fix, split, subset and combine data dirs (the library behind
``utils/validate_data_dir.sh``, ``fix_data_dir.sh``, ``split_data.sh``, ``subset_data_dir.sh``,
``combine_data.sh`` and ``utt2spk_to_spk2utt.sh``)."""

from .audiocheck import check_audio, check_entry
from .combine import combine_data, spk2utt_to_utt2spk, utt2spk_to_spk2utt
from .fix import FixReport, fix_data_dir
from .layout import PER_SPK, PER_UTT, Tables, load_tables, write_subset
from .split import partition, select, split_data, split_dir, subset_data_dir
from .validate import DataDirError, Problem, Summary, validate_data_dir

__all__ = [
    "PER_SPK", "PER_UTT", "DataDirError", "FixReport", "Problem", "Summary", "Tables", "check_audio",
    "check_entry", "combine_data", "fix_data_dir", "load_tables", "partition", "select", "split_data",
    "split_dir", "spk2utt_to_utt2spk", "subset_data_dir", "utt2spk_to_spk2utt", "validate_data_dir",
    "write_subset",
]
