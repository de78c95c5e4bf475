"""Build the embedded default corpus ``data/corpus/`` from GRID clips (CC BY 4.0).

    .venv/bin/python data/make_grid_corpus.py SRC_DIR [--dst data/corpus]

Copies every ``*.mpg`` (and ``*.align`` word-timing file) of SRC_DIR and writes ``manifest.csv``. GRID file
names encode the sentence read (Cooke et al. 2006 grammar: command colour preposition letter digit
adverb, e.g. ``bbaf2n`` = "bin blue at f two now"), so the transcript and the labels are *real
properties of what the speaker says*, not annotations we made up: ``label`` = the command word
(bin / lay / place / set); ``score`` = +1 for a polite/neutral closing ("please", "again", "soon") and
-1 for "now" (a stand-in binary label so binary models have something to learn; documented as such).
The LipNet sample ``id2_vcd_swwp2s.mpg`` carries its ``swwp2s.align`` word timings. The split is fixed
here (one clip of each command that has several goes to valid), so every choice is reproducible.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import pandas as pd

COMMAND = {"b": "bin", "l": "lay", "p": "place", "s": "set"}
COLOUR = {"b": "blue", "g": "green", "r": "red", "w": "white"}
PREP = {"a": "at", "b": "by", "i": "in", "w": "with"}
DIGIT = {"z": "zero", **{str(i): w for i, w in enumerate(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])}}
ADVERB = {"a": "again", "n": "now", "p": "please", "s": "soon"}
VALID = {"lbbc2a", "sbia1a", "brbk7n"}


def sentence(code: str) -> list[str]:
    c = code[-6:]
    return [COMMAND[c[0]], COLOUR[c[1]], PREP[c[2]], c[3], DIGIT[c[4]], ADVERB[c[5]]]


def build(src: Path, dst: Path) -> pd.DataFrame:
    (dst / "grid").mkdir(parents=True, exist_ok=True)
    rows = []
    for clip in sorted(src.glob("*.mpg")):
        code = clip.stem[-6:]
        words = sentence(code)
        shutil.copy(clip, dst / "grid" / clip.name)
        align = src / f"{code}.align"
        if align.is_file():
            shutil.copy(align, dst / "grid" / align.name)
        rows.append({
            "path": f"grid/{clip.name}", "video_id": f"grid_{code}", "transcript": " ".join(words),
            "words": f"grid/{align.name}" if align.is_file() else "",
            "label": words[0], "score": -1.0 if words[-1] == "now" else 1.0,
            "split": "valid" if code in VALID else "train", "speaker_source": "GRID via LipNet samples",
        })
    df = pd.DataFrame(rows)
    df.to_csv(dst / "manifest.csv", index=False)
    return df


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src", type=Path, help="folder with GRID .mpg clips (e.g. ../shared/data/clips/grid_lipnet)")
    ap.add_argument("--dst", type=Path, default=Path(__file__).resolve().parent / "corpus")
    args = ap.parse_args()
    print(build(args.src, args.dst).to_string(index=False))
