"""Stage-1 front end, Kaldi-exact: option files, MFCC (kaldi-native-fbank), energy VAD, and the feature
transforms the i-vector stages apply (add-deltas, apply-cmvn-sliding, select-voiced-frames,
subsample-feats)."""

from .kaldi_options import MfccConfig, VadConfig, read_mfcc_config, read_vad_config
from .mfcc import compute_mfcc, frame_length_samples, num_frames
from .transforms import add_deltas, apply_cmvn_sliding, select_voiced_frames, subsample_feats
from .vad import compute_vad

__all__ = [
    "MfccConfig", "VadConfig", "read_mfcc_config", "read_vad_config",
    "compute_mfcc", "frame_length_samples", "num_frames", "compute_vad",
    "add_deltas", "apply_cmvn_sliding", "select_voiced_frames", "subsample_feats",
]
