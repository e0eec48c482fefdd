"""The sn-calibration pitch model against hand-known points of a 105 x 68 m pitch."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sports_image_gen.data.pitch import DRAWN_CLASSES, LINE_CLASSES, key_points, pitch_polylines

# sqrt(9.15^2 - 5.5^2) = sqrt(83.7225 - 30.25) = sqrt(53.4725): where a penalty arc meets its 16.5 m line.
ARC_Y = math.sqrt(53.4725)


def test_line_classes_are_sn_calibrations_28_in_order():
    assert len(LINE_CLASSES) == 28 and len(set(LINE_CLASSES)) == 28
    assert LINE_CLASSES[10] == "Goal left post left "  # the trailing space of the annotation files
    assert list(LINE_CLASSES) == sorted(LINE_CLASSES)  # sn-calibration lists them alphabetically
    assert set(LINE_CLASSES) - set(DRAWN_CLASSES) == {"Goal unknown", "Line unknown"}


def test_key_points_by_hand():
    points = key_points()
    assert len(points) == 39  # sn-calibration's point_dict
    expected = {
        "TL_PITCH_CORNER": (-52.5, -34, 0), "BR_PITCH_CORNER": (52.5, 34, 0),
        "L_PENALTY_MARK": (-41.5, 0, 0), "R_PENALTY_MARK": (41.5, 0, 0),
        "L_PENALTY_AREA_TR_CORNER": (-36, -20.16, 0), "R_GOAL_AREA_BL_CORNER": (47, 9.16, 0),
        "L_GOAL_TL_POST": (-52.5, 3.66, -2.44), "R_GOAL_TL_POST": (52.5, -3.66, -2.44),
        "TL_16M_LINE_AND_PENALTY_ARC_INTERSECTION": (-36, -ARC_Y, 0),
        "BR_16M_LINE_AND_PENALTY_ARC_INTERSECTION": (36, ARC_Y, 0),
    }
    for name, point in expected.items():
        np.testing.assert_allclose(points[name], point, atol=1e-12, err_msg=name)


def test_straight_lines_run_between_their_extremities():
    lines = pitch_polylines(step=1.0)
    assert set(lines) == set(DRAWN_CLASSES)
    np.testing.assert_allclose(lines["Side line top"][[0, -1]], [(-52.5, -34, 0), (52.5, -34, 0)])
    assert len(lines["Side line top"]) == 106  # 105 m in 1 m steps
    np.testing.assert_allclose(lines["Middle line"][[0, -1]], [(0, -34, 0), (0, 34, 0)])
    np.testing.assert_allclose(lines["Big rect. right main"][[0, -1]], [(36, -20.16, 0), (36, 20.16, 0)])
    # Goal frames stand up from the ground: z = -2.44 at the crossbar (z points down).
    np.testing.assert_allclose(lines["Goal left post left "][[0, -1]], [(-52.5, 3.66, -2.44), (-52.5, 3.66, 0)])
    np.testing.assert_allclose(lines["Goal right crossbar"][:, 2], -2.44)
    np.testing.assert_allclose(lines["Goal right crossbar"][[0, -1], 1], [-3.66, 3.66])


def test_circles():
    lines = pitch_polylines(step=0.5)
    central = lines["Circle central"]
    np.testing.assert_allclose(np.linalg.norm(central[:, :2], axis=1), 9.15)
    np.testing.assert_allclose(central[0], central[-1], atol=1e-12)  # closed
    # sign: the direction from the penalty mark towards the centre mark; box_x: the 16.5 m line.
    for name, mark_x, box_x, sign in (("Circle left", -41.5, -36, 1), ("Circle right", 41.5, 36, -1)):
        arc = lines[name]
        np.testing.assert_allclose(np.hypot(arc[:, 0] - mark_x, arc[:, 1]), 9.15, err_msg=name)
        # From the top intersection to the bottom one, outside the penalty area (on the centre mark's side).
        np.testing.assert_allclose(arc[[0, -1], :2], [(box_x, -ARC_Y), (box_x, ARC_Y)], atol=1e-12)
        assert (sign * (arc[:, 0] - box_x) >= -1e-9).all()
        np.testing.assert_allclose(arc[len(arc) // 2, 0], mark_x + sign * 9.15, atol=1e-2)  # the apex


@pytest.mark.parametrize("step", [0.1, 1.0, 7.0])
def test_step_bounds_the_spacing(step):
    for name, line in pitch_polylines(step).items():
        gaps = np.linalg.norm(np.diff(line, axis=0), axis=1)
        assert gaps.max() <= step + 1e-9, name
        assert len(line) >= 2, name


def test_step_must_be_positive():
    with pytest.raises(ValueError, match="step"):
        pitch_polylines(0.0)
