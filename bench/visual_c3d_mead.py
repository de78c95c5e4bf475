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
from pipeline.checkpoint import read_history, read_run_info
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


def facet_check(clips: Path, track: FaceTrackConfig, segs: tuple[float, ...] = (0.5, 0.65, 0.8, 1.0, 1.3, 1.6, 2.0)
                ) -> dict:
    """Leave-one-actor-out accuracy of logistic regression (C = 1, standardised on train) on per-segment
    Facet-style statistics (mean; mean + std), for several segment lengths (66 segments at 1.3 s: one
    segmentation alone is too noisy to compare trackers), and the mean over them."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    ex = FacetExtractor(FacetConfig(track=track))
    items, _, _ = mead_corpus(clips, max(segs), "actor")
    whole = pd.DataFrame({"segment_id": ["all"], "start": [np.nan], "end": [np.nan]})
    # one tracking pass per clip, over the whole clip, pooled below onto each segmentation
    timed = {it.item_id: ex.extract(MediaItem(it.item_id, it.path, whole), None).features for it in items}
    out: dict = {}
    for seg in segs:
        items, rows, names = mead_corpus(clips, seg, "actor")
        y, actor = rows["label_class"].to_numpy(), rows["video_id"].str.split("_").str[0].to_numpy()
        for pool in ("mean", "mean+std"):
            parts = []
            for it in items:
                win = it.segments[["start", "end"]].to_numpy(np.float64)
                stats = [align_to_segments(timed[it.item_id], win, c).values for c in pool.split("+")]
                parts.append(np.concatenate(stats, axis=1))
            x = np.concatenate(parts)
            ok = np.isfinite(x).all(axis=1)
            accs = []
            for a in sorted(set(actor)):
                tr, va = (actor != a) & ok, (actor == a) & ok
                sc = StandardScaler().fit(x[tr])
                clf = LogisticRegression(C=1.0, max_iter=5000).fit(sc.transform(x[tr]), y[tr])
                accs.append(clf.score(sc.transform(x[va]), y[va]))
            out[f"{seg}s/{pool}"] = round(float(np.mean(accs)), 4)
    for pool in ("mean", "mean+std"):
        out[f"mean_over_segmentations/{pool}"] = round(float(np.mean([v for k, v in out.items()
                                                                       if k.endswith(f"s/{pool}")])), 4)
    return {"valid_acc": out, "chance": 0.125, "track": track.model_dump()}


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
        results["facet"] = facet_check(args.clips, track)
        print("facet", results["facet"], flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        if not args.protocols:  # the Facet check only
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(results, indent=1))
            return
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
                hist, info = read_history(run), read_run_info(run)
                accs.append({"seed": seed, "best_epoch": info.best_epoch, "best_valid_acc": info.best_valid.get("accuracy"),
                             "final_valid_acc": hist[-1]["valid_accuracy"],
                             "first_loss": hist[0]["train_loss"], "final_loss": hist[-1]["train_loss"],
                             "train_s": round(time.perf_counter() - t1, 1)})
                print(protocol, accs[-1], flush=True)
            write_c3d_features(run, store=tmp, dataset="mead", crops_feature_set=f"crops-{protocol}",
                               feature_set=f"c3d-{protocol}")
            counts = segs["split"].value_counts().to_dict()
            results[protocol] = {"segments": counts, "classes": len(names), "chance": 1 / len(names),
                                 "crops_s": round(t_crops, 1), "runs": accs,
                                 "mean_valid_acc": float(np.mean([a["best_valid_acc"] for a in accs]))}
    results["args"] = {k: str(v) for k, v in vars(args).items()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
