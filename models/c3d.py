"""A small C3D (Tran et al. 2015) over gray face-crop clips, written by hand (torchvision does not import
beside torch 2.13 here). Pure torch: no file access.

Input: ``batch.x["video"]`` is ``[B, T * S * S]`` (a stored crop clip, flattened row-major as
[T, S, S], values in [0, 1]) or already ``[B, 1, T, S, S]``. Four 3x3x3 conv blocks (BatchNorm, ReLU;
the first pools space only, as in C3D, so early motion is kept), global average pooling, then a
``feature_dim`` dense layer whose activations are the clip's features (bc-LSTM's 3D-CNN gave 100-d),
then the classifier. ``forward`` returns ``logits`` and ``embedding`` (the penultimate layer).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from pydantic import Field
from torch import Tensor, nn

from models.base import AffectModel, Batch, ModelConfig
from models.registry import register_model


class C3DConfig(ModelConfig):
    clip_len: int = Field(16, ge=4)
    crop_size: int = Field(32, ge=16)
    widths: tuple[int, int, int, int] = (16, 32, 64, 96)
    feature_dim: int = Field(100, ge=2)
    dropout: float = Field(0.3, ge=0, lt=1)
    augment: bool = True  # random horizontal flip + 2-pixel shift per batch: tiny corpora overfit fast
    cosine: bool = True  # cosine learning-rate decay to 0 over the trainer's epochs


def _block(cin: int, cout: int, pool: tuple[int, int, int]) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv3d(cin, cout, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm3d(cout),
        nn.ReLU(inplace=True),
        nn.MaxPool3d(pool, pool),
    )


@register_model("c3d")
class C3D(AffectModel):
    Config = C3DConfig
    cfg: C3DConfig
    input_kind = "utterance"
    missing_policy = "rows without crops are not fed (the feature writer leaves them missing)"
    search_space: ClassVar[dict[str, list | tuple]] = {
        "lr": (1e-4, 3e-3, "log"),
        "dropout": (0.0, 0.6),
        "feature_dim": [64, 100, 128],
        "weight_decay": [0.0, 1e-4, 1e-3],
    }

    def __init__(self, cfg: C3DConfig, *, dims: dict[str, int], n_classes: int) -> None:
        super().__init__(cfg, dims=dims, n_classes=n_classes)
        expect = cfg.clip_len * cfg.crop_size**2
        if len(dims) != 1:
            raise ValueError(f"C3D reads one crops modality, got {sorted(dims)}")
        self.modality = self.modalities[0]  # "video", or the driver's crops column (e.g. video_crops)
        if dims[self.modality] != expect:
            raise ValueError(f"C3D expects {self.modality} dim {expect} (= {cfg.clip_len}x{cfg.crop_size}^2), got {dims[self.modality]}")
        w = cfg.widths
        self.features = nn.Sequential(
            _block(1, w[0], (1, 2, 2)),
            _block(w[0], w[1], (2, 2, 2)),
            _block(w[1], w[2], (2, 2, 2)),
            _block(w[2], w[3], (1, 1, 1)),
            nn.AdaptiveAvgPool3d(1),
            nn.Flatten(),
        )
        self.embed = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(w[3], cfg.feature_dim), nn.ReLU(inplace=True))
        self.head = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(cfg.feature_dim, n_classes))

    def clips(self, x: Tensor) -> Tensor:
        """[B, T*S*S] or [B, T, S, S] or [B, 1, T, S, S] -> [B, 1, T, S, S], centred around 0."""
        c = self.cfg
        if x.dim() == 2:
            x = x.view(-1, 1, c.clip_len, c.crop_size, c.crop_size)
        elif x.dim() == 4:
            x = x.unsqueeze(1)
        return (x - 0.5) * 4.0  # [0, 1] pixels -> roughly unit scale for the first conv

    def forward(self, batch: Batch) -> dict[str, Tensor]:
        emb = self.embed(self.features(self.clips(batch.x[self.modality])))
        return {"logits": self.head(emb), "embedding": emb}

    def make_schedulers(self, optimizers: dict[str, torch.optim.Optimizer], epochs: int) -> list:
        if not self.cfg.cosine:
            return []
        return [torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=epochs) for o in optimizers.values()]

    def training_step(self, batch: Batch, optimizers: dict[str, torch.optim.Optimizer]) -> dict[str, float]:
        if self.cfg.augment:
            c = self.cfg
            x = batch.x[self.modality].reshape(-1, 1, c.clip_len, c.crop_size, c.crop_size)  # still pixels
            flip = torch.rand(x.shape[0], device=x.device) < 0.5
            x = torch.where(flip[:, None, None, None, None], x.flip(-1), x)
            dx, dy = (int(v) for v in torch.randint(-2, 3, (2,)))
            x = torch.roll(x, shifts=(dy, dx), dims=(-2, -1))
            batch = Batch({**batch.x, self.modality: x}, batch.y, batch.present, batch.mask, batch.score)
        return super().training_step(batch, optimizers)

    @torch.no_grad()
    def embed_clips(self, x: Tensor) -> Tensor:
        """Penultimate-layer features of raw clips, in eval mode (what is written to the store)."""
        was = self.training
        self.eval()
        try:
            return self.embed(self.features(self.clips(x)))
        finally:
            self.train(was)
