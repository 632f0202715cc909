"""Whole-utterance embeddings (docs/network.md §6.1-6.2): eval mode, CMN over the utterance, one utterance per
forward; utterances longer than ``max_frames`` are cut into windows of ``max_frames`` with half overlap
whose L2-normalised embeddings are averaged with frame-count weights (a last window shorter than half a
window is merged into the previous one)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import torch
from torch import nn


def windows(num_frames: int, max_frames: int) -> list[tuple[int, int]]:
    """``(start, end)`` frame windows covering ``num_frames``: one window when it fits in ``max_frames``."""
    if num_frames <= max_frames:
        return [(0, num_frames)]
    hop = max_frames // 2
    out = []
    start = 0
    while start + max_frames < num_frames:
        out.append((start, start + max_frames))
        start += hop
    if num_frames - start < hop and out:
        out[-1] = (out[-1][0], num_frames)
    else:
        out.append((start, num_frames))
    return out


@torch.no_grad()
def embed_features(model: nn.Module, feats: np.ndarray, device: torch.device, max_frames: int = 6000
                   ) -> np.ndarray:
    """The embedding (float32, unnormalised when the utterance fits one window) of one (T, F) matrix."""
    x = torch.from_numpy(np.ascontiguousarray(feats, dtype=np.float32)).to(device)
    x = x - x.mean(dim=0, keepdim=True)
    spans = windows(x.shape[0], max_frames)
    if len(spans) == 1:
        return model(x[None]).float()[0].cpu().numpy()
    embs = torch.cat([model(x[None, a:b]).float() for a, b in spans])
    w = torch.tensor([b - a for a, b in spans], dtype=torch.float32, device=device)
    embs = torch.nn.functional.normalize(embs, dim=1)
    return ((w[:, None] * embs).sum(0) / w.sum()).cpu().numpy()


def embed_all(model: nn.Module, items: Iterable[tuple[str, np.ndarray]], device: torch.device,
              max_frames: int = 6000) -> Iterator[tuple[str, np.ndarray]]:
    """``(key, embedding)`` for every ``(key, features)``, with the model in eval mode (restored after)."""
    was_training = model.training
    model.eval()
    try:
        for key, feats in items:
            yield key, embed_features(model, feats, device, max_frames)
    finally:
        model.train(was_training)
