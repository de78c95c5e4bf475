"""The configs of the flows, defined once and importable without Prefect or torch (the CLI generates
``affectflow run``'s options from them; the flows, deployments and reports read them)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from models.modalities import MODALITIES
from pipeline.provenance import StageConfig
from pipeline.train_config import Device


class OrchestrationConfig(StageConfig):
    """How a flow runs its tasks; saved with the run like every other config."""

    task_runner: Literal["threads", "dask"] = Field("threads", description="how per-video tasks run")
    max_workers: int = Field(2, ge=1, description="threads for the thread runner",
                             json_schema_extra={"cli": "--workers"})
    dask_workers: int = Field(2, ge=1, description="LocalCluster workers when no dask_address is given")
    dask_address: str | None = Field(None, description="scheduler of an existing (multi-node) Dask cluster")
    retries: int = Field(2, ge=0, description="retries of a per-video task on transient errors")
    retry_backoff_s: float = Field(1.0, ge=0, description="first retry delay in seconds; doubles each retry")
    max_error_rate: float = Field(0.5, ge=0, le=1, description="fail extraction above this share of failed videos")


class RebuildConfig(StageConfig):
    """Everything that decides a rebuild; written to ``<out>/report/config.json``."""

    corpus: str | None = Field(None, description="raw-video corpus; None = the embedded MOSI features")
    store: str = Field("store", description="feature store directory")
    out: str = Field("runs", description="runs, report and Prefect state")
    dataset: str = Field("mosi", description="dataset name in the store")
    raw_features: str | None = Field(None, description="raw feature set (default: extracted for a corpus, "
                                                      "bclstm-raw for the embedded features)",
                                     json_schema_extra={"cli": "--feature-set"})
    context_features: str = Field("ucln-context", description="feature set the UCLN context features go to")
    modalities: list[str] = Field(default_factory=lambda: list(MODALITIES), description="modalities to use")
    ucln: dict = Field(default_factory=lambda: {"epochs": 60, "patience": 15, "batch_size": 20})
    ucln_model: dict = Field(default_factory=dict)
    fusion: list[str] = Field(default_factory=lambda: ["argf"], description="fusion models to train")
    fusion_train: dict = Field(default_factory=lambda: {"epochs": 40, "patience": 10, "batch_size": 32})
    fusion_model: dict = Field(default_factory=dict)
    extract: dict | None = None
    seed: int = Field(0, description="training seed")
    split: str = Field("valid", description="split the metrics are reported on")
    device: Device = Field("auto", description="where models train: auto (CUDA when available), cpu or cuda")
    orchestration: OrchestrationConfig = OrchestrationConfig()

    @property
    def raw_set(self) -> str:
        return self.raw_features or ("extracted" if self.corpus else "bclstm-raw")
