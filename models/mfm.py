"""MFM: factorised multimodal representations (Tsai et al., ICLR 2019), utterance-level form.

Factorisation (MODEL-NOTES.md): one multimodal discriminative factor ``f_y`` and one generative factor
``f_m`` per modality; a decoder per modality rebuilds ``x_m`` from ``[f_y; f_m]``; the label head reads
``f_y`` only. Loss = task + sum_m lambda_m * MSE(x_hat_m, x_m) + lambda_mmd * sum_z MMD(z, N(0, I))
(Wasserstein-autoencoder prior matching on every latent z before its factor MLP).

Adaptation to utterance vectors (our MOSI inputs are one vector per utterance and modality, not word-level
sequences): the paper's per-modality LSTM encoders and LSTM decoders, unrolled over a sequence of length
one, reduce to gated feed-forward maps, so they are MLPs here; the MFN fusion encoder that gives ``z_y``
becomes an MLP on the concatenated inputs. The task loss is cross-entropy on the class (the paper's L1 is
on the continuous score; our trainer's targets are classes).

Missing modality (``missing_policy = "reconstruct"``, the paper's section on missing modalities): a
missing input is zero, its generative latent ``z_m`` is set to the prior mean (0) and ``z_y`` is computed
from the zero-filled inputs; the decoder then generates ``x_hat_m`` from ``[f_y; f_m]`` and the missing
input is replaced by it for a second pass (``missing_passes`` refinements), whose prediction is the
output. ``train_missing_rate`` > 0 also drops modalities during training (then the reconstruction loss
asks the decoder to rebuild the dropped input from the rest); 0 (default) is the paper's complete-input
training.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from pydantic import Field
from torch import Tensor, nn

from models._zoo import drop_modalities, mlp, mmd_to_normal, present
from models.base import AffectModel, Batch, ModelConfig
from models.registry import register_model

# The authors' MOSI reconstruction weights (text / audio / video), MODEL-NOTES.md.
DEFAULT_LAMBDA_X = {"text": 1.0, "audio": 0.01, "video": 0.5}


class MFMConfig(ModelConfig):
    hidden: int = Field(64, ge=1)
    z_dim: int = Field(32, ge=1)
    f_dim: int = Field(32, ge=1)
    dropout: float = Field(0.2, ge=0.0, lt=1.0)
    lr: float = 1e-3
    lambda_x: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_LAMBDA_X))
    lambda_x_scale: float = Field(1.0, ge=0.0)  # multiplies every lambda_x (one knob for the search)
    lambda_mmd: float = Field(1.0, ge=0.0)
    missing_passes: int = Field(1, ge=1)
    train_missing_rate: float = Field(0.0, ge=0.0, lt=1.0)


@register_model("mfm")
class MFM(AffectModel):
    Config = MFMConfig
    input_kind = "utterance"
    missing_policy = "reconstruct"
    search_space: ClassVar[dict[str, list | tuple]] = {
        "hidden": [32, 64, 128],
        "z_dim": [16, 32, 64],
        "f_dim": [16, 32, 64],
        "dropout": (0.0, 0.5),
        "lr": (1e-4, 1e-2, "log"),
        "lambda_x_scale": [0.1, 1.0],
        "lambda_mmd": [0.1, 1.0, 10.0],
        "batch_size": [16, 32, 64],
    }
    cfg: MFMConfig

    def __init__(self, cfg: MFMConfig, *, dims: dict[str, int], n_classes: int) -> None:
        super().__init__(cfg, dims=dims, n_classes=n_classes)
        h, z, f, p = cfg.hidden, cfg.z_dim, cfg.f_dim, cfg.dropout
        mods = self.modalities
        self.encoders = nn.ModuleDict({m: mlp([dims[m], h, z], dropout=p) for m in mods})
        self.fusion_encoder = mlp([sum(dims.values()), h, z], dropout=p)
        self.factor_y = mlp([z, f, f])
        self.factors = nn.ModuleDict({m: mlp([z, f, f]) for m in mods})
        self.decoders = nn.ModuleDict({m: mlp([2 * f, h, dims[m]]) for m in mods})
        self.head = mlp([f, f, n_classes], dropout=p)

    def _pass(self, x: dict[str, Tensor], pres: dict[str, Tensor]) -> dict[str, Tensor]:
        z_y = self.fusion_encoder(torch.cat([x[m] for m in self.modalities], dim=-1))
        f_y = self.factor_y(z_y)
        out: dict[str, Tensor] = {"logits": self.head(f_y), "embedding": f_y, "z_y": z_y}
        for m in self.modalities:
            # A missing modality has no posterior: its generative latent is the prior mean.
            z_m = self.encoders[m](x[m]) * pres[m].unsqueeze(-1)
            out[f"z_{m}"] = z_m
            out[f"recon_{m}"] = self.decoders[m](torch.cat([f_y, self.factors[m](z_m)], dim=-1))
        return out

    def forward(self, batch: Batch) -> dict[str, Tensor]:
        pres = {m: present(batch, m) for m in self.modalities}
        x = {m: batch.x[m] * pres[m].unsqueeze(-1) for m in self.modalities}
        out = self._pass(x, pres)
        if all(bool(p.all()) for p in pres.values()):
            return out
        for _ in range(self.cfg.missing_passes):
            # Fill each missing input with its reconstruction, then predict again from the filled inputs.
            filled = {m: torch.where(pres[m].unsqueeze(-1) > 0, x[m], out[f"recon_{m}"]) for m in self.modalities}
            out = self._pass(filled, pres)
        return out

    # ------------------------------------------------------------------ losses
    def objective(self, batch: Batch, out: dict[str, Tensor], target: Batch | None = None) -> dict[str, Tensor]:
        """Loss terms; ``target`` is the batch whose inputs the decoders must rebuild (the complete one
        when modalities were dropped for training)."""
        target = target or batch
        task = nn.functional.cross_entropy(out["logits"], batch.y)
        recon = torch.zeros((), device=batch.y.device)
        for m in self.modalities:
            w = present(target, m)
            per = (out[f"recon_{m}"] - target.x[m]).pow(2).mean(-1)
            lam = self.cfg.lambda_x.get(m, 1.0) * self.cfg.lambda_x_scale
            recon = recon + lam * (per * w).sum() / w.sum().clamp_min(1.0)
        mmd = mmd_to_normal(out["z_y"])
        for m in self.modalities:
            rows = present(batch, m) > 0
            if int(rows.sum()) > 1:
                mmd = mmd + mmd_to_normal(out[f"z_{m}"][rows])
        total = task + recon + self.cfg.lambda_mmd * mmd
        return {"loss": total, "task": task, "recon": recon, "mmd": mmd}

    def loss(self, batch: Batch, out: dict[str, Tensor]) -> Tensor:
        """Task loss (what the trainer reports and may select on)."""
        return nn.functional.cross_entropy(out["logits"], batch.y)

    def training_step(self, batch: Batch, optimizers: dict[str, torch.optim.Optimizer]) -> dict[str, float]:
        opt = optimizers["all"]
        opt.zero_grad(set_to_none=True)
        seen = drop_modalities(batch, self.modalities, self.cfg.train_missing_rate)
        terms = self.objective(seen, self(seen), target=batch)
        terms["loss"].backward()
        opt.step()
        return {k: float(v.detach()) for k, v in terms.items()}
