"""Quick check that the UCLN learns on the raw bc-LSTM MOSI features, honest-mosi valid, per modality.

Self-contained (no store, no trainer): groups utterance rows into padded videos, standardises on train,
trains one UCLN per modality and optimiser, prints per-epoch valid accuracy. Usage:
    .venv/bin/python bench/ucln_sanity.py [NPZ] [--epochs 30] [--seed 0]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from models.base import Batch
from models.registry import get_model

DEFAULT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mosi" / "bclstm_raw_features.dev.npz"


def videos(npz: dict, split: str, modality: str, mean: np.ndarray, std: np.ndarray) -> Batch:
    """Rows of one split as padded videos (segment ids are '<video>_<n>'), real utterances first."""
    groups: dict[str, list[tuple[int, int]]] = {}
    for r in np.flatnonzero(npz["split"] == split):
        vid, idx = str(npz["segment_id"][r]).rsplit("_", 1)
        groups.setdefault(vid, []).append((int(idx), int(r)))
    u = max(len(v) for v in groups.values())
    x = np.zeros((len(groups), u, npz[modality].shape[1]), np.float32)
    y = np.zeros((len(groups), u), np.int64)
    mask = np.zeros((len(groups), u), bool)
    for i, items in enumerate(groups.values()):
        order = [r for _, r in sorted(items)]
        x[i, : len(order)] = (npz[modality][order] - mean) / std
        y[i, : len(order)] = npz["label_bin"][order]
        mask[i, : len(order)] = True
    return Batch({modality: torch.from_numpy(x)}, torch.from_numpy(y), mask=torch.from_numpy(mask))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("npz", nargs="?", type=Path, default=DEFAULT)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    torch.set_num_threads(1)
    with np.load(a.npz, allow_pickle=False) as z:
        npz = {k: z[k] for k in z.files}
    tr = npz["split"] == "train"
    for mod in ("text", "audio", "video"):
        mean, std = npz[mod][tr].mean(0), npz[mod][tr].std(0) + 1e-6
        train, valid = videos(npz, "train", mod, mean, std), videos(npz, "valid", mod, mean, std)
        for opt, lr in (("adadelta", None), ("adam", 1e-3)):
            torch.manual_seed(a.seed)
            model = get_model("ucln", dims={mod: npz[mod].shape[1]}, n_classes=2, modality=mod, optimizer=opt, lr=lr)
            opts = model.make_optimizers()
            g = torch.Generator().manual_seed(a.seed)
            accs = []
            for _ in range(a.epochs):
                for idx in torch.randperm(train.size, generator=g).split(20):  # 20 videos, as bc-LSTM
                    model.training_step(Batch({mod: train.x[mod][idx]}, train.y[idx], mask=train.mask[idx]), opts)  # type: ignore[index]
                out, m = model.predict(valid), valid.mask
                accs.append(float((out["logits"][m].argmax(-1) == valid.y[m]).float().mean()))  # type: ignore[index]
            best = int(np.argmax(accs))
            print(f"{mod:5s} {opt:8s} best valid acc {accs[best]:.4f} at epoch {best + 1}; last {accs[-1]:.4f}")


if __name__ == "__main__":
    main()
