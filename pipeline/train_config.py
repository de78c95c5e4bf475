"""The training config, torch-free so the CLI can build its options from it without importing torch.

:class:`TrainConfig` is the one definition of what decides a training run: the CLI's ``train`` / ``tune``
options are generated from its fields (``affectflow/commands/_options.py``), ``run.json`` saves it, and
``rebuild`` keys its training stages on it.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from pipeline.provenance import StageConfig

LabelKind = Literal["auto", "bin", "class"]
StandardizeMode = Literal["auto", "zscore", "none"]
SelectMetric = Literal["accuracy", "f1_weighted", "f1_macro", "loss"]
Device = Literal["auto", "cpu", "cuda"]


class TrainConfig(StageConfig):
    """Everything that decides a training run (saved in run.json, hashed)."""

    what: ClassVar[str] = "train config"

    model: str = Field(description="registered model name")
    model_cfg: dict = Field(default_factory=dict, description="model config values")
    epochs: int = Field(50, ge=1, description="maximum epochs; the best one is chosen on valid")
    batch_size: int = Field(32, ge=1, description="batch size (utterances, or videos for video-level models)")
    patience: int = Field(10, ge=1, description="early-stopping patience in epochs")
    seed: int = Field(0, description="random seed (python, numpy, torch)")
    select_metric: SelectMetric = Field("accuracy", description="valid metric for early stopping")
    label: LabelKind = Field("auto", description="labels to train on (auto: class labels when present)")
    standardize: StandardizeMode = Field("auto", description="per-modality standardisation on train statistics")
    modalities: list[str] | None = Field(None, description="only these modalities (default: all of the features)")
    threads: int = Field(1, ge=1, description="torch CPU threads (1 = deterministic)")
    device: Device = Field("auto", description="where to train: auto (CUDA when available), cpu or cuda")

    def per_modality(self, modality: str) -> TrainConfig:
        """This config for a model trained alone on one modality (the UCLN context networks)."""
        return TrainConfig(**{**self.model_dump(), "model_cfg": {**self.model_cfg, "modality": modality},
                              "modalities": [modality]})
