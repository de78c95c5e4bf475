"""Quick check that ARGF learns on real MOSI context features, honest-mosi protocol (valid only).

Not the benchmark (that is bench/argf_mosi.py): a self-contained loop so the model can be
checked before the trainer exists. Usage:
    .venv/bin/python bench/argf_sanity.py [PICKLE] [--epochs N] [--patience N] [--standardize]
        [--seeds 0 1 2] [--set key=value ...]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score

from models.base import Batch
from models.registry import get_model
from pipeline.importers.splits import HONEST_MOSI_VALID_POSITIONS
from pipeline.safe_pickle import safe_load

HONEST_VALID = list(HONEST_MOSI_VALID_POSITIONS)
MODS = ("text", "audio", "video")
DEFAULT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mosi" / "unimodal_mosi_2way.dev.pickle"


def load(path: Path) -> dict[str, tuple[dict[str, np.ndarray], np.ndarray]]:
    d = safe_load(path)

    def flat(section: str, videos: list[int] | None) -> tuple[dict[str, np.ndarray], np.ndarray]:
        mask = d[f"{section}_mask"] > 0
        if videos is not None:
            keep = np.zeros(mask.shape[0], bool)
            keep[videos] = True
            mask = mask & keep[:, None]
        x = {m: d[f"{m}_{section}"][mask].astype(np.float32) for m in MODS}
        return x, d[f"{section}_label"][mask].argmax(-1)

    return {"train": flat("train", None), "valid": flat("test", HONEST_VALID)}


def to_batch(x: dict[str, np.ndarray], y: np.ndarray, idx: np.ndarray | None = None) -> Batch:
    sel = slice(None) if idx is None else idx
    return Batch({m: torch.from_numpy(x[m][sel]) for m in MODS}, torch.from_numpy(y[sel]).long())


def standardize(data):
    """Per-feature z-score with the train statistics (as the trainer's ``standardize``)."""
    (xtr, ytr), (xva, yva) = data["train"], data["valid"]
    stats = {m: (xtr[m].mean(0), xtr[m].std(0) + 1e-6) for m in MODS}
    z = lambda x: {m: ((x[m] - stats[m][0]) / stats[m][1]).astype(np.float32) for m in MODS}  # noqa: E731
    return {"train": (z(xtr), ytr), "valid": (z(xva), yva)}


def run(data, cfg: dict, *, epochs: int, batch_size: int, seed: int, patience: int | None = None) -> dict:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    (xtr, ytr), (xva, yva) = data["train"], data["valid"]
    model = get_model("argf", dims={m: xtr[m].shape[1] for m in MODS}, n_classes=2, **cfg)
    opts = model.make_optimizers()
    valid = to_batch(xva, yva)
    hist = []
    t0 = time.perf_counter()
    for _ep in range(epochs):
        model.train()
        perm = rng.permutation(len(ytr))
        for i in range(0, len(perm) - 1, batch_size):  # drop a last batch of one (BatchNorm)
            idx = perm[i : i + batch_size]
            if len(idx) > 1:
                model.training_step(to_batch(xtr, ytr, idx), opts)
        pred = model.predict(valid)["logits"].argmax(-1).numpy()
        hist.append((accuracy_score(yva, pred), f1_score(yva, pred, average="weighted")))
        accs = [h[0] for h in hist]
        if patience is not None and len(hist) - 1 - int(np.argmax(accs)) >= patience:
            break
    best = int(np.argmax([h[0] for h in hist]))
    return {"seed": seed, "last_acc": hist[-1][0], "last_f1": hist[-1][1], "best_epoch": best + 1,
            "best_acc": hist[best][0], "best_f1": hist[best][1], "seconds": time.perf_counter() - t0,
            "curve": [round(h[0], 4) for h in hist]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("pickle", nargs="?", type=Path, default=DEFAULT)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--patience", type=int, default=None, help="stop after N epochs without a better valid acc")
    ap.add_argument("--standardize", action="store_true", help="z-score every feature with train statistics")
    ap.add_argument("--set", nargs="*", default=[], help="ARGF config overrides, key=json-value")
    a = ap.parse_args()
    torch.set_num_threads(1)
    cfg = {kv.split("=", 1)[0]: json.loads(kv.split("=", 1)[1]) for kv in a.set}
    data = load(a.pickle)
    if a.standardize:
        data = standardize(data)
    (xtr, ytr), (xva, yva) = data["train"], data["valid"]
    cat = lambda x: np.concatenate([x[m] for m in MODS], 1)  # noqa: E731
    lr = LogisticRegression(max_iter=2000).fit(cat(xtr), ytr)
    print(f"majority valid acc {max(yva.mean(), 1 - yva.mean()):.4f}; "
          f"logistic regression valid acc {lr.score(cat(xva), yva):.4f}")
    for seed in a.seeds:
        r = run(data, cfg, epochs=a.epochs, batch_size=a.batch_size, seed=seed, patience=a.patience)
        print(json.dumps({"cfg": cfg, **r}))


if __name__ == "__main__":
    main()
