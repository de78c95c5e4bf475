"""Auto-Fusion (Sahu & Vechtomova), classification form, following the paper's text (section 3.1).

Unimodal learners give codes ``z_m`` (size ``code``); their concatenation (D = M * code) is compressed
``D > D/2 (tanh) > L (ReLU)`` and decoded back ``L > D/2 (tanh) > D``; the L-size code is the fused vector,
and a fully-connected layer predicts the class (Fig. 3). Loss ``lambda1 * J_tr + lambda2 * J_task`` (eq. 4)
with ``J_tr = MSE(z_hat, z)`` (eq. 1) and cross-entropy as the task loss.

Adaptation to utterance vectors: the paper's LSTM learners run over word / frame sequences; our inputs are
one vector per utterance and modality, so each learner is an MLP ``d_m > hidden > code`` (tanh code).

Choice the paper leaves open: the reconstruction target ``z`` is detached by default
(``detach_target``): with gradients through the target, the cheapest way to lower J_tr is to shrink every
unimodal code towards a constant, which fights the task loss; the compression network alone is asked to
keep the information.

Missing modality (``missing_policy = "zero_code"``): its input and its code are zero before the
concatenation (the compressor sees a code at the centre of the tanh range); ``train_missing_rate`` > 0
simulates missing modalities during training (0 = the paper).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from pydantic import Field
from torch import Tensor, nn

from models._zoo import drop_modalities, mlp, present
from models.base import AffectModel, Batch, ModelConfig
from models.registry import register_model


class AutoFusionBlock(nn.Module):
    """The compressor of eq. 1: ``forward(z [B, D]) -> (fused [B, L], reconstruction [B, D])``."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        mid = max(in_dim // 2, 1)
        self.encode = nn.Sequential(nn.Linear(in_dim, mid), nn.Tanh(), nn.Linear(mid, out_dim), nn.ReLU())
        self.decode = nn.Sequential(nn.Linear(out_dim, mid), nn.Tanh(), nn.Linear(mid, in_dim))

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        fused = self.encode(z)
        return fused, self.decode(fused)


def unimodal_learners(dims: dict[str, int], hidden: int, code: int, dropout: float) -> nn.ModuleDict:
    return nn.ModuleDict({m: mlp([d, hidden, code], dropout=dropout, last_act=nn.Tanh()) for m, d in dims.items()})


def codes_with_missing(learners: nn.ModuleDict, batch: Batch, modalities: list[str]) -> dict[str, Tensor]:
    """Per-modality codes; a missing modality's input and code are zero."""
    codes = {}
    for m in modalities:
        p = present(batch, m).unsqueeze(-1)
        codes[m] = learners[m](batch.x[m] * p) * p
    return codes


class AutoFusionConfig(ModelConfig):
    hidden: int = Field(64, ge=1)
    code: int = Field(32, ge=1)
    fused: int = Field(32, ge=1)  # L
    dropout: float = Field(0.2, ge=0.0, lt=1.0)
    lr: float = 1e-3
    lambda1: float = Field(1.0, ge=0.0)  # fusion (reconstruction) loss
    lambda2: float = Field(1.0, ge=0.0)  # task loss
    detach_target: bool = True
    train_missing_rate: float = Field(0.0, ge=0.0, lt=1.0)


@register_model("autofusion")
class AutoFusion(AffectModel):
    Config = AutoFusionConfig
    input_kind = "utterance"
    missing_policy = "zero_code"
    search_space: ClassVar[dict[str, list | tuple]] = {
        "hidden": [32, 64, 128],
        "code": [16, 32, 64],
        "fused": [16, 32, 50],
        "dropout": (0.0, 0.5),
        "lr": (1e-4, 1e-2, "log"),
        "lambda1": [0.1, 1.0, 10.0],
        "batch_size": [16, 32, 64],
    }
    cfg: AutoFusionConfig

    def __init__(self, cfg: AutoFusionConfig, *, dims: dict[str, int], n_classes: int) -> None:
        super().__init__(cfg, dims=dims, n_classes=n_classes)
        self.learners = unimodal_learners(dims, cfg.hidden, cfg.code, cfg.dropout)
        self.autofusion = AutoFusionBlock(len(self.modalities) * cfg.code, cfg.fused)
        self.head = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(cfg.fused, n_classes))

    def forward(self, batch: Batch) -> dict[str, Tensor]:
        codes = codes_with_missing(self.learners, batch, self.modalities)
        z = torch.cat([codes[m] for m in self.modalities], dim=-1)
        fused, recon = self.autofusion(z)
        return {"logits": self.head(fused), "embedding": fused, "concat": z, "recon": recon}

    def objective(self, batch: Batch, out: dict[str, Tensor]) -> dict[str, Tensor]:
        target = out["concat"].detach() if self.cfg.detach_target else out["concat"]
        fusion = nn.functional.mse_loss(out["recon"], target)
        task = nn.functional.cross_entropy(out["logits"], batch.y)
        return {"loss": self.cfg.lambda1 * fusion + self.cfg.lambda2 * task, "fusion": fusion, "task": task}

    def loss(self, batch: Batch, out: dict[str, Tensor]) -> Tensor:
        return nn.functional.cross_entropy(out["logits"], batch.y)

    def training_step(self, batch: Batch, optimizers: dict[str, torch.optim.Optimizer]) -> dict[str, float]:
        opt = optimizers["all"]
        opt.zero_grad(set_to_none=True)
        seen = drop_modalities(batch, self.modalities, self.cfg.train_missing_rate)
        terms = self.objective(seen, self(seen))
        terms["loss"].backward()
        opt.step()
        return {k: float(v.detach()) for k, v in terms.items()}
