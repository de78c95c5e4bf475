"""CLI options generated from the typed configs: every field becomes an option with its type, choices,
help and default taken from the config class (written once), and only the options given override."""

from __future__ import annotations

import argparse
from typing import Literal

import pytest
from pydantic import Field

from affectflow.commands._options import add_config_options, build, given
from flows.config import OrchestrationConfig, RebuildConfig
from pipeline.errors import InputError
from pipeline.provenance import StageConfig
from pipeline.train_config import TrainConfig


class Demo(StageConfig):
    n: int = Field(3, ge=1, description="how many")
    mode: Literal["a", "b"] = "a"
    names: list[str] = Field(default_factory=lambda: ["x"])
    flag: bool = False
    where: str | None = Field(None, json_schema_extra={"cli": "--at"})
    nested: dict = Field(default_factory=dict)


def _parser() -> tuple[argparse.ArgumentParser, list[str]]:
    p = argparse.ArgumentParser()
    return p, add_config_options(p, Demo)


def test_fields_become_typed_options_and_only_given_values_override() -> None:
    p, fields = _parser()
    assert fields == ["n", "mode", "names", "flag", "where"]  # dicts come from config files, not options
    args = p.parse_args(["--n", "5", "--names", "u", "v", "--flag", "--at", "here"])
    assert given(args, fields) == {"n": 5, "names": ["u", "v"], "flag": True, "where": "here"}
    assert given(p.parse_args([]), fields) == {}  # nothing given: the class's defaults stay in force
    assert build(Demo, given(p.parse_args([]), fields)) == Demo()
    with pytest.raises(SystemExit):
        p.parse_args(["--mode", "c"])  # choices from the Literal
    with pytest.raises(InputError, match="invalid options"):
        build(Demo, given(p.parse_args(["--n", "0"]), fields))  # the config's own constraint (ge=1)
    assert "how many (default: 3)" in p.format_help()


def test_every_config_field_is_an_option() -> None:
    p = argparse.ArgumentParser()
    train = add_config_options(p, TrainConfig, skip=("model", "model_cfg"))
    assert set(train) == set(TrainConfig.model_fields) - {"model", "model_cfg"}
    orch = add_config_options(p, OrchestrationConfig, dest_prefix="orch_")
    assert set(orch) == set(OrchestrationConfig.model_fields)
    assert "--workers" in p.format_help() and "--dask-address" in p.format_help()
    rebuild = add_config_options(argparse.ArgumentParser(), RebuildConfig, skip=("corpus",))
    assert {"store", "out", "fusion", "seed", "device", "raw_features"} <= set(rebuild)
