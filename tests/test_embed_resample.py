"""Speed perturbation of training chunks (sslsv.embed.resample): the rational factors, the output length,
the pitch shift it must produce, and its closeness to stage 2's sox speed."""

from __future__ import annotations

import numpy as np
import pytest
from sslsv import augment
from sslsv.embed.resample import out_length, speed, up_down


def test_up_down_and_length() -> None:
    assert up_down(0.9) == (10, 9) and up_down(1.1) == (10, 11) and up_down(0.8) == (5, 4)
    with pytest.raises(ValueError, match="not a ratio"):
        up_down(0.123456789)
    x = np.random.default_rng(0).standard_normal(36264)
    for f, n in ((0.9, 40294), (1.1, 32968)):
        assert speed(x, f).size == out_length(x.size, f) == n
    assert np.array_equal(speed(x, 1.0), x)


def test_pitch_scales_by_the_factor() -> None:
    n = 48000
    tone = np.sin(2 * np.pi * 500.0 * np.arange(n) / 16000)
    for factor in (0.9, 1.1):
        y = speed(tone, factor)
        spec = np.abs(np.fft.rfft(y * np.hanning(y.size)))
        peak = np.argmax(spec) * 16000 / y.size
        assert abs(peak - 500.0 * factor) < 1.0, peak


def test_close_to_sox_speed() -> None:
    """On speech-band audio (below 6 kHz, where both filters pass) the result is sox's to within 1 %."""
    rng = np.random.default_rng(1)
    t = np.arange(32000) / 16000
    x = sum(1000 / k * np.sin(2 * np.pi * 120 * k * t + rng.uniform(0, 6)) for k in range(1, 40))
    for factor in (0.9, 1.1):
        a, b = speed(x, factor), augment.speed_perturb(x, factor, 16000)
        m = min(a.size, b.size) - 200
        err = np.linalg.norm(a[200:m] - b[200:m]) / np.linalg.norm(b[200:m])
        assert err < 0.01, (factor, err)
