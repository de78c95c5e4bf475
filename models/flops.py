"""Test-time FLOPs by forward hooks (one eval-mode forward), plus the parameter count.

Conventions (stated because published counts rarely do):
* Linear: ``2 * in * out`` per row (one multiply and one add per weight; the bias takes the place of the
  first add). This is twice the multiply-accumulate (MAC) count that tools such as thop report.
* BatchNorm (eval, folded to scale + shift): 2 per element. LeakyReLU / ReLU / Tanh / Sigmoid: 1 per
  element. Dropout: 0 (identity at test time).
* LSTM / GRU: per direction and real time step, the gate products ``2 * G * h * (in + h)`` (G = 4 gates
  for LSTM, 3 for GRU) plus ~``G * h`` element-wise ops for the cell update.
* Tensor arithmetic outside modules (e.g. the GFN's similarities and weighted sums) is counted by the
  module itself through an optional ``functional_flops(batch_size) -> int`` method.
Only what actually runs in the test-time forward is counted (ARGF: encoders, fusion, decision; not the
decoders, discriminator or auxiliary classifier).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from models.base import AffectModel, Batch

_ELEMENTWISE = (nn.LeakyReLU, nn.ReLU, nn.Tanh, nn.Sigmoid)


def _rows(t: Tensor, last: int) -> int:
    return t.numel() // last


def _rnn_flops(mod: nn.RNNBase, inp: Any) -> int:
    x = inp[0]
    steps = int(x.data.shape[0]) if isinstance(x, PackedSequence) else _rows(x, x.shape[-1])
    gates = 4 if isinstance(mod, nn.LSTM) else 3
    h, total, in_size = mod.hidden_size, 0, mod.input_size
    for _layer in range(mod.num_layers):
        per_dir = 2 * gates * h * (in_size + h) + gates * h
        total += per_dir * steps * (2 if mod.bidirectional else 1)
        in_size = h * (2 if mod.bidirectional else 1)
    return total


def _module_flops(mod: nn.Module, inp: Any, out: Any) -> int:
    if isinstance(mod, nn.Linear):
        return 2 * mod.in_features * mod.out_features * _rows(inp[0], mod.in_features)
    if isinstance(mod, nn.modules.batchnorm._BatchNorm):
        return 2 * out.numel()
    if isinstance(mod, _ELEMENTWISE):
        return out.numel()
    if isinstance(mod, nn.RNNBase):
        return _rnn_flops(mod, inp)
    return 0


def count_flops(model: AffectModel, batch: Batch) -> int:
    """Total FLOPs of one test-time (eval mode) forward over ``batch``; divide by ``batch.size`` for
    per-sample FLOPs (or pass a batch of one)."""
    total = 0
    handles = []

    def hook_for(mod: nn.Module) -> Callable[..., None]:
        def hook(m: nn.Module, inp: Any, out: Any) -> None:
            nonlocal total
            total += _module_flops(m, inp, out)
            if hasattr(m, "functional_flops"):
                total += int(m.functional_flops(batch.size))

        return hook

    for mod in model.modules():
        if len(list(mod.children())) == 0 or hasattr(mod, "functional_flops"):
            handles.append(mod.register_forward_hook(hook_for(mod)))
    try:
        with torch.no_grad():
            model.predict(batch)
    finally:
        for h in handles:
            h.remove()
    return total


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def parameter_breakdown(model: nn.Module) -> dict[str, int]:
    """Trainable parameters per top-level child (encoders, decoders, discriminator, ...)."""
    return {name: count_parameters(child) for name, child in model.named_children()}
