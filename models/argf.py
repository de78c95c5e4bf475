"""ARGF: adversarial encoder-decoder-classifier + graph fusion (Mai, Hu & Xing, AAAI 2020).

Utterance-level model: ``x[m]`` is ``[B, d_m]`` (d = 50 UCLN context features on MOSI). Per batch, the
paper's update order (eq. 9 and the text below it), then the fusion step:

1. ``autoencoder``: encoders + decoders on ``alpha * L_fal + (1 - alpha) * L_rl`` (eq. 3, 6);
2. ``discriminator``: D on ``0.5 * L_tal`` (eq. 4), codes detached;
3. ``classifier``: encoders + shared classifier on ``L_cl`` (eq. 8);
4. ``fusion``: fusion network + decision module (eq. 16) on the fused prediction's MSE, and, in the
   paper ("trained end to end"), the encoders too.

``variant="authors_code"`` switches to the released code's behaviour (MODEL-NOTES.md): only the fusion
network and decision module updated by the fusion loss, summed L1 reconstruction, audio as the default
target, Adam betas (0.5, 0.999), step order autoencoder -> classifier -> discriminator, summed L1
between the softmax output and the one-hot label for the classifier and fusion losses, and the code's
GFN (``gfn_code``). Every one of those is also a separate option, so ablating one difference at a time
is possible.

Missing modality (``batch.present[m]`` False): policy ``"zero_code"``: the modality's code is replaced by
zeros (the centre of the tanh code space) before the classifier and the fusion network, and the sample
is left out of that modality's adversarial, reconstruction and classification terms.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from pydantic import Field, model_validator
from torch import Tensor, nn

from models.base import MODALITIES, AffectModel, Batch, ModelConfig
from models.fusion import get_fusion
from models.registry import register_model

_EPS = 1e-7


class ARGFConfig(ModelConfig):
    variant: Literal["paper", "authors_code"] = "paper"
    target: Literal["text", "audio", "video"] | None = None  # None: text (paper) / audio (authors' code)
    k: int = 50
    dropout: float = 0.1
    lr: float = 1e-3
    weight_decay: float = 0.0
    # The paper's lambda (eq. 9) and the code's alpha are the same trade-off.
    alpha: float = 0.01
    w: float = 1.0  # weight of both adversarial losses (eq. 3-4)
    # Table 5 ablations.
    adversarial: bool = True
    classifier: bool = True
    decoder: bool = True
    fusion: str | None = None  # None: "gfn" (paper) / "gfn_code" (authors' code); any registered fusion
    # Below: None = decided by ``variant``.
    reconstruction: Literal["l2", "l1_sum"] | None = None
    cls_loss: Literal["l2", "ce", "l1_sum"] | None = None
    fusion_loss: Literal["mse", "ce", "l1_sum"] | None = None
    end_to_end: bool | None = None
    betas: tuple[float, float] | None = None
    # Honest regularisers against the leaked training-video features (docs/argf.md, last section):
    # training-mode only, on the encoders' inputs (the reconstruction target stays clean). 0 = off.
    input_noise: float = Field(0.0, ge=0.0)  # std of Gaussian noise added to the (standardised) inputs
    input_dropout: float = Field(0.0, ge=0.0, lt=1.0)  # feature dropout on the inputs (inverted scaling)
    # Modality dropout (ModDrop, Neverova et al. 2015): per training sample, each modality is marked missing
    # with this probability (never all of them) for every update step of the batch, so no step can lean on
    # one modality whose training-video features leak (video: ~90% train vs ~52% unseen). 0 = off.
    modality_dropout: float = Field(0.0, ge=0.0, lt=1.0)

    @model_validator(mode="after")
    def _resolve_variant(self) -> ARGFConfig:
        paper = self.variant == "paper"
        defaults = {
            "target": "text" if paper else "audio",
            "reconstruction": "l2" if paper else "l1_sum",
            "cls_loss": "l2" if paper else "l1_sum",
            "fusion_loss": "mse" if paper else "l1_sum",
            "fusion": "gfn" if paper else "gfn_code",
            "end_to_end": paper,
            "betas": (0.9, 0.999) if paper else (0.5, 0.999),
        }
        for key, value in defaults.items():
            if getattr(self, key) is None:
                object.__setattr__(self, key, value)
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {self.alpha}")
        return self


def encoder(d: int, k: int, dropout: float) -> nn.Sequential:
    """d > 10d > 10k > k > k (MODEL-NOTES / Fig. 3), tanh code."""
    layers: list[nn.Module] = []
    for a, b in ((d, 10 * d), (10 * d, 10 * k), (10 * k, k)):
        layers += [nn.Linear(a, b), nn.Dropout(dropout), nn.BatchNorm1d(b), nn.LeakyReLU()]
    return nn.Sequential(*layers, nn.Linear(k, k), nn.Tanh())


def decoder(k: int, d: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(k, 512), nn.Dropout(0.5), nn.LeakyReLU(0.2),
        nn.Linear(512, 64), nn.Dropout(0.5), nn.BatchNorm1d(64), nn.LeakyReLU(0.2),
        nn.Linear(64, d), nn.Tanh(),
    )


def discriminator(k: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(k, 64), nn.LeakyReLU(0.2), nn.Linear(64, 16), nn.Tanh(), nn.Linear(16, 1), nn.Sigmoid()
    )


def classifier(k: int, n_classes: int, dropout: float) -> nn.Sequential:
    # Softmax is applied in the losses; the module returns logits.
    return nn.Sequential(
        nn.BatchNorm1d(k), nn.Dropout(dropout), nn.Linear(k, k), nn.Tanh(), nn.Dropout(dropout),
        nn.Linear(k, n_classes),
    )


def decision(in_dim: int, n_classes: int) -> nn.Sequential:
    """Eq. 16: normalisation, then dense layers activated by tanh, tanh, softmax (softmax in the loss)."""
    return nn.Sequential(
        nn.BatchNorm1d(in_dim), nn.Linear(in_dim, 50), nn.Tanh(), nn.Linear(50, 50), nn.Tanh(),
        nn.Linear(50, n_classes),
    )


def _masked_mean(per_sample: Tensor, weight: Tensor) -> Tensor:
    return (per_sample * weight).sum() / weight.sum().clamp_min(1.0)


@register_model("argf")
class ARGF(AffectModel):
    Config = ARGFConfig
    input_kind = "utterance"
    missing_policy = "zero_code"
    # Search space from the authors' code (MODEL-NOTES). Keys that are not ARGFConfig fields
    # (batch_size) belong to the trainer's config.
    search_space: ClassVar[dict[str, list | tuple]] = {
        "k": [50, 100, 150],
        "dropout": (0.0, 0.9),
        "lr": [1e-4, 1e-3, 1e-2],
        "batch_size": [8, 16, 32],
        "weight_decay": [0.0, 1e-4, 1e-3, 1e-2],
        "alpha": [0.001, 0.01, 0.05],
    }
    cfg: ARGFConfig

    def __init__(self, cfg: ARGFConfig, *, dims: dict[str, int], n_classes: int) -> None:
        super().__init__(cfg, dims=dims, n_classes=n_classes)
        missing = [m for m in MODALITIES if m not in dims]
        if missing or len(dims) != 3:
            raise ValueError(f"ARGF needs exactly text, audio and video inputs; got {sorted(dims)}")
        k, p = cfg.k, cfg.dropout
        self.target: str = cfg.target  # type: ignore[assignment]
        self.sources = [m for m in self.modalities if m != self.target]
        self.encoders = nn.ModuleDict({m: encoder(dims[m], k, p) for m in self.modalities})
        self.decoders = nn.ModuleDict({m: decoder(k, dims[m]) for m in self.modalities}) if cfg.decoder else None
        self.discriminator = discriminator(k) if cfg.adversarial else None
        self.classifier = classifier(k, n_classes, p) if cfg.classifier else None
        self.fusion = get_fusion(cfg.fusion, k=k, modalities=self.modalities, dropout=p)
        self.decision = decision(self.fusion.out_dim, n_classes)

    # ------------------------------------------------------------------ forward
    def _present(self, batch: Batch, m: str) -> Tensor:
        return batch.presence(m)

    def _perturb(self, x: Tensor) -> Tensor:
        """Input noise / feature dropout, in training mode only (``input_noise``, ``input_dropout``)."""
        if not self.training:
            return x
        if self.cfg.input_noise > 0:
            x = x + self.cfg.input_noise * torch.randn_like(x)
        if self.cfg.input_dropout > 0:
            x = nn.functional.dropout(x, self.cfg.input_dropout, training=True)
        return x

    def encode(self, batch: Batch) -> dict[str, Tensor]:
        """Codes [B, k] per modality; a missing modality's code is zero (``zero_code``)."""
        codes = {}
        for m in self.modalities:
            pres = self._present(batch, m).unsqueeze(-1) > 0
            # torch.where, not a product: a missing row may hold NaN (null in the store)
            x = self._perturb(torch.where(pres, batch.x[m], torch.zeros_like(batch.x[m])))
            z = self.encoders[m](x)
            codes[m] = torch.where(pres, z, torch.zeros_like(z))
        return codes

    def fuse(self, codes: dict[str, Tensor]) -> dict[str, Tensor]:
        fused, extras = self.fusion(codes)
        return {"logits": self.decision(fused), **extras}

    def forward(self, batch: Batch) -> dict[str, Tensor]:
        codes = self.encode(batch)
        out = self.fuse(codes)
        out["embedding"] = torch.cat([codes[m] for m in self.modalities], dim=-1)
        return out

    # ------------------------------------------------------------------ losses
    def _label_loss(self, logits: Tensor, y: Tensor, kind: str, weight: Tensor | None = None) -> Tensor:
        """'l2' = ||softmax - onehot||_2 per sample (eq. 8), 'mse' = mean squared error (the paper's
        fusion loss), 'ce' = cross-entropy, all averaged over (present) samples; 'l1_sum' = summed
        |softmax - onehot| over the batch (the authors' code, L1Loss(size_average=False))."""
        weight = torch.ones_like(y, dtype=logits.dtype) if weight is None else weight
        if kind == "ce":
            return _masked_mean(nn.functional.cross_entropy(logits, y, reduction="none"), weight)
        diff = torch.softmax(logits, dim=-1) - nn.functional.one_hot(y, self.n_classes).to(logits.dtype)
        if kind == "l1_sum":
            return (diff.abs().sum(-1) * weight).sum()
        if kind == "l2":
            return _masked_mean(diff.pow(2).sum(-1).add(_EPS).sqrt(), weight)
        return _masked_mean(diff.pow(2).mean(-1), weight)

    def loss(self, batch: Batch, out: dict[str, Tensor]) -> Tensor:
        """The fusion loss on the fused prediction (what the trainer reports as train/valid loss)."""
        return self._label_loss(out["logits"], batch.y, self.cfg.fusion_loss)  # type: ignore[arg-type]

    def adversarial_losses(self, codes: dict[str, Tensor], batch: Batch) -> tuple[Tensor, Tensor]:
        """(L_fal, L_tal) of eq. 3-4, each averaged over the present samples of each modality."""
        assert self.discriminator is not None
        w = self.cfg.w

        def mean_log(m: str, fake_as_true: bool) -> Tensor:
            d = self.discriminator(codes[m]).squeeze(-1).clamp(_EPS, 1 - _EPS)  # type: ignore[misc]
            return _masked_mean(torch.log(d if fake_as_true else 1 - d), self._present(batch, m))

        fal = -w * sum(mean_log(m, True) for m in self.sources)
        tal = -w * (sum(mean_log(m, False) for m in self.sources) + mean_log(self.target, True))
        return fal, tal  # type: ignore[return-value]

    def reconstruction_loss(self, codes: dict[str, Tensor], batch: Batch) -> Tensor:
        """Eq. 6: sum over modalities of ||x~ - x||_2 (mean over samples); code: summed L1."""
        assert self.decoders is not None
        total = torch.zeros((), device=batch.y.device)
        for m in self.modalities:
            pres = self._present(batch, m)
            x = torch.where(pres.unsqueeze(-1) > 0, batch.x[m], torch.zeros_like(batch.x[m]))
            err = self.decoders[m](codes[m]) - x
            if self.cfg.reconstruction == "l2":
                total = total + _masked_mean(err.pow(2).sum(-1).add(_EPS).sqrt(), pres)
            else:
                total = total + (err.abs().sum(-1) * pres).sum()
        return total

    def classification_loss(self, codes: dict[str, Tensor], batch: Batch) -> Tensor:
        """Eq. 8: the shared classifier on each modality's code, summed over modalities."""
        assert self.classifier is not None
        return sum(  # type: ignore[return-value]
            self._label_loss(self.classifier(codes[m]), batch.y, self.cfg.cls_loss, self._present(batch, m))  # type: ignore[arg-type]
            for m in self.modalities
        )

    # ------------------------------------------------------------------ optimisation
    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Which parameters each update step trains (also what the tests check)."""
        enc = list(self.encoders.parameters())
        fus = list(self.fusion.parameters()) + list(self.decision.parameters())
        groups: dict[str, list[nn.Parameter]] = {"fusion": (enc if self.cfg.end_to_end else []) + fus}
        if self.decoders is not None or self.discriminator is not None:
            groups["autoencoder"] = enc + (list(self.decoders.parameters()) if self.decoders is not None else [])
        if self.discriminator is not None:
            groups["discriminator"] = list(self.discriminator.parameters())
        if self.classifier is not None:
            groups["classifier"] = enc + list(self.classifier.parameters())
        return groups

    def make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        cfg = self.cfg
        return {
            name: torch.optim.Adam(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)  # type: ignore[arg-type]
            for name, params in self.parameter_groups().items()
        }

    def step_order(self) -> list[str]:
        if self.cfg.variant == "authors_code":
            order = ["autoencoder", "classifier", "discriminator", "fusion"]
        else:
            order = ["autoencoder", "discriminator", "classifier", "fusion"]
        return [s for s in order if s in self.parameter_groups()]

    def _update(self, loss: Tensor, opt: torch.optim.Optimizer) -> float:
        # Zero every gradient, not only the optimiser's: earlier steps leave gradients on other modules
        # (e.g. L_fal reaches D) that must not leak into the next step.
        self.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        self.zero_grad(set_to_none=True)
        return float(loss.detach())

    def step_autoencoder(self, batch: Batch, opt: torch.optim.Optimizer) -> float:
        codes = self.encode(batch)
        a = self.cfg.alpha
        loss = torch.zeros((), device=batch.y.device)
        if self.discriminator is not None:
            loss = loss + a * self.adversarial_losses(codes, batch)[0]
        if self.decoders is not None:
            # Without adversarial training the reconstruction keeps its (1 - alpha) weight, as in eq. 9.
            loss = loss + (1 - a) * self.reconstruction_loss(codes, batch)
        return self._update(loss, opt)

    def step_discriminator(self, batch: Batch, opt: torch.optim.Optimizer) -> float:
        with torch.no_grad():
            codes = self.encode(batch)
        return self._update(0.5 * self.adversarial_losses(codes, batch)[1], opt)

    def step_classifier(self, batch: Batch, opt: torch.optim.Optimizer) -> float:
        return self._update(self.classification_loss(self.encode(batch), batch), opt)

    def step_fusion(self, batch: Batch, opt: torch.optim.Optimizer) -> float:
        if self.cfg.end_to_end:
            codes = self.encode(batch)
        else:
            with torch.no_grad():
                codes = self.encode(batch)
        return self._update(self.loss(batch, self.fuse(codes)), opt)

    def drop_modalities(self, batch: Batch) -> Batch:
        """``modality_dropout``: random modalities marked missing per sample (training only), with the
        one missing-modality protocol (:func:`models.modalities.keep_mask`)."""
        if not self.training:
            return batch
        return batch.drop_modalities(self.modalities, self.cfg.modality_dropout)

    def training_step(self, batch: Batch, optimizers: dict[str, torch.optim.Optimizer]) -> dict[str, float]:
        batch = self.drop_modalities(batch)
        steps = {
            "autoencoder": self.step_autoencoder,
            "discriminator": self.step_discriminator,
            "classifier": self.step_classifier,
            "fusion": self.step_fusion,
        }
        logs = {f"loss_{name}": steps[name](batch, optimizers[name]) for name in self.step_order()}
        logs["loss"] = logs["loss_fusion"]
        return logs
