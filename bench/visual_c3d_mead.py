"""Does the C3D learn? Train it on MEAD face-crop clips (real emotion labels) and measure.

MEAD here: 3 actors x 8 emotions, one ~4 s clip each. Every clip is cut into ``--seg`` second segments.
Two protocols, both reported:
* ``actor``: train on two actors, valid = the third (unseen person; the honest number),
* ``within``: train on all but the last segment of every clip, valid = the last segment (same people and
  clips: measures capacity to learn, not generalisation).

``--refit N`` sets the face tracker's ``refit_every`` (1 = the 68 landmarks fitted on every frame; the
default carries them by optical flow between fits), so the downstream value of tracked landmarks can be
compared with per-frame fitting. ``--facet`` adds the Facet-style check: per segment, mean and std of the
30 Facet-style features, logistic regression (C = 1, standardised on train), leave-one-actor-out.

    .venv/bin/python bench/visual_c3d_mead.py [--clips ../shared/data/clips] [--epochs 60] [--refit 1] [--facet]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from pipeline.align import align_to_segments
from pipeline.extractors.base import MediaItem
from pipeline.extractors.c3d_crops import FaceCropsConfig
from pipeline.extractors.face import FaceTrackConfig
from pipeline.extractors.facet import FacetConfig, FacetExtractor
from pipeline.store import read_feature_set, write_feature_set
from pipeline.visual_cnn import C3DTrainConfig, build_crop_store, train_c3d, write_c3d_features

ROOT = Path(__file__).resolve().parents[1]


def mead_corpus(clips: Path, seg: float, protocol: str, valid_actor: str = "W011"):
    labels = pd.read_csv(clips / "labels_emotion.csv")
    labels = labels[labels["dataset"] == "MEAD"].reset_index(drop=True)
    names = sorted(labels["emotion"].unique())
    items, rows = [], []
    for r in labels.itertuples():
        path = clips / r.path
        dur = float(pd.read_csv(clips / "manifest.csv").set_index("path").loc[r.path, "duration_s"])
        n = max(1, int(dur // seg))
        segs = []
        for k in range(n):
            sid = f"{path.stem}_{k}"
            split = ("valid" if r.speaker == valid_actor else "train") if protocol == "actor" else (
                "valid" if k == n - 1 else "train")
            segs.append({"segment_id": sid, "segment_index": k, "start": k * seg, "end": (k + 1) * seg})
            rows.append({"segment_id": sid, "video_id": path.stem, "segment_index": k, "start": k * seg,
                         "end": (k + 1) * seg, "split": split, "label_class": names.index(r.emotion),
                         "label_bin": int(r.valence == "pos")})
        items.append(MediaItem(path.stem, path, pd.DataFrame(segs)))
    return items, pd.DataFrame(rows), names


def facet_check(clips: Path, seg: float, track: FaceTrackConfig) -> dict:
    """Leave-one-actor-out accuracy of logistic regression on per-segment Facet-style statistics."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    items, rows, names = mead_corpus(clips, seg, "actor")
    ex = FacetExtractor(FacetConfig(track=track))
    feats = {}
    for it in items:
        tf = ex.extract(it, None)
        win = it.segments[["start", "end"]].to_numpy(np.float64)
        mean, std = align_to_segments(tf, win, "mean"), align_to_segments(tf, win, "std")
        for sid, a, b, ok in zip(it.segments["segment_id"], mean.values, std.values, mean.present, strict=True):
            if ok:
                feats[sid] = np.concatenate([a, b])
    rows = rows[rows["segment_id"].isin(feats)].reset_index(drop=True)
    x = np.stack([feats[s] for s in rows["segment_id"]])
    y = rows["label_class"].to_numpy()
    actor = rows["video_id"].str.split("_").str[0].to_numpy()
    accs = {}
    for a in sorted(set(actor)):
        tr, va = actor != a, actor == a
        sc = StandardScaler().fit(x[tr])
        clf = LogisticRegression(C=1.0, max_iter=5000).fit(sc.transform(x[tr]), y[tr])
        accs[a] = round(float(clf.score(sc.transform(x[va]), y[va])), 4)
    return {"valid_acc_per_held_out_actor": accs, "mean": round(float(np.mean(list(accs.values()))), 4),
            "segments": len(rows), "chance": round(1 / len(names), 4)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clips", type=Path, default=ROOT.parent / "shared" / "data" / "clips")
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--seg", type=float, default=1.3)
    ap.add_argument("--fps", type=float, default=FaceTrackConfig().fps)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "visual_c3d_mead.json")
    ap.add_argument("--protocols", nargs="*", default=["within", "actor"], choices=["within", "actor"])
    ap.add_argument("--refit", type=int, default=FaceTrackConfig().refit_every, help="tracker refit_every")
    ap.add_argument("--facet", action="store_true", help="also the Facet-style logistic-regression check")
    args = ap.parse_args()
    torch.set_num_threads(1)
    track = FaceTrackConfig(fps=args.fps, refit_every=args.refit)
    results: dict = {}
    if args.facet:
        results["facet"] = facet_check(args.clips, args.seg, track)
        print("facet", results["facet"], flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        items, segs, names = mead_corpus(args.clips, args.seg, "within")
        cfg = FaceCropsConfig(track=track, clip_len=16)
        build_crop_store(items, segs, store=tmp, dataset="mead", feature_set="crops-within", cfg=cfg, label_names=names)
        t_crops = time.perf_counter() - t0
        # same crops, the other split: rewrite the split column only
        fs = read_feature_set(tmp, "mead", "crops-within")
        _, actor_segs, _ = mead_corpus(args.clips, args.seg, "actor")
        fs.segments["split"] = actor_segs.set_index("segment_id").loc[fs.segments["segment_id"], "split"].to_numpy()
        fs.meta = fs.meta.model_copy(update={"feature_set": "crops-actor"})
        write_feature_set(tmp, fs)
        for protocol in args.protocols:
            segs = read_feature_set(tmp, "mead", f"crops-{protocol}").segments
            accs = []
            for seed in range(args.seeds):
                t1 = time.perf_counter()
                run = train_c3d(C3DTrainConfig(crops_feature_set=f"crops-{protocol}", epochs=args.epochs, seed=seed),
                                store=tmp, dataset="mead", out_dir=Path(tmp) / f"c3d-{protocol}-{seed}")
                hist = json.loads((run / "c3d.json").read_text())["history"]
                accs.append({"seed": seed, "final_train_acc": hist[-1]["train_acc"], "final_valid_acc": hist[-1]["valid_acc"],
                             "first_loss": hist[0]["train_loss"], "final_loss": hist[-1]["train_loss"],
                             "train_s": round(time.perf_counter() - t1, 1)})
                print(protocol, accs[-1], flush=True)
            write_c3d_features(run, store=tmp, dataset="mead", crops_feature_set=f"crops-{protocol}",
                               feature_set=f"c3d-{protocol}")
            counts = segs["split"].value_counts().to_dict()
            results[protocol] = {"segments": counts, "classes": len(names), "chance": 1 / len(names),
                                 "crops_s": round(t_crops, 1), "runs": accs,
                                 "mean_valid_acc": float(np.mean([a["final_valid_acc"] for a in accs]))}
    results["args"] = {k: str(v) for k, v in vars(args).items()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
