"""Frame posteriors of the full UBM for the i-vector extractor (docs/ivector.md §6.3), i.e. Kaldi's

    gmm-gselect --n=20 "fgmm-global-to-gmm final.ubm -|" | fgmm-global-gselect-to-post --min-post=0.025
      | scale-post 1.0

batched over frames and all Gaussians at once:

1. top-K components by the DIAGONAL model's log-likelihood (weights included; ties → larger index);
2. full-covariance log-likelihood of those K only, softmax over the K;
3. NaN guard: a frame whose posteriors do not sum to 1 within 0.01 (Kaldi skips the whole utterance)
   raises :class:`PosteriorError`; the caller skips the utterance with a warning;
4. posteriors ``< min_post`` (strict) become exactly 0 and the survivors are renormalised (if all were
   pruned the argmax gets 1.0);
5. × ``scale``.

The result is ``(idx (T, K) int64, post (T, K) float32)``, both on the device, ``idx`` in gselect order
(descending diagonal log-likelihood); pruned entries are 0 in ``post``. Log-likelihoods and the softmax run
in ``dtype`` (float32 as Kaldi's BaseFloat by default; float64 for parity checks).
"""

from __future__ import annotations

import numpy as np
import torch

from .gmm import DiagLoglik, FullGmm, FullLoglik, gselect

CPU = torch.device("cpu")


class PosteriorError(ValueError):
    """Posteriors of some frame are not finite / do not sum to one: the utterance must be skipped."""


class UbmPosteriors:
    """Callable frame-posterior computer for one UBM on one device (constants precomputed once)."""

    def __init__(self, ubm: FullGmm, num_gselect: int = 20, min_post: float = 0.025, scale: float = 1.0,
                 device: torch.device | str = CPU, dtype: torch.dtype = torch.float32,
                 chunk: int = 8192):
        self.device = torch.device(device)
        self.diag = DiagLoglik(ubm.to_diag(), self.device, dtype)
        self.full = FullLoglik(ubm, self.device, dtype)
        self.k = min(num_gselect, ubm.num_gauss)
        self.min_post, self.scale, self.chunk = float(min_post), float(scale), chunk

    def _chunk(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        idx = gselect(self.diag(x), self.k)
        post = torch.softmax(self.full(x, idx), dim=1)
        tot = post.sum(1)
        bad = ~(torch.abs(tot - 1.0) <= 0.01)        # also catches NaN
        if bool(bad.any()):
            raise PosteriorError(f"posteriors of {int(bad.sum())} frame(s) do not sum to 1 "
                                 f"(e.g. {float(tot[bad][0])}); skipping the utterance")
        if self.min_post > 0.0:
            amax = post.argmax(1, keepdim=True)
            post = torch.where(post < self.min_post, torch.zeros_like(post), post)
            s = post.sum(1, keepdim=True)
            empty = (s == 0.0).squeeze(1)
            if bool(empty.any()):
                post[empty] = post[empty].scatter(1, amax[empty], 1.0)
                s = post.sum(1, keepdim=True)
            post = post / s
        if self.scale != 1.0:
            post = post * self.scale
        return idx, post.to(torch.float32)

    def __call__(self, x: np.ndarray | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Frames ``x`` (T, D) → ``(idx (T, K) int64, post (T, K) float32)`` on the device."""
        x = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x, device=self.device)
        if x.shape[0] <= self.chunk:
            return self._chunk(x)
        parts = [self._chunk(x[a:a + self.chunk]) for a in range(0, x.shape[0], self.chunk)]
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
