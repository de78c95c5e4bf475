"""One exception family, so the CLI can turn any expected failure into one clear line and exit 2."""

from __future__ import annotations

from pathlib import Path


class AffectflowError(Exception):
    """An expected, user-facing failure: bad input, missing file, inconsistent store."""

    def __init__(self, message: str, *, path: str | Path | None = None) -> None:
        self.path = None if path is None else str(path)
        super().__init__(f"{self.path}: {message}" if self.path else message)


class InputError(AffectflowError):
    """The input file is missing, malformed, or its content is inconsistent."""


class UnsafePickleError(InputError):
    """A pickle referenced a global outside the allow-list; nothing from it was executed."""


class StoreError(AffectflowError):
    """A feature set on disk is missing, half-written, or its metadata does not match its data."""


class SplitError(AffectflowError):
    """A split was requested that the store does not have, or a split name is unknown."""


class ItemError(AffectflowError):
    """A single item (video, segment, modality) failed; the caller quarantines it and goes on."""

    def __init__(self, message: str, *, item: str, stage: str, modality: str | None = None) -> None:
        self.item, self.stage, self.modality = item, stage, modality
        where = f"{stage}/{modality}" if modality else stage
        super().__init__(f"[{where}] {item}: {message}")
