"""The configs of the flows, defined once and importable without Prefect or torch (the CLI generates
``affectflow run``'s options from them; the flows, deployments and reports read them)."""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import urlparse

from pydantic import Field, field_validator, model_validator

from models.modalities import MODALITIES
from pipeline.crossfit import CROSS_FIT_DEFAULT
from pipeline.provenance import StageConfig
from pipeline.train_config import Device

# Transports a Dask scheduler listens on (distributed.comm).
DASK_SCHEMES = ("tcp", "tls", "ucx", "ws", "wss")


class OrchestrationConfig(StageConfig):
    """How a flow runs its tasks; saved with the run like every other config."""

    task_runner: Literal["threads", "dask"] = Field("threads", description="how per-video tasks run")
    max_workers: int = Field(2, ge=1, description="threads for the thread runner",
                             json_schema_extra={"cli": "--workers"})
    dask_workers: int = Field(2, ge=1, description="LocalCluster workers when no dask_address is given")
    dask_address: str | None = Field(None, description="scheduler of an existing (multi-node) Dask cluster, "
                                                       "e.g. tcp://HOST:8786 (implies the dask task runner)")
    retries: int = Field(2, ge=0, description="retries of a per-video task on transient errors")
    retry_backoff_s: float = Field(1.0, ge=0, description="first retry delay in seconds; doubles each retry")
    max_error_rate: float = Field(0.5, ge=0, le=1, description="fail extraction above this share of failed videos")

    @model_validator(mode="before")
    @classmethod
    def _address_implies_dask(cls, data: Any) -> Any:
        # {"dask_address": ...} alone (a deployment parameter, `--dask-address`) means "run on that cluster".
        if isinstance(data, dict) and data.get("dask_address") and "task_runner" not in data:
            return {**data, "task_runner": "dask"}
        return data

    @field_validator("dask_address")
    @classmethod
    def _scheduler_address(cls, v: str | None) -> str | None:
        if v is None:
            return v
        try:
            url = urlparse(v)
            ok = url.scheme in DASK_SCHEMES and bool(url.hostname) and url.port is not None
        except ValueError:  # a port that is not a number
            ok = False
        if not ok:
            raise ValueError(f"{v!r} is not a Dask scheduler address such as tcp://HOST:8786")
        return v

    @model_validator(mode="after")
    def _address_needs_dask(self) -> OrchestrationConfig:
        if self.dask_address and self.task_runner != "dask":
            raise ValueError(f"dask_address needs task_runner 'dask', not {self.task_runner!r}")
        return self


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
    cross_fit: int = Field(CROSS_FIT_DEFAULT, description="folds (grouped by video) for the training rows' UCLN "
                                                          "context features; 0 = in-sample, which leaks the "
                                                          "training labels into the fusion model's inputs")
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
