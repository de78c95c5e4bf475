"""Real MOSI feature stores for the trainer's tests, built straight from the shared files with
``pipeline.store`` (so these tests do not depend on the importers' progress).

The raw bc-LSTM features (text-CNN 100, openSMILE 73, 3D-CNN 100) joined to ``segments.csv`` for video
ids and utterance order; ``split_column`` picks the split policy (``split`` = honest-mosi).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.provenance import hash_file
from pipeline.store import FeatureSet, ModalitySpec, Producer, make_meta, write_feature_set

DIMS = {"text": 100, "audio": 73, "video": 100}


def build_raw_store(
    store: Path,
    mosi_dir: Path,
    *,
    dataset: str = "mosi",
    feature_set: str = "bclstm-raw",
    split_column: str = "split",
    modalities: tuple[str, ...] = ("text", "audio", "video"),
    drop: dict[str, np.ndarray] | None = None,
    keep: np.ndarray | None = None,
) -> Path:
    """Write ``store/dataset/feature_set.parquet``; ``drop[m]`` = bool rows where m is missing (null
    cells); ``keep`` = bool rows to write at all (a set that lacks segments)."""
    npz_path = mosi_dir / "bclstm_raw_features.dev.npz"
    z = np.load(npz_path, allow_pickle=False)
    seg = pd.read_csv(mosi_dir / "segments.csv").set_index("segment_id")
    ids = z["segment_id"].astype(str)
    rows = seg.loc[ids]
    segments = pd.DataFrame(
        {
            "video_id": rows["video_id"].to_numpy(),
            "segment_id": ids,
            "segment_index": rows["segment_index"].to_numpy(),
            "start": rows["start"].to_numpy(),
            "end": rows["end"].to_numpy(),
            "split": z[split_column].astype(str),
            "label_bin": z["label_bin"].astype(np.int8),
            "score": z["sentiment_score"].astype(np.float32),
        }
    )
    meta = make_meta(
        dataset=dataset,
        feature_set=feature_set,
        modalities={m: ModalitySpec(kind="vector", dim=DIMS[m]) for m in modalities},
        producer=Producer.of("importer", "test-npz", {"split_column": split_column}),
        source_hash=hash_file(npz_path)[:16],
    )
    fs = FeatureSet(meta, segments, {m: z[m].astype(np.float32) for m in modalities}, dict(drop or {}))
    if keep is not None:
        fs = fs.take(np.flatnonzero(keep))
    return write_feature_set(store, fs)


def majority_rate(store: Path, dataset: str = "mosi", feature_set: str = "bclstm-raw", split: str = "valid") -> float:
    """Accuracy of always predicting the split's most frequent binary label: the floor a model must clear."""
    from pipeline.store import read_feature_set

    y = read_feature_set(store, dataset, feature_set, splits=[split]).segments["label_bin"].to_numpy(float)
    return float(max(y.mean(), 1 - y.mean()))


# Every zoo model clears the majority rate by 14-16 points after one epoch on MOSI (0.7625-0.7833 vs 0.6208);
# a model that learned nothing (shuffled labels, a dropped input) sits at the majority rate.
MARGIN_OVER_MAJORITY = 0.10

