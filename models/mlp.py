"""Early-fusion MLP baseline: concatenate every modality's utterance vector, then a small MLP.

A real baseline for the fusion models (and the trainer's development model): no per-modality
encoders, no fusion network, one cross-entropy loss. Missing modality (``present[m]`` False): its
vector is replaced by zeros (the train mean after standardisation) and, with ``presence_flags``, a
0/1 flag per modality is appended so the network can tell "missing" from "average".
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from models.base import AffectModel, Batch, ModelConfig
from models.registry import register_model


class MLPConfig(ModelConfig):
    hidden: int = 128
    layers: int = 1  # hidden layers
    dropout: float = 0.3
    lr: float = 1e-3
    weight_decay: float = 1e-4
    presence_flags: bool = False


@register_model("mlp")
class EarlyFusionMLP(AffectModel):
    Config = MLPConfig
    input_kind = "utterance"
    missing_policy = "zeros"
    search_space: ClassVar[dict[str, list | tuple]] = {
        "hidden": [32, 64, 128, 256],
        "layers": [1, 2],
        "dropout": (0.0, 0.6),
        "lr": (1e-4, 1e-2, "log"),
        "weight_decay": [0.0, 1e-4, 1e-3, 1e-2],
        "batch_size": [16, 32, 64],
    }
    cfg: MLPConfig

    def __init__(self, cfg: MLPConfig, *, dims: dict[str, int], n_classes: int) -> None:
        super().__init__(cfg, dims=dims, n_classes=n_classes)
        width = sum(dims.values()) + (len(dims) if cfg.presence_flags else 0)
        layers: list[nn.Module] = []
        for _ in range(cfg.layers):
            layers += [nn.Linear(width, cfg.hidden), nn.ReLU(), nn.Dropout(cfg.dropout)]
            width = cfg.hidden
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, n_classes)

    def forward(self, batch: Batch) -> dict[str, Tensor]:
        parts, flags = [], []
        for m in self.modalities:
            x = batch.x[m]
            pres = batch.present.get(m)
            if pres is None:
                pres = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
            p = pres.to(x.dtype).unsqueeze(-1)
            parts.append(x * p)
            flags.append(p)
        if self.cfg.presence_flags:
            parts += flags
        h = self.body(torch.cat(parts, dim=-1))
        return {"logits": self.head(h), "embedding": h}
