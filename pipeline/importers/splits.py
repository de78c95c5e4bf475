"""Split policies for the legacy padded layout: which split each (section, video position) goes to.

The padded pickle has two sections, ``train`` and ``test``, each a list of videos. A policy maps every
video position to ``train`` / ``valid`` / ``test``. Why two MOSI policies (see ../shared/data/README.md):
the published features of the 62 training videos were produced by networks trained on their labels, so
a validation split cut from them (ARGF's) selects nothing; ``honest-mosi`` validates on 10 of the clean
test-section videos instead and keeps the other 21 held out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pipeline.errors import SplitError

# Positions (in the pickle's test section) of the 10 test videos used as the honest validation split.
HONEST_MOSI_VALID_POSITIONS = (9, 16, 18, 20, 22, 23, 26, 27, 29, 30)
HONEST_MOSI_VALID_VIDEOS = (
    "Nzq88NnDkEk", "cM3Yna7AavY", "I5y0__X72p0", "ZUXBRvtny7o", "03bSnISJMiM",
    "Dg_0XKD0Mf4", "BXuRRbG0Ugk", "Jkswaaud0hk", "0h-zjBukYpk", "vvZ4IcEtiZc",
)
MOSI_TRAIN_VIDEOS, MOSI_TEST_VIDEOS = 62, 31
ARGF_MOSI_N_TRAIN = 49  # training videos 0-48 train, 49-61 valid (the paper's code)


@dataclass(frozen=True)
class SplitPolicy:
    name: str
    description: str
    assign: Callable[[str, int], str]  # (section, position) -> split
    n_videos: tuple[int, int] | None = None  # (train, test) section sizes the policy is defined for

    def check(self, n_train: int, n_test: int, origin: str) -> None:
        if self.n_videos is None:
            return
        want_train, want_test = self.n_videos
        # The test section may be absent (test keys are optional in the layout).
        if n_train != want_train or n_test not in (0, want_test):
            raise SplitError(
                f"split policy {self.name!r} is defined for {want_train} train-section and {want_test} "
                f"test-section videos, the file has {n_train} and {n_test}",
                path=origin,
            )

    def known_test_positions(self) -> tuple[int, ...] | None:
        """Test-section positions whose video ids a MOSI segments table lists (the honest valid set)."""
        return HONEST_MOSI_VALID_POSITIONS if self.name.endswith("-mosi") else None


def _honest_mosi(section: str, pos: int) -> str:
    if section == "train":
        return "train"
    return "valid" if pos in HONEST_MOSI_VALID_POSITIONS else "test"


def _argf_mosi(section: str, pos: int) -> str:
    if section == "train":
        return "train" if pos < ARGF_MOSI_N_TRAIN else "valid"
    return "test"


def _sections(section: str, pos: int) -> str:
    return section


POLICIES: dict[str, SplitPolicy] = {
    "honest-mosi": SplitPolicy(
        "honest-mosi",
        "train = all train-section videos; valid = test-section positions "
        f"{list(HONEST_MOSI_VALID_POSITIONS)}; test = the other test-section videos",
        _honest_mosi,
        (MOSI_TRAIN_VIDEOS, MOSI_TEST_VIDEOS),
    ),
    "argf-mosi": SplitPolicy(
        "argf-mosi",
        f"the ARGF paper's: train-section videos 0-{ARGF_MOSI_N_TRAIN - 1} train, the rest valid; "
        "test section test (its valid split leaks labels: comparison only)",
        _argf_mosi,
        (MOSI_TRAIN_VIDEOS, MOSI_TEST_VIDEOS),
    ),
    "sections": SplitPolicy(
        "sections", "train section -> train, test section -> test (no validation split)", _sections
    ),
}


def get_policy(name: str, origin: str | None = None) -> SplitPolicy:
    try:
        return POLICIES[name]
    except KeyError:
        raise SplitError(f"unknown split policy {name!r}; known: {sorted(POLICIES)}", path=origin) from None
