"""The one interface every model implements, so the trainer is written once.

A model gets a typed ``Config`` (pydantic), the input dims per modality and the number of classes.
The default :meth:`AffectModel.training_step` is one optimiser on one loss; models with several update
steps (ARGF's encoder/decoder, discriminator, classifier and fusion steps; GAN-Fusion; two-stage CyIN)
override ``make_optimizers`` and ``training_step`` only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

import torch
from pydantic import BaseModel, ConfigDict
from torch import Tensor, nn

from models.modalities import MODALITIES, keep_mask, ordered

__all__ = ["MODALITIES", "AffectModel", "Batch", "ModelConfig", "resolve_device"]


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cpu`` / ``cuda`` as given (``cuda`` without a GPU is an
    error the caller reports)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but torch sees no CUDA device")
    return torch.device(name)


class ModelConfig(BaseModel):
    """Base of every model config: typed, unknown keys forbidden."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    lr: float = 1e-3
    weight_decay: float = 0.0


@dataclass
class Batch:
    """A mini-batch.

    Utterance-level models (``input_kind = "utterance"``): ``x[m]`` is ``[B, D_m]``, ``y`` is ``[B]``.
    Video-level models (``input_kind = "video"``, e.g. UCLN): ``x[m]`` is ``[B, U, D_m]`` over the
    utterances of each video, ``y`` is ``[B, U]`` and ``mask`` ``[B, U]`` marks real utterances.
    ``present[m]`` is a bool ``[B]`` (or ``[B, U]``): False where modality m is missing for that sample;
    each model documents how it presents a missing modality (``missing_policy``).
    """

    x: dict[str, Tensor]
    y: Tensor
    present: dict[str, Tensor] = field(default_factory=dict)
    mask: Tensor | None = None
    score: Tensor | None = None

    def to(self, device: torch.device | str) -> Batch:
        return Batch(
            {m: v.to(device) for m, v in self.x.items()},
            self.y.to(device),
            {m: v.to(device) for m, v in self.present.items()},
            None if self.mask is None else self.mask.to(device),
            None if self.score is None else self.score.to(device),
        )

    @property
    def size(self) -> int:
        return int(self.y.shape[0])

    def presence(self, m: str) -> Tensor:
        """Float ``[B]`` (or ``[B, U]``), 1 where modality ``m`` is present (all ones when not said)."""
        p = self.present.get(m)
        if p is None:
            return torch.ones(self.y.shape, device=self.y.device)
        return p.to(torch.float32)

    def had(self, modalities: list[str]) -> Tensor:
        """bool ``[..., M]``: which modalities each real sample has (video padding counts as absent)."""
        cols = [self.presence(m) > 0 for m in modalities]
        had = torch.stack(cols, dim=-1)
        return had & self.mask.bool().unsqueeze(-1) if self.mask is not None else had

    def with_kept(self, modalities: list[str], keep: Tensor) -> Batch:
        """This batch with modality i missing wherever ``keep[..., i]`` is False, presented as the store
        presents a missing modality: input zeroed (``where``, so a NaN cell cannot leak), present False."""
        keep = keep.bool() & self.had(modalities)
        x, pres = dict(self.x), dict(self.present)
        for i, m in enumerate(modalities):
            k = keep[..., i]
            x[m] = torch.where(k.unsqueeze(-1), self.x[m], torch.zeros_like(self.x[m]))
            pres[m] = k
        return Batch(x, self.y, pres, self.mask, self.score)

    def drop_modalities(self, modalities: list[str], rate: float, generator: torch.Generator | None = None) -> Batch:
        """Training-time modality dropout with the one missing-modality protocol (:func:`keep_mask`)."""
        if rate <= 0:
            return self
        return self.with_kept(modalities, keep_mask(self.had(modalities), rate, generator))


class AffectModel(nn.Module):
    """Base class. Subclasses set ``Config`` and implement ``forward`` (returning at least ``logits``)."""

    Config: ClassVar[type[ModelConfig]] = ModelConfig
    registry_name: ClassVar[str] = ""
    input_kind: ClassVar[Literal["utterance", "video"]] = "utterance"
    # How a missing modality is presented to the model: "zeros", "learned", "reconstruct", ...
    missing_policy: ClassVar[str] = "zeros"
    # Trained once per modality, each run alone on its modality (context networks such as UCLN).
    per_modality: ClassVar[bool] = False

    def __init__(self, cfg: ModelConfig, *, dims: dict[str, int], n_classes: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.dims = dict(dims)
        self.modalities = ordered(dims)
        self.n_classes = n_classes

    # ---- what every model provides
    def forward(self, batch: Batch) -> dict[str, Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    # ---- what most models inherit
    def loss(self, batch: Batch, out: dict[str, Tensor]) -> Tensor:
        """Cross-entropy on ``out["logits"]`` over real samples (masked for video-level models)."""
        logits, y = out["logits"], batch.y
        if batch.mask is not None:
            logits, y = logits[batch.mask], y[batch.mask]
        return nn.functional.cross_entropy(logits, y)

    def make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"all": torch.optim.Adam(self.parameters(), lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)}

    def make_schedulers(self, optimizers: dict[str, torch.optim.Optimizer], epochs: int) -> list:
        """Learning-rate schedulers the trainer steps once per epoch (none by default)."""
        return []

    def training_step(self, batch: Batch, optimizers: dict[str, torch.optim.Optimizer]) -> dict[str, float]:
        """One update on one batch; returns the scalar losses to log."""
        opt = optimizers["all"]
        opt.zero_grad(set_to_none=True)
        out = self(batch)
        loss = self.loss(batch, out)
        loss.backward()
        opt.step()
        return {"loss": float(loss.detach())}

    @torch.no_grad()
    def predict(self, batch: Batch) -> dict[str, Tensor]:
        """Eval-mode forward; ``logits`` plus whatever extras the model exposes (weights, embeddings)."""
        was_training = self.training
        self.eval()
        try:
            return self(batch)
        finally:
            self.train(was_training)

    def n_parameters(self, trainable_only: bool = True) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)
