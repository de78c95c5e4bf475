"""GAN-Fusion (Sahu & Vechtomova), classification form, following the paper's text (section 3.2) and
MODEL-NOTES.md; the authors' public code is an unfinished draft and is not followed.

One module per target modality m: the "real" sample is the Auto-Fusion of the OTHER modalities' codes
(with only one other modality, its code itself, as the paper says); the generator turns ``z_m`` (+
``noise`` * N(0, 1) while training) into ``z_g``: ``L > 2L > 2L > L`` with BatchNorm and LeakyReLU(0.2);
the discriminator ``L > H > H > 1`` (BatchNorm, LeakyReLU) scores real vs generated with BCE on logits
(eq. 2). The three generated codes are concatenated ``> 1.5L (tanh) > L (ReLU)`` -> fully-connected head.

Two update steps per batch (``parameter_groups``):
1. ``main`` (learners, Auto-Fusions, generators, fusion layers, head):
   ``lambda1 * (J_adv(G) + sum_m J_tr(Auto-Fusion_m)) + lambda2 * J_task``; the generators try to make
   D call their codes real. The inner Auto-Fusions keep their own reconstruction loss (eq. 1), without
   which the "real" side of the game would have no objective of its own.
2. ``discriminator``: the three discriminators on real (1) vs generated (0), inputs detached.

Adaptation to utterance vectors: the unimodal learners are MLPs (the paper's LSTMs over sequences of
length one). The generator ends in ReLU so that its codes live where the real ones do (the Auto-Fusion
code is a ReLU output); without it D separates them by sign alone. No noise at evaluation, so
predictions are deterministic.

Missing modality (``missing_policy = "zero_code"``): its code is zero everywhere it is used (its own
generator's input and the other modules' Auto-Fusion input).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from pydantic import Field
from torch import Tensor, nn

from models._zoo import drop_modalities
from models.autofusion import AutoFusionBlock, codes_with_missing, unimodal_learners
from models.base import AffectModel, Batch, ModelConfig
from models.registry import register_model


def generator(L: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(L, 2 * L), nn.BatchNorm1d(2 * L), nn.LeakyReLU(0.2),
        nn.Linear(2 * L, 2 * L), nn.BatchNorm1d(2 * L), nn.LeakyReLU(0.2),
        nn.Linear(2 * L, L), nn.ReLU(),
    )


def discriminator(L: int, H: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(L, H), nn.BatchNorm1d(H), nn.LeakyReLU(0.2),
        nn.Linear(H, H), nn.BatchNorm1d(H), nn.LeakyReLU(0.2),
        nn.Linear(H, 1),
    )


class GANFusionConfig(ModelConfig):
    hidden: int = Field(64, ge=1)  # unimodal learner hidden size
    code: int = Field(32, ge=1)  # L: unimodal codes, real/generated codes
    disc_hidden: int = Field(64, ge=1)  # H
    dropout: float = Field(0.2, ge=0.0, lt=1.0)
    noise: float = Field(0.01, ge=0.0)
    lr: float = 1e-3
    lr_d: float | None = None  # None: same as lr
    lambda1: float = Field(1.0, ge=0.0)
    lambda2: float = Field(1.0, ge=0.0)
    train_missing_rate: float = Field(0.0, ge=0.0, lt=1.0)


@register_model("ganfusion")
class GANFusion(AffectModel):
    Config = GANFusionConfig
    input_kind = "utterance"
    missing_policy = "zero_code"
    search_space: ClassVar[dict[str, list | tuple]] = {
        "hidden": [32, 64, 128],
        "code": [16, 32, 50],
        "disc_hidden": [32, 64],
        "dropout": (0.0, 0.5),
        "lr": (1e-4, 1e-2, "log"),
        "lambda1": [0.01, 0.1, 1.0],
        "batch_size": [16, 32, 64],
    }
    cfg: GANFusionConfig

    def __init__(self, cfg: GANFusionConfig, *, dims: dict[str, int], n_classes: int) -> None:
        super().__init__(cfg, dims=dims, n_classes=n_classes)
        if len(self.modalities) < 2:
            raise ValueError("GAN-Fusion needs at least two modalities")
        L = cfg.code
        mods = self.modalities
        self.learners = unimodal_learners(dims, cfg.hidden, L, cfg.dropout)
        # Auto-Fusion of the others only when there are at least two others.
        self.autofusions = nn.ModuleDict(
            {m: AutoFusionBlock((len(mods) - 1) * L, L) for m in mods} if len(mods) > 2 else {}
        )
        self.generators = nn.ModuleDict({m: generator(L) for m in mods})
        self.discriminators = nn.ModuleDict({m: discriminator(L, cfg.disc_hidden) for m in mods})
        mid = (3 * L) // 2
        self.fuse = nn.Sequential(nn.Linear(len(mods) * L, mid), nn.Tanh(), nn.Linear(mid, L), nn.ReLU())
        self.head = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(L, n_classes))
        # The "real" side (Auto-Fusions of the other modalities) only feeds the adversarial game: computed
        # while training, skipped at inference (None) unless asked for (True), e.g. to inspect the losses.
        self.compute_real: bool | None = None

    def forward(self, batch: Batch) -> dict[str, Tensor]:
        codes = codes_with_missing(self.learners, batch, self.modalities)
        out: dict[str, Tensor] = {}
        generated = []
        real_side = self.training if self.compute_real is None else self.compute_real
        for m in self.modalities:
            if real_side:
                others = torch.cat([codes[o] for o in self.modalities if o != m], dim=-1)
                if m in self.autofusions:
                    real, recon = self.autofusions[m](others)
                    out[f"af_in_{m}"], out[f"af_recon_{m}"] = others, recon
                else:
                    real = others
                out[f"real_{m}"] = real
            z = codes[m]
            if self.training and self.cfg.noise > 0:
                z = z + self.cfg.noise * torch.randn_like(z)
            fake = self.generators[m](z)
            out[f"fake_{m}"] = fake
            generated.append(fake)
        fused = self.fuse(torch.cat(generated, dim=-1))
        out["embedding"] = fused
        out["logits"] = self.head(fused)
        return out

    # ------------------------------------------------------------------ losses
    def loss(self, batch: Batch, out: dict[str, Tensor]) -> Tensor:
        return nn.functional.cross_entropy(out["logits"], batch.y)

    def generator_terms(self, batch: Batch, out: dict[str, Tensor]) -> dict[str, Tensor]:
        bce = nn.functional.binary_cross_entropy_with_logits
        adv = sum(
            bce(d := self.discriminators[m](out[f"fake_{m}"]), torch.ones_like(d)) for m in self.modalities
        )
        tr = sum(
            nn.functional.mse_loss(out[f"af_recon_{m}"], out[f"af_in_{m}"].detach())
            for m in self.modalities if f"af_recon_{m}" in out
        )
        task = self.loss(batch, out)
        total = self.cfg.lambda1 * (adv + tr) + self.cfg.lambda2 * task
        return {"loss": total, "adv_g": adv, "fusion_tr": tr, "task": task}  # type: ignore[dict-item]

    def discriminator_loss(self, out: dict[str, Tensor]) -> Tensor:
        bce = nn.functional.binary_cross_entropy_with_logits
        total = torch.zeros((), device=out["logits"].device)
        for m in self.modalities:
            r = self.discriminators[m](out[f"real_{m}"].detach())
            f = self.discriminators[m](out[f"fake_{m}"].detach())
            total = total + bce(r, torch.ones_like(r)) + bce(f, torch.zeros_like(f))
        return total

    # ------------------------------------------------------------------ optimisation
    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        disc = {id(p) for p in self.discriminators.parameters()}
        return {
            "main": [p for p in self.parameters() if id(p) not in disc],
            "discriminator": list(self.discriminators.parameters()),
        }

    def make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        g = self.parameter_groups()
        lr_d = self.cfg.lr_d or self.cfg.lr
        # Adam with beta1 = 0.5, the usual GAN setting (the paper: "Adam ... for the generator and
        # discriminator networks").
        return {
            "main": torch.optim.Adam(g["main"], lr=self.cfg.lr, betas=(0.5, 0.999), weight_decay=self.cfg.weight_decay),
            "discriminator": torch.optim.Adam(g["discriminator"], lr=lr_d, betas=(0.5, 0.999)),
        }

    def step_main(self, batch: Batch, opt: torch.optim.Optimizer) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Step 1: generators fool the discriminators; task; Auto-Fusion reconstruction. Returns the
        forward's outputs (reused, detached, by the discriminator step) and the loss terms."""
        self.zero_grad(set_to_none=True)
        out = self(batch)
        terms = self.generator_terms(batch, out)
        terms["loss"].backward()
        opt.step()
        self.zero_grad(set_to_none=True)  # J_adv(G) also reached D: never let it leak into step 2
        return out, terms

    def step_discriminator(self, out: dict[str, Tensor], opt: torch.optim.Optimizer) -> Tensor:
        """Step 2: the discriminators on the step-1 codes, detached."""
        self.zero_grad(set_to_none=True)
        d_loss = self.discriminator_loss(out)
        d_loss.backward()
        opt.step()
        self.zero_grad(set_to_none=True)
        return d_loss

    def training_step(self, batch: Batch, optimizers: dict[str, torch.optim.Optimizer]) -> dict[str, float]:
        seen = drop_modalities(batch, self.modalities, self.cfg.train_missing_rate)
        out, terms = self.step_main(seen, optimizers["main"])
        d_loss = self.step_discriminator(out, optimizers["discriminator"])
        logs = {k: float(v.detach()) for k, v in terms.items()}
        logs["loss_d"] = float(d_loss.detach())
        return logs
