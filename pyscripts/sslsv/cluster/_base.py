"""Helpers shared by the clustering estimators: input and label conversion, checks of parameters that take
one of a few values, and seeded torch draws.

``rand``/``randn`` draw on the generator's own device and move the result to the data's device, so a CPU
generator gives the same draws whether the data are on the CPU or a GPU (without a generator the global
RNG of the data's device is used). torch is imported when they are first called, so that the classical
estimators, which import this module, do not load it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.utils.validation import check_array

if TYPE_CHECKING:
    import torch


def check_input(X: Any, min_samples: int = 1) -> np.ndarray:
    """``X`` as a finite 2-D float32/float64 array (float32 is kept, anything else becomes float64)."""
    return check_array(X, dtype=[np.float64, np.float32], ensure_min_samples=min_samples)


def as_labels(labels: Any) -> np.ndarray:
    """Cluster labels as the int64 array every estimator stores in ``labels_``."""
    return np.asarray(labels, dtype=np.int64).ravel()


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    """A ``ValueError`` naming the parameter and its allowed values unless ``value`` is one of them."""
    if value not in choices:
        raise ValueError(f"{name}={value!r}: expected one of {', '.join(map(repr, choices))}")


def check_choices(est: Any, **choices: tuple[str, ...]) -> None:
    """:func:`check_choice` for each parameter ``name=(allowed, ...)`` of the estimator ``est``, in order:
    ``check_choices(self, linkage=("ward", "average"), metric=("euclidean", "cosine"))``."""
    for name, allowed in choices.items():
        check_choice(name, getattr(est, name), allowed)


def gen_device(generator: torch.Generator | None, like: torch.Tensor) -> torch.device:
    """The device random numbers are drawn on: the generator's, else that of ``like``."""
    return generator.device if generator is not None else like.device


def randn(shape: tuple[int, ...], like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Standard normal draws of ``like``'s dtype, made on the generator's device, returned on ``like``'s."""
    import torch

    z = torch.randn(shape, generator=generator, device=gen_device(generator, like), dtype=like.dtype)
    return z.to(like.device)


def rand(shape: tuple[int, ...], like: torch.Tensor, generator: torch.Generator | None,
         dtype: torch.dtype | None = None) -> torch.Tensor:
    """U[0, 1) draws (as :func:`randn`), of ``dtype`` (default ``like``'s)."""
    import torch

    u = torch.rand(shape, generator=generator, device=gen_device(generator, like), dtype=dtype or like.dtype)
    return u.to(like.device)
