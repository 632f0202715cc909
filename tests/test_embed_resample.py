"""Speed perturbation by polyphase resampling (sslsv.embed.resample) against scipy's resample_poly, the
reference it implements, and the pitch shift it must produce."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.signal import resample_poly
from sslsv.embed.resample import out_length, speed, up_down


def test_up_down() -> None:
    assert up_down(0.9) == (10, 9) and up_down(1.1) == (10, 11) and up_down(0.8) == (5, 4)
    with pytest.raises(ValueError, match="not a ratio"):
        up_down(0.123456789)


@pytest.mark.parametrize("factor", [0.9, 1.1, 0.8])
def test_equals_resample_poly(factor: float) -> None:
    rng = np.random.default_rng(0)
    up, down = up_down(factor)
    for n in (1, 7, 160, 29816, 36264):
        x = rng.standard_normal((3, n)) * 3000
        ref = resample_poly(x, up, down, axis=-1)
        y = speed(torch.from_numpy(x), factor).numpy()
        assert y.shape == ref.shape == (3, out_length(n, factor))
        np.testing.assert_allclose(y, ref, rtol=0, atol=1e-9)
        y32 = speed(torch.from_numpy(x[0].astype(np.float32)), factor).numpy()     # one item, float32
        assert y32.dtype == np.float32
        np.testing.assert_allclose(y32, ref[0], rtol=0, atol=3e-3)
    x = torch.randn(5, 100)
    assert speed(x, 1.0) is x


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_equals_cpu() -> None:
    x = torch.randn(16, 36264, dtype=torch.float64)
    np.testing.assert_allclose(speed(x.cuda(), 1.1).cpu().numpy(), speed(x, 1.1).numpy(), atol=1e-9)


def test_pitch_scales_by_the_factor() -> None:
    n = 48000
    tone = np.sin(2 * np.pi * 500.0 * np.arange(n) / 16000)
    for factor in (0.9, 1.1):
        y = speed(torch.from_numpy(tone), factor).numpy()
        spec = np.abs(np.fft.rfft(y * np.hanning(y.size)))
        peak = np.argmax(spec) * 16000 / y.size
        assert abs(peak - 500.0 * factor) < 1.0, peak
