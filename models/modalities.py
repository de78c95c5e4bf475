"""The modalities every layer knows, in their canonical order, and the one missing-modality protocol.

Torch-free on purpose: the CLI, the store and the importers read :data:`MODALITIES` without importing
torch. :func:`keep_mask` (torch) is imported lazily by the code that drops modalities.

Missing-modality protocol ("drop modalities but keep at least one"), used alike by training-time
modality dropout (ARGF, MFM, Auto-Fusion, GAN-Fusion, CyIN) and by :mod:`pipeline.robustness`:
each (sample, modality) the sample *has* is dropped with probability ``rate``; a sample that would
lose every modality it had keeps one of them, chosen uniformly; a modality already missing in the
data stays missing (so a sample that had none keeps none).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

MODALITIES = ("text", "audio", "video")


def ordered(modalities: Iterable[str]) -> list[str]:
    """Known modalities in canonical order, then any others sorted by name."""
    mods = list(modalities)
    return [m for m in MODALITIES if m in mods] + sorted(m for m in mods if m not in MODALITIES)


def keep_mask(had: torch.Tensor, rate: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """bool ``[..., M]``: which of the modalities a sample ``had`` (bool ``[..., M]``) it keeps.

    Draws (in this order, so a seed gives the same masks everywhere): one uniform per entry, then one
    multinomial pick per sample that lost everything."""
    import torch

    if not 0.0 <= rate < 1.0:
        raise ValueError(f"missing rate must be in [0, 1), got {rate}")
    had = had.bool()
    device = generator.device if generator is not None else had.device
    keep = had & (torch.rand(had.shape, generator=generator, device=device) >= rate).to(had.device)
    lost = ~keep.any(-1) & had.any(-1)
    if lost.any():
        rows = keep[lost]
        back = torch.multinomial(had[lost].float().to(device), 1, generator=generator).squeeze(1).to(had.device)
        rows[torch.arange(len(rows), device=had.device), back] = True
        keep[lost] = rows
    return keep
