"""``rebuild``'s declared stage graph: what each stage reads, what it writes, and its key. No Prefect here.

A :class:`Stage` declares

* ``fn``: the ``module:function`` it runs; the **code** in its key is the import closure of that module
  inside the project (every ``pipeline``/``models``/``flows``/``affectflow`` module it imports, at any
  depth, found by walking ``ast`` imports, lazy ones included, and every module of a package that a
  ``Registry("kind", "package")`` discovers by name), plus the versions of the numeric libraries;
* ``config``: the JSON arguments that decide its result (hashed);
* ``inputs``: name -> content digest (a file set's sha256, a feature set's content identity, or the key
  of the upstream stage that produces it);
* its **output**: a run directory ``<out>/<run_dir>/<key>`` or a feature set staged under
  ``<store>/.stages/<name>/<key>/`` and linked into the store.

The output, published atomically (a temp directory renamed to its keyed name), IS the record: a stage
whose output exists is never recomputed, whatever the timing of a crash (the Prefect cache is only an
index over these outputs). :func:`plan` computes every key before anything runs (``affectflow run --plan``).
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import os
import shutil
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from flows import hooks
from flows.config import RebuildConfig
from pipeline.provenance import hash_files, hash_json, library_versions

PROJECT_PACKAGES = ("pipeline", "models", "flows", "affectflow")
# Libraries whose version changes what a stage computes.
LIBRARIES = ("torch", "numpy", "pandas", "pyarrow", "scikit-learn", "scipy")


def project_root() -> Path:
    import pipeline

    return Path(pipeline.__file__).resolve().parent.parent


# ------------------------------------------------------------------------------------------ code


def module_file(module: str, root: Path) -> Path | None:
    """The source file of a project module (``a.b`` -> ``a/b.py`` or ``a/b/__init__.py``), else None."""
    if module.split(".")[0] not in PROJECT_PACKAGES:
        return None
    base = root.joinpath(*module.split("."))
    for p in (base.with_suffix(".py"), base / "__init__.py"):
        if p.is_file():
            return p
    return None


def _imports(path: Path, module: str, root: Path) -> set[str]:
    """Project modules imported anywhere in ``path`` (top level or inside functions), and their packages."""
    is_pkg = path.name == "__init__.py"
    package = module if is_pkg else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            found.add(target)
            # ``from pipeline import payload``: payload may be a module of its own
            found.update(f"{target}.{a.name}" for a in node.names)
        elif (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Registry" and len(node.args) > 1
              and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str)):
            # Registry("model", "models", ...) imports every module of its package on first lookup
            pkg_dir = root.joinpath(*node.args[1].value.split("."))
            found.update(f"{node.args[1].value}.{p.stem}" for p in pkg_dir.glob("*.py") if p.stem != "__init__")
    out = set()
    for name in found:
        parts = name.split(".")
        out.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))  # a module imports its packages
    return {m for m in out if module_file(m, root) is not None}


def import_closure(modules: Iterable[str], root: Path | None = None) -> list[Path]:
    """Every project source file the modules import, transitively (sorted, relative to ``root``)."""
    root = root or project_root()
    todo, seen = list(modules), set()
    while todo:
        m = todo.pop()
        if m in seen or module_file(m, root) is None:
            continue
        seen.add(m)
        todo.extend(_imports(module_file(m, root), m, root))  # type: ignore[arg-type]
    return sorted({module_file(m, root).relative_to(root) for m in seen})  # type: ignore[union-attr]


@lru_cache(maxsize=64)
def code_digest(modules: tuple[str, ...], root: Path | None = None) -> str:
    """Digest of the import closure's bytes (by relative path) + the tracked library versions."""
    root = root or project_root()
    h = hashlib.sha256()
    for rel in import_closure(modules, root):
        h.update(str(rel).encode())
        h.update((root / rel).read_bytes())
    h.update(hash_json(library_versions(LIBRARIES)).encode())
    return h.hexdigest()[:16]


# ------------------------------------------------------------------------------------------ stages


class Stage(BaseModel):
    """One node of the graph; ``key`` = hash of (name, fn, code, config, inputs)."""

    name: str
    fn: str  # module:function; called as fn(**config, **paths, <dest_arg>=<temp dir>)
    config: dict[str, Any] = {}  # decides the result: hashed
    paths: dict[str, Any] = {}  # where inputs are read from: not hashed (their content is, via inputs)
    inputs: dict[str, str] = {}  # name -> content digest
    dest_arg: str  # the fn argument that receives the (temporary) output location
    output: str  # the keyed, published output directory
    scratch: str  # where it is built first (a hidden .tmp-* directory that a restart removes)
    link: list[str] | None = None  # feature-set stages: [relative file in output, path in the live store]
    label: str = ""  # how logs name it (e.g. train-ucln-text); not part of the key
    run_name: str = ""  # its Prefect task run's name (e.g. context-features-ucln-context); not part of the key
    code: str = ""
    key: str = ""

    def with_key(self) -> Stage:
        code = code_digest((self.fn.partition(":")[0],))
        key = hash_json({"name": self.name, "fn": self.fn, "code": code, "config": self.config, "inputs": self.inputs})
        out = Path(self.output.replace("{key}", key))
        return self.model_copy(update={"code": code, "key": key, "output": str(out)})

    @property
    def done(self) -> bool:
        return Path(self.output).is_dir()


def execute(stage: Stage) -> bool:
    """Make the stage's output exist; returns whether it was computed now (False: it already existed)."""
    final = Path(stage.output)
    computed = False
    if not final.is_dir():
        tmp = Path(stage.scratch) / f".tmp-{stage.name}-{stage.key}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        module, _, name = stage.fn.partition(":")
        getattr(importlib.import_module(module), name)(**stage.config, **stage.paths, **{stage.dest_arg: str(tmp)})
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, final)  # the publication: atomic, and from now on the record
        computed = True
        hooks.reached(f"published:{stage.name}", output=str(final))
    if stage.link:
        _link(final / stage.link[0], Path(stage.link[1]))
    return computed


def _link(src: Path, dst: Path) -> None:
    """Put the published file at its place in the live store (a hard link, swapped in atomically)."""
    from pipeline.writers import folder_writer

    if dst.exists() and os.path.samefile(src, dst):
        return
    with folder_writer(dst.parent):  # the dataset's one writer, like every other write into it
        tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
        tmp.unlink(missing_ok=True)
        try:
            os.link(src, tmp)
        except OSError:  # no hard links here: a copy, still swapped in atomically
            shutil.copyfile(src, tmp)
        os.replace(tmp, dst)


# ------------------------------------------------------------------------------------------ plan


def feature_set_digest(store: Path, dataset: str, feature_set: str) -> str:
    """Content identity of a feature set: what produced it and from what (not its write time)."""
    from pipeline.store import feature_set_path, read_meta

    meta = read_meta(feature_set_path(store, dataset, feature_set))
    return hash_json({"source": meta.source_hash, "producer": meta.producer.config_hash,
                      "modalities": {m: s.model_dump() for m, s in meta.modalities.items()},
                      "rows": meta.n_rows, "lineage": meta.lineage})


def _feature_stage(name: str, fn: str, store: Path, dataset: str, feature_set: str, dest_arg: str, **kw: Any) -> Stage:
    rel = f"{dataset}/{feature_set}.parquet"
    return Stage(name=name, fn=fn, dest_arg=dest_arg, output=str(store / ".stages" / name / "{key}"),
                 scratch=str(store), link=[rel, str(store / rel)], **kw).with_key()


def plan(cfg: RebuildConfig, store: Path, out: Path, raw_digest: str | None = None) -> list[Stage]:
    """Every keyed stage in order. ``raw_digest``: the content digest of extracted raw features (corpus
    mode; the embedded features are the ``ingest`` stage's output instead)."""
    from pipeline.data import device_of
    from pipeline.importers.table import EMBEDDED_DIR
    from pipeline.train_config import TrainConfig

    stages: list[Stage] = []
    if cfg.corpus is None:
        data = sorted(str(p) for p in Path(EMBEDDED_DIR).iterdir() if p.is_file())
        ingest = _feature_stage("ingest", "pipeline.importers.table:import_embedded_default", store, cfg.dataset,
                                cfg.raw_set, "store", inputs={"data": hash_files(data)}, label="ingest",
                                run_name="ingest-embedded")
        stages.append(ingest)
        raw_digest = ingest.key
    assert raw_digest is not None, "corpus mode: extract first, then plan with the raw features' digest"
    # The device is part of the key: results trained on a GPU are not those trained on the CPU.
    device = str(device_of(cfg.device))
    common = {"store": str(store), "dataset": cfg.dataset}
    ucln = TrainConfig(model="ucln", model_cfg=cfg.ucln_model, seed=cfg.seed, device=cfg.device, **cfg.ucln)
    runs = {}
    for m in _modalities(cfg, store, raw_digest, stages):
        s = Stage(name=f"ucln-{m}", label=f"train-ucln-{m}", run_name=f"train-ucln-{m}", fn="pipeline.train:train_stage",
                  config={"config": ucln.per_modality(m).model_dump(mode="json")},
                  paths={**common, "features": cfg.raw_set}, inputs={"features": raw_digest, "device": device},
                  dest_arg="out_dir", output=str(out / f"ucln-{m}" / "{key}"), scratch=str(out)).with_key()
        stages.append(s)
        runs[m] = s
    context = _feature_stage(
        "context", "pipeline.context:write_context_features", store, cfg.dataset, cfg.context_features, "store",
        label="context-features", run_name=f"context-features-{cfg.context_features}",
        config={"dataset": cfg.dataset, "feature_set": cfg.context_features, "cross_fit": cfg.cross_fit},
        paths={"run_dir": {m: s.output for m, s in runs.items()}, "source_store": str(store)},
        inputs={m: s.key for m, s in runs.items()})
    stages.append(context)
    for name in cfg.fusion:
        tcfg = TrainConfig(model=name, model_cfg=cfg.fusion_model.get(name, {}), seed=cfg.seed, device=cfg.device,
                           **cfg.fusion_train)
        stages.append(Stage(name=f"train-{name}", label=f"train-{name}", run_name=f"train-{name}",
                            fn="pipeline.train:train_stage",
                            config={"config": tcfg.model_dump(mode="json")},
                            paths={**common, "features": cfg.context_features},
                            inputs={"features": context.key, "device": device},
                            dest_arg="out_dir", output=str(out / name / "{key}"), scratch=str(out)).with_key())
    return stages


def _modalities(cfg: RebuildConfig, store: Path, raw_digest: str, stages: list[Stage]) -> list[str]:
    """The configured modalities the raw features have (a text-only corpus -> text)."""
    from pipeline.errors import StoreError
    from pipeline.store import feature_set_path, read_meta

    path = feature_set_path(store, cfg.dataset, cfg.raw_set)
    if path.is_file():
        have = list(read_meta(path).modalities)
    elif stages and stages[0].name == "ingest":  # not imported yet: the embedded set has all three
        from models.modalities import MODALITIES

        have = list(MODALITIES)
    else:
        raise StoreError(f"no raw feature set {cfg.raw_set!r} for {cfg.dataset!r}", path=path)
    mods = [m for m in cfg.modalities if m in have]
    if not mods:
        raise StoreError(f"{cfg.dataset}/{cfg.raw_set} has none of the modalities {cfg.modalities} (has {have})")
    return mods


def format_plan(stages: list[Stage], root: Path | None = None) -> str:
    rows = [("stage", "key", "status", "inputs", "code")]
    for s in stages:
        rows.append((s.name, s.key, "cached" if s.done else "to run",
                     ", ".join(f"{k}={v[:8]}" for k, v in s.inputs.items()), s.code))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
