"""Run names and tags, as pure functions (the server-side view is in tests/test_run_visibility.py)."""

from __future__ import annotations

from pathlib import Path

from flows.ui import EMBEDDED_CORPUS, corpus_name


def test_corpus_tag_names_the_corpus_folder(tmp_path: Path) -> None:
    corpus = tmp_path / "clips" / "grid.v2"  # a dot in a folder name is not a file suffix
    corpus.mkdir(parents=True)
    (corpus / "manifest.csv").write_text("path\n")
    assert corpus_name(str(corpus)) == "clips/grid.v2"
    assert corpus_name(str(corpus / "manifest.csv")) == "clips/grid.v2"  # a manifest names its folder
    assert corpus_name(None) == EMBEDDED_CORPUS
