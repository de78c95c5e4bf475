"""CLI options generated from the typed pydantic configs, so each option, its type, choices, help and
default are written once: in the config class. An option is ``--field-name`` (or the field's
``json_schema_extra={"cli": "--name"}``); ``bool`` fields become ``--flag/--no-flag``; ``Literal`` fields get
choices; ``list[...]`` fields take several values; ``dict`` and nested-model fields are not options
(they come from ``--config`` files or dedicated options). Parsed values default to ``None`` (not given),
so the config class's own defaults, or a config file's values, stay in force.

Importing this module imports pydantic only (cold start: no torch, no Prefect).
"""

from __future__ import annotations

import argparse
import types
import typing
from collections.abc import Iterable
from typing import Any, Literal

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from pipeline.errors import InputError


def _flag(name: str, info: FieldInfo) -> str:
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    return str(extra.get("cli") or "--" + name.replace("_", "-"))


def _unwrap(tp: Any) -> Any:
    """``X | None`` -> ``X``."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _kwargs(info: FieldInfo) -> dict[str, Any] | None:
    """argparse keywords for a field's annotation; None: not a command-line option."""
    tp = _unwrap(info.annotation)
    origin = typing.get_origin(tp)
    if origin is Literal:
        return {"choices": list(typing.get_args(tp))}
    if origin in (list, tuple):
        (item,) = typing.get_args(tp)[:1] or (str,)
        return {"nargs": "+", "type": _unwrap(item)} if _unwrap(item) in (int, float, str) else None
    if tp is bool:
        return {"action": argparse.BooleanOptionalAction}
    if tp in (int, float, str):
        return {"type": tp}
    return None  # dict, nested models: from config files or dedicated options


def _help(info: FieldInfo) -> str:
    text = info.description or ""
    default = None if info.is_required() else info.get_default(call_default_factory=True)
    if default is not None:
        text = f"{text} (default: {default})" if text else f"default: {default}"
    return text.replace("%", "%%")


def add_config_options(p: argparse.ArgumentParser | argparse._ArgumentGroup, cls: type[BaseModel], *,
                       skip: Iterable[str] = (), dest_prefix: str = "") -> list[str]:
    """Add one option per field of ``cls`` (but ``skip``); returns the fields added."""
    added = []
    for name, info in cls.model_fields.items():
        kw = None if name in skip else _kwargs(info)
        if kw is None:
            continue
        flag = _flag(name, info)
        if "choices" not in kw and "action" not in kw:
            kw["metavar"] = flag.lstrip("-").replace("-", "_").upper()
        p.add_argument(flag, dest=dest_prefix + name, default=None, help=_help(info), **kw)
        added.append(name)
    return added


def given(args: argparse.Namespace, fields: Iterable[str], dest_prefix: str = "") -> dict[str, Any]:
    """The values of ``fields`` that were given on the command line."""
    out = {}
    for name in fields:
        v = getattr(args, dest_prefix + name, None)
        if v is not None:
            out[name] = v
    return out


def build(cls: type[BaseModel], values: dict[str, Any], what: str = "options") -> Any:
    """``cls(**values)``; a validation error is one clear line (exit 2)."""
    try:
        return cls(**values)
    except ValidationError as e:  # one line: "field: why; field: why"
        why = "; ".join(".".join(map(str, err["loc"])) + (": " if err["loc"] else "")
                        + err["msg"].removeprefix("Value error, ") for err in e.errors())
        raise InputError(f"invalid {what}: {why}") from e
