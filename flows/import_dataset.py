"""``import_dataset``: the first Prefect flow, a thin wrapper over the pure importers in ``pipeline/``.

One task does the import (validate everything, then one atomic write); a second reads the store back
and returns its summary, so the flow's result is what ``affectflow store info`` shows. Input errors
(:class:`~pipeline.errors.AffectflowError`) are permanent: no retries, the flow run fails with the
importer's one-line message.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from prefect import flow, get_run_logger, task

from flows.ui import run_name
from pipeline.store import read_meta, store_summary

ImportKind = Literal["pickle", "csd", "table", "default"]


@task(name="import-features", retries=0)
def import_features(
    kind: ImportKind,
    path: str | list[str] | None,
    store: str,
    dataset: str,
    feature_set: str | None,
    split_policy: str,
    segments: str | None,
    features: list[str] | None,
    split_column: str,
    default_split: str,
) -> list[str]:
    """Run one importer; returns the written feature-set file(s)."""
    if kind == "pickle":
        from pipeline.importers.legacy_pickle import DEFAULT_FEATURE_SET, import_legacy_pickle

        out = [import_legacy_pickle(_one(path), store=store, dataset=dataset, split_policy=split_policy,
                                    segments=segments, feature_set=feature_set or DEFAULT_FEATURE_SET)]
    elif kind == "csd":
        from pipeline.importers.csd import import_csd

        paths = [path] if isinstance(path, str) else list(path or [])
        out = [import_csd(paths, store=store, dataset=dataset, feature_set=feature_set or "csd",
                          segments=segments, default_split=default_split)]
    elif kind == "table":
        from pipeline.importers.table import import_table

        if segments is None or not features:
            raise ValueError("kind='table' needs segments= and features=")
        out = [import_table(segments, features, store=store, dataset=dataset, feature_set=feature_set or "table",
                            split_column=split_column)]
    elif kind == "default":
        from pipeline.importers.table import import_embedded_default

        out = import_embedded_default(store)
    else:
        raise ValueError(f"unknown import kind {kind!r}; known: pickle, csd, table, default")
    logger = get_run_logger()
    for p in out:
        for n in read_meta(p).extra.get("notes", []):
            logger.warning(n)
        logger.info("wrote %s", p)
    return [str(p) for p in out]


def _one(path: str | list[str] | None) -> str:
    if isinstance(path, list):
        if len(path) != 1:
            raise ValueError(f"expected one path, got {len(path)}")
        return path[0]
    if path is None:
        raise ValueError("path is required")
    return path


@task(name="summarise-store")
def summarise(store: str, written: list[str]) -> list[dict]:
    return [r for r in store_summary(store) if r.get("path") in set(written)]


@flow(name="import_dataset", flow_run_name=run_name("import"), validate_parameters=True)
def import_dataset(
    kind: ImportKind,
    path: str | list[str] | None = None,
    store: str = "store",
    dataset: str = "mosi",
    feature_set: str | None = None,
    split_policy: str = "honest-mosi",
    segments: str | None = None,
    features: list[str] | None = None,
    split_column: str = "split",
    default_split: str = "train",
) -> list[dict]:
    """Import features into a store; returns the `store info` rows of what was written."""
    store = str(Path(store))
    written = import_features(kind, path, store, dataset, feature_set, split_policy, segments, features,
                              split_column, default_split)
    return summarise(store, written)
