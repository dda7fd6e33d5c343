"""Distribution tiers a user can trust (docs/design.md §5.4), measured on seeded trees of
fresh random draws written by the real writer and read through `drift`.

With no change at all, at most 5% of comparisons may be WARN or worse at any sample size;
a 0.5 sd mean shift must be flagged in at least 90% of comparisons from n = 300 on, a
1 sd shift from n = 50 on. `bench/calibration.py` builds the trees (the same code, more
of them, for the figures in docs/design.md); the seeds are fixed, so the counts are too.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from calibration import flagged_shares, write_tree

TARGETS, DISTRIBUTIONS = 10, 6  # 360 no-change comparisons per size: 10 x 6 x 2 runs x 3 kinds


@pytest.fixture(scope="module")
def no_change(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("no_change")
    write_tree(root, (10, 30, 100, 300, 1000, 5000), TARGETS, DISTRIBUTIONS, shift=0.0, seed=1)
    return flagged_shares(root, ("run2", "run3"))


def test_no_change_is_flagged_in_at_most_five_percent_of_comparisons_at_every_n(no_change) -> None:
    assert sorted(no_change) == [10, 30, 100, 300, 1000, 5000]
    for size, (count, share) in no_change.items():
        assert count == TARGETS * DISTRIBUTIONS * 2 * 3, size
        assert share <= 0.05, (size, share)
    # n = 10 is below drift.min_samples: LOW_N, never flagged
    assert no_change[10][1] == 0.0


@pytest.mark.parametrize(("shift", "sizes"), [(0.5, (300, 1000)), (1.0, (50, 100, 300))])
def test_a_mean_shift_is_flagged_from_the_sizes_that_can_show_it(tmp_path: Path, shift: float, sizes) -> None:
    write_tree(tmp_path, sizes, TARGETS // 2, DISTRIBUTIONS, shift=shift, seed=2)
    for size, (_, share) in flagged_shares(tmp_path).items():
        assert share >= 0.90, (shift, size, share)


def test_categorical_samples_keep_the_same_promise(tmp_path: Path) -> None:
    """Text samples: no change flagged at most 5% of the time at every n; a 0.2 move of share
    (drift.categorical.threshold) flagged in at least 90% of comparisons from n = 300 on
    (bench/calibration.py --categorical measures 93.7% at n = 100 on a larger tree)."""
    write_tree(tmp_path / "same", (30, 100, 1000), TARGETS // 2, DISTRIBUTIONS, shift=0.0, seed=3, categorical=True)
    for size, (count, share) in flagged_shares(tmp_path / "same", ("run2", "run3")).items():
        assert count == TARGETS // 2 * DISTRIBUTIONS * 2 * 3 and share <= 0.05, (size, share)
    write_tree(tmp_path / "moved", (300, 1000), TARGETS // 2, DISTRIBUTIONS, shift=0.2, seed=4, categorical=True)
    for size, (_, share) in flagged_shares(tmp_path / "moved").items():
        assert share >= 0.90, (size, share)
