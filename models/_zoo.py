"""Small pieces shared by the zoo models (MFM, Auto-Fusion, GAN-Fusion, CyIN); not a model module.

* :func:`present` / :func:`drop_modalities`: thin names for :meth:`Batch.presence` and the one
  missing-modality protocol (:func:`models.modalities.keep_mask`, also used by ARGF and robustness).
* :func:`mlp`, :func:`mmd_to_normal`, :func:`kl_normal`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from models.base import Batch


def present(batch: Batch, m: str) -> Tensor:
    """``[B]`` float, 1 where modality ``m`` is present (all ones when the batch does not say)."""
    return batch.presence(m)


def drop_modalities(batch: Batch, modalities: list[str], rate: float, generator: torch.Generator | None = None) -> Batch:
    """Training-time modality dropout: the one protocol of :mod:`models.modalities` (at least one kept)."""
    return batch.drop_modalities(modalities, rate, generator)


def mlp(sizes: list[int], act: type[nn.Module] = nn.LeakyReLU, dropout: float = 0.0, last_act: nn.Module | None = None) -> nn.Sequential:
    """Linear layers ``sizes[0] > ... > sizes[-1]`` with ``act`` (and dropout) between them."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers += [act(), nn.Dropout(dropout)] if dropout > 0 else [act()]
    if last_act is not None:
        layers.append(last_act)
    return nn.Sequential(*layers)


def _rbf(a: Tensor, b: Tensor) -> Tensor:
    # Gaussian kernel with bandwidth = dimension (the WAE / MFM-code choice).
    d = a.shape[1]
    return torch.exp(-torch.cdist(a, b).pow(2) / float(d))


def mmd_to_normal(z: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Biased MMD^2 between the codes ``z`` [B, d] and as many N(0, I) samples (Gaussian kernel)."""
    prior = torch.randn(z.shape, generator=generator, device=z.device, dtype=z.dtype)
    return _rbf(z, z).mean() + _rbf(prior, prior).mean() - 2 * _rbf(z, prior).mean()


def kl_normal(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) summed over dims, per sample [B]."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(-1)
