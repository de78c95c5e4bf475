"""CyIN: cyclic informative latent space (Lin et al.), utterance-level form, after MODEL-NOTES.md.

* Token-level information bottleneck: a variational encoder per modality gives ``b_m ~ N(mu_m, s_m)``;
  ``L_tib = sum_m KL_m + beta * sum_{S,T} ||x_T - D_T(b_S)||^2`` over every ordered pair of present
  modalities including S = T (the cyclic S>S, S>T, T>S reconstructions).
* Label-level bottleneck: the fused vector is encoded variationally into ``B``; the head ``P`` reads B;
  ``L_lib = KL_B + beta * |y - P(B)|`` (L1 between the one-hot label and the softmax).
* Cross-modal translation with a cascaded residual autoencoder ``G_{S>T}`` (``cra_blocks`` residual
  autoencoder blocks in a cascade) for every ordered pair: ``L_tran = ||b_T - G(b_S)||^2 +
  ||b_S - G_{T>S}(G_{S>T}(b_S))||^2`` (targets detached, so translation does not collapse the latents).
  A missing modality i is rebuilt as ``b_i = sum_{present j} G_{j>i}(b_j)`` (``rebuild="sum"``, as in
  the notes; ``"mean"`` is offered).
* Fusion: cross-modal attention (MulT-style): each modality's latent queries the others' latents
  (multi-head attention, residual + LayerNorm); the three outputs are concatenated.
* Loss ``task + (1/beta)(L_tib + L_lib) + gamma * L_tran`` with the task loss cross-entropy, trained in
  two stages: ``stage1_epochs`` epochs with gamma = 0 on complete input, then gamma > 0 with random
  missing modalities (rate ``train_missing_rate``, at least one kept) so that one model serves complete
  and incomplete input.

Adaptation to utterance vectors: a modality is one token here (our MOSI features are per utterance), so
MulT's attention over time steps becomes attention over the other modalities' latents (two keys per
query), and the token-level bottleneck acts on that one token.

Epochs: the trainer (``pipeline.train.fit``) has no epoch hook; it validates once per epoch. The model
counts an epoch at the first eval-mode forward after training steps (``on_epoch_end`` does the same
explicitly); the count is a buffer, saved with the weights. ``stage`` is 1 while
``epoch < stage1_epochs``.

``missing_policy = "reconstruct"``: missing latents are rebuilt by the translators (above).
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from models._zoo import drop_modalities, kl_normal, mlp, present
from models.base import AffectModel, Batch, ModelConfig
from models.registry import register_model


class CascadedResidualAE(nn.Module):
    """``h <- h + AE_n(h)`` for n = 1..blocks; each AE is ``k > hidden (tanh) > k``."""

    def __init__(self, k: int, hidden: int, blocks: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Linear(k, hidden), nn.Tanh(), nn.Linear(hidden, k)) for _ in range(blocks)
        )

    def forward(self, h: Tensor) -> Tensor:
        for block in self.blocks:
            h = h + block(h)
        return h


class CrossModalAttention(nn.Module):
    """Query: one modality's latent; keys/values: the other modalities' latents; residual + LayerNorm."""

    def __init__(self, k: int, heads: int, dropout: float, n_keys: int) -> None:
        super().__init__()
        self.k, self.n_keys = k, n_keys
        self.attn = nn.MultiheadAttention(k, heads, dropout=dropout, batch_first=True)
        self.norm = nn.LayerNorm(k)

    def forward(self, query: Tensor, keys: Tensor) -> Tensor:
        att, _ = self.attn(query.unsqueeze(1), keys, keys, need_weights=False)
        return self.norm(query + att.squeeze(1))

    def functional_flops(self, batch_size: int) -> int:
        """For models.flops: nn.MultiheadAttention runs its projections functionally (no Linear hooks).
        q, k, v and output projections, scores, softmax, weighted sum; plus ~5 per element for the
        LayerNorm (not counted by the hooks either)."""
        k, n = self.k, self.n_keys
        proj = 2 * k * k * (1 + 2 * n + 1)
        return batch_size * (proj + 2 * n * k + 3 * n + 2 * n * k + 5 * k)


class CyINConfig(ModelConfig):
    k: int = Field(32, ge=1)  # latent size (divisible by heads)
    hidden: int = Field(64, ge=1)
    heads: int = Field(4, ge=1)
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    lr: float = 1e-3
    beta: float = Field(16.0, gt=0.0)
    gamma: float = Field(10.0, ge=0.0)
    stage1_epochs: int = Field(5, ge=0)
    cra_blocks: int = Field(2, ge=1)
    rebuild: Literal["sum", "mean"] = "sum"
    train_missing_rate: float = Field(0.3, ge=0.0, lt=1.0)


def _masked_mean(v: Tensor, w: Tensor) -> Tensor:
    return (v * w).sum() / w.sum().clamp_min(1.0)


@register_model("cyin")
class CyIN(AffectModel):
    Config = CyINConfig
    input_kind = "utterance"
    missing_policy = "reconstruct"
    search_space: ClassVar[dict[str, list | tuple]] = {
        "k": [16, 32, 64],
        "hidden": [32, 64, 128],
        "dropout": (0.0, 0.5),
        "lr": (1e-4, 1e-2, "log"),
        "beta": [4.0, 16.0, 64.0],
        "gamma": [1.0, 10.0],
        "stage1_epochs": [3, 5, 10],
        "train_missing_rate": [0.1, 0.3, 0.5],
        "batch_size": [16, 32, 64],
    }
    cfg: CyINConfig

    def __init__(self, cfg: CyINConfig, *, dims: dict[str, int], n_classes: int) -> None:
        super().__init__(cfg, dims=dims, n_classes=n_classes)
        if cfg.k % cfg.heads:
            raise ValueError(f"k ({cfg.k}) must be divisible by heads ({cfg.heads})")
        if len(self.modalities) < 2:
            raise ValueError("CyIN needs at least two modalities")
        k, h, p, mods = cfg.k, cfg.hidden, cfg.dropout, self.modalities
        self.encoders = nn.ModuleDict({m: mlp([dims[m], h], dropout=p, last_act=nn.LeakyReLU()) for m in mods})
        self.mu = nn.ModuleDict({m: nn.Linear(h, k) for m in mods})
        self.logvar = nn.ModuleDict({m: nn.Linear(h, k) for m in mods})
        self.token_decoders = nn.ModuleDict({m: mlp([k, h, dims[m]]) for m in mods})
        self.translators = nn.ModuleDict(
            {f"{s}>{t}": CascadedResidualAE(k, h, cfg.cra_blocks) for s in mods for t in mods if s != t}
        )
        self.attention = nn.ModuleDict({m: CrossModalAttention(k, cfg.heads, p, len(mods) - 1) for m in mods})
        self.label_encoder = mlp([len(mods) * k, h], dropout=p, last_act=nn.LeakyReLU())
        self.label_mu = nn.Linear(h, k)
        self.label_logvar = nn.Linear(h, k)
        self.head = nn.Sequential(nn.Dropout(p), nn.Linear(k, n_classes))
        self.register_buffer("epoch", torch.zeros((), dtype=torch.long))
        self._trained_since_eval = False

    # ------------------------------------------------------------------ stages
    @property
    def stage(self) -> int:
        return 1 if int(self.epoch) < self.cfg.stage1_epochs else 2

    def on_epoch_end(self) -> None:
        self.epoch += 1
        self._trained_since_eval = False

    # ------------------------------------------------------------------ forward
    def _sample(self, mu: Tensor, logvar: Tensor) -> Tensor:
        if not self.training:
            return mu
        return mu + torch.randn_like(mu) * (0.5 * logvar).exp()

    def encode(self, batch: Batch) -> dict[str, Tensor]:
        out = {}
        for m in self.modalities:
            pres = present(batch, m).unsqueeze(-1)
            hid = self.encoders[m](batch.x[m] * pres)
            mu, logvar = self.mu[m](hid), self.logvar[m](hid).clamp(-8.0, 8.0)
            out[f"mu_{m}"], out[f"logvar_{m}"] = mu, logvar
            out[f"b_{m}"] = self._sample(mu, logvar)
        return out

    def rebuild_missing(self, b: dict[str, Tensor], pres: dict[str, Tensor]) -> dict[str, Tensor]:
        """Missing latents from the present ones' translations (sum, or mean, over present sources)."""
        full = {}
        for i in self.modalities:
            if bool(pres[i].all()):
                full[i] = b[i]
                continue
            acc = torch.zeros_like(b[i])
            count = torch.zeros_like(pres[i])
            for j in self.modalities:
                if j != i:
                    acc = acc + self.translators[f"{j}>{i}"](b[j]) * pres[j].unsqueeze(-1)
                    count = count + pres[j]
            if self.cfg.rebuild == "mean":
                acc = acc / count.clamp_min(1.0).unsqueeze(-1)
            full[i] = torch.where(pres[i].unsqueeze(-1) > 0, b[i], acc)
        return full

    def fuse(self, b: dict[str, Tensor]) -> Tensor:
        fused = []
        for i in self.modalities:
            kv = torch.stack([b[j] for j in self.modalities if j != i], dim=1)
            fused.append(self.attention[i](b[i], kv))
        return torch.cat(fused, dim=-1)

    def forward(self, batch: Batch) -> dict[str, Tensor]:
        if not self.training and self._trained_since_eval:
            self.on_epoch_end()
        out = self.encode(batch)
        pres = {m: present(batch, m) for m in self.modalities}
        b = self.rebuild_missing({m: out[f"b_{m}"] for m in self.modalities}, pres)
        hid = self.label_encoder(self.fuse(b))
        mu_b, logvar_b = self.label_mu(hid), self.label_logvar(hid).clamp(-8.0, 8.0)
        big_b = self._sample(mu_b, logvar_b)
        out.update({"mu_B": mu_b, "logvar_B": logvar_b, "embedding": mu_b, "logits": self.head(big_b)})
        return out

    # ------------------------------------------------------------------ losses
    def loss(self, batch: Batch, out: dict[str, Tensor]) -> Tensor:
        return nn.functional.cross_entropy(out["logits"], batch.y)

    def token_ib(self, batch: Batch, enc: dict[str, Tensor]) -> Tensor:
        total = torch.zeros((), device=batch.y.device)
        for t in self.modalities:
            wt = present(batch, t)
            total = total + _masked_mean(kl_normal(enc[f"mu_{t}"], enc[f"logvar_{t}"]), wt)
            for s in self.modalities:
                w = wt * present(batch, s)
                err = (self.token_decoders[t](enc[f"b_{s}"]) - batch.x[t]).pow(2).mean(-1)
                total = total + self.cfg.beta * _masked_mean(err, w)
        return total

    def label_ib(self, batch: Batch, out: dict[str, Tensor]) -> Tensor:
        kl = kl_normal(out["mu_B"], out["logvar_B"]).mean()
        onehot = nn.functional.one_hot(batch.y, self.n_classes).to(out["logits"].dtype)
        l1 = (torch.softmax(out["logits"], -1) - onehot).abs().sum(-1).mean()
        return kl + self.cfg.beta * l1

    def translation_loss(self, batch: Batch, enc: dict[str, Tensor]) -> Tensor:
        total = torch.zeros((), device=batch.y.device)
        for s in self.modalities:
            for t in self.modalities:
                if s == t:
                    continue
                w = present(batch, s) * present(batch, t)
                bs, bt = enc[f"b_{s}"], enc[f"b_{t}"]
                fwd = self.translators[f"{s}>{t}"](bs)
                back = self.translators[f"{t}>{s}"](fwd)
                total = total + _masked_mean((fwd - bt.detach()).pow(2).mean(-1), w)
                total = total + _masked_mean((back - bs.detach()).pow(2).mean(-1), w)
        return total

    def objective(self, batch: Batch) -> dict[str, Tensor]:
        """All loss terms for one batch at the current stage (training mode)."""
        stage2 = self.stage == 2
        # Bottleneck and translation terms on the complete batch; the task sees the incomplete one in
        # stage 2 (missing latents rebuilt by the translators).
        enc = self.encode(batch)
        seen = drop_modalities(batch, self.modalities, self.cfg.train_missing_rate) if stage2 else batch
        out = self(seen)
        task = self.loss(seen, out)
        tib, lib = self.token_ib(batch, enc), self.label_ib(seen, out)
        total = task + (tib + lib) / self.cfg.beta
        terms = {"task": task, "tib": tib, "lib": lib}
        if stage2 and self.cfg.gamma > 0:
            tran = self.translation_loss(batch, enc)
            total = total + self.cfg.gamma * tran
            terms["tran"] = tran
        terms["loss"] = total
        return terms

    def training_step(self, batch: Batch, optimizers: dict[str, torch.optim.Optimizer]) -> dict[str, float]:
        opt = optimizers["all"]
        opt.zero_grad(set_to_none=True)
        terms = self.objective(batch)
        terms["loss"].backward()
        opt.step()
        self._trained_since_eval = True
        logs = {k: float(v.detach()) for k, v in terms.items()}
        logs["stage"] = float(self.stage)
        return logs
