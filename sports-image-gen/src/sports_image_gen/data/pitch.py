"""The SoccerNet-calibration pitch model: FIFA dimensions, the 28 line classes and their 3D polylines.

Same geometry as sn-calibration's ``src/soccerpitch.py`` (``SoccerPitch``): a 105 x 68 m pitch, world origin at the
centre mark, x along the touch lines (towards the right goal), y along the goal lines (the "bottom" touch line, on
the main camera's side, at y = +34), **z pointing down** (the crossbars are at z = -2.44). The class names are the
challenge's own, typos and all: ``'Goal left post left '`` ends with a space in every annotation file.

Each drawable class is a polyline between the two key points of sn-calibration's ``line_extremities``: straight
markings and goal frames are densified, the centre circle is a closed loop and the two penalty arcs run between
their intersections with the 16.5 m lines, bulging towards the centre mark.
"""

from __future__ import annotations

import math

import numpy as np

# Laws of the Game dimensions in metres, as sn-calibration's SoccerPitch class variables.
PITCH_LENGTH = 105.0
PITCH_WIDTH = 68.0
GOAL_LINE_TO_PENALTY_MARK = 11.0
PENALTY_AREA_WIDTH = 40.32
PENALTY_AREA_LENGTH = 16.5
GOAL_AREA_WIDTH = 18.32
GOAL_AREA_LENGTH = 5.5
CENTER_CIRCLE_RADIUS = 9.15
GOAL_HEIGHT = 2.44
GOAL_LENGTH = 7.32

# sn-calibration's SoccerPitch.lines_classes, in its order (the index + 1 is the class id of its segmentation masks).
LINE_CLASSES = (
    "Big rect. left bottom", "Big rect. left main", "Big rect. left top",
    "Big rect. right bottom", "Big rect. right main", "Big rect. right top",
    "Circle central", "Circle left", "Circle right",
    "Goal left crossbar", "Goal left post left ", "Goal left post right",
    "Goal right crossbar", "Goal right post left", "Goal right post right",
    "Goal unknown", "Line unknown", "Middle line",
    "Side line bottom", "Side line left", "Side line right", "Side line top",
    "Small rect. left bottom", "Small rect. left main", "Small rect. left top",
    "Small rect. right bottom", "Small rect. right main", "Small rect. right top",
)
# The two "unknown" classes label annotated pixels that have no place on the model: nothing to draw.
DRAWN_CLASSES = tuple(name for name in LINE_CLASSES if "unknown" not in name)

# sn-calibration's line_extremities_keys: each drawable class runs from its first key point to its second.
LINE_EXTREMITIES = {
    "Big rect. left bottom": ("L_PENALTY_AREA_BL_CORNER", "L_PENALTY_AREA_BR_CORNER"),
    "Big rect. left top": ("L_PENALTY_AREA_TL_CORNER", "L_PENALTY_AREA_TR_CORNER"),
    "Big rect. left main": ("L_PENALTY_AREA_TR_CORNER", "L_PENALTY_AREA_BR_CORNER"),
    "Big rect. right bottom": ("R_PENALTY_AREA_BL_CORNER", "R_PENALTY_AREA_BR_CORNER"),
    "Big rect. right top": ("R_PENALTY_AREA_TL_CORNER", "R_PENALTY_AREA_TR_CORNER"),
    "Big rect. right main": ("R_PENALTY_AREA_TL_CORNER", "R_PENALTY_AREA_BL_CORNER"),
    "Small rect. left bottom": ("L_GOAL_AREA_BL_CORNER", "L_GOAL_AREA_BR_CORNER"),
    "Small rect. left top": ("L_GOAL_AREA_TL_CORNER", "L_GOAL_AREA_TR_CORNER"),
    "Small rect. left main": ("L_GOAL_AREA_TR_CORNER", "L_GOAL_AREA_BR_CORNER"),
    "Small rect. right bottom": ("R_GOAL_AREA_BL_CORNER", "R_GOAL_AREA_BR_CORNER"),
    "Small rect. right top": ("R_GOAL_AREA_TL_CORNER", "R_GOAL_AREA_TR_CORNER"),
    "Small rect. right main": ("R_GOAL_AREA_TL_CORNER", "R_GOAL_AREA_BL_CORNER"),
    "Side line top": ("TL_PITCH_CORNER", "TR_PITCH_CORNER"),
    "Side line bottom": ("BL_PITCH_CORNER", "BR_PITCH_CORNER"),
    "Side line left": ("TL_PITCH_CORNER", "BL_PITCH_CORNER"),
    "Side line right": ("TR_PITCH_CORNER", "BR_PITCH_CORNER"),
    "Middle line": ("T_TOUCH_AND_HALFWAY_LINES_INTERSECTION", "B_TOUCH_AND_HALFWAY_LINES_INTERSECTION"),
    "Goal left crossbar": ("L_GOAL_TR_POST", "L_GOAL_TL_POST"),
    "Goal left post left ": ("L_GOAL_TL_POST", "L_GOAL_BL_POST"),
    "Goal left post right": ("L_GOAL_TR_POST", "L_GOAL_BR_POST"),
    "Goal right crossbar": ("R_GOAL_TL_POST", "R_GOAL_TR_POST"),
    "Goal right post left": ("R_GOAL_TL_POST", "R_GOAL_BL_POST"),
    "Goal right post right": ("R_GOAL_TR_POST", "R_GOAL_BR_POST"),
    "Circle left": ("TL_16M_LINE_AND_PENALTY_ARC_INTERSECTION", "BL_16M_LINE_AND_PENALTY_ARC_INTERSECTION"),
    "Circle right": ("TR_16M_LINE_AND_PENALTY_ARC_INTERSECTION", "BR_16M_LINE_AND_PENALTY_ARC_INTERSECTION"),
}


def key_points() -> dict[str, np.ndarray]:
    """sn-calibration's ``point_dict``: the named 3D points of the pitch model (metres, z down).

    T / B are the top (y < 0) and bottom (y > 0) sides, L / R the left (x < 0) and right goals; a goal's left post
    is the one on the left of someone on the pitch facing that goal.
    """
    half_length, half_width = PITCH_LENGTH / 2, PITCH_WIDTH / 2
    # Where each penalty arc meets its 16.5 m line: dx = 16.5 - 11 = 5.5 m from the mark, dy = sqrt(R^2 - dx^2).
    arc_x = half_length - PENALTY_AREA_LENGTH
    arc_y = math.sqrt(CENTER_CIRCLE_RADIUS ** 2 - (PENALTY_AREA_LENGTH - GOAL_LINE_TO_PENALTY_MARK) ** 2)
    points = {
        "CENTER_MARK": (0, 0, 0),
        "L_PENALTY_MARK": (-half_length + GOAL_LINE_TO_PENALTY_MARK, 0, 0),
        "R_PENALTY_MARK": (half_length - GOAL_LINE_TO_PENALTY_MARK, 0, 0),
        "T_TOUCH_AND_HALFWAY_LINES_INTERSECTION": (0, -half_width, 0),
        "B_TOUCH_AND_HALFWAY_LINES_INTERSECTION": (0, half_width, 0),
        "T_HALFWAY_LINE_AND_CENTER_CIRCLE_INTERSECTION": (0, -CENTER_CIRCLE_RADIUS, 0),
        "B_HALFWAY_LINE_AND_CENTER_CIRCLE_INTERSECTION": (0, CENTER_CIRCLE_RADIUS, 0),
        "TL_16M_LINE_AND_PENALTY_ARC_INTERSECTION": (-arc_x, -arc_y, 0),
        "BL_16M_LINE_AND_PENALTY_ARC_INTERSECTION": (-arc_x, arc_y, 0),
        "TR_16M_LINE_AND_PENALTY_ARC_INTERSECTION": (arc_x, -arc_y, 0),
        "BR_16M_LINE_AND_PENALTY_ARC_INTERSECTION": (arc_x, arc_y, 0),
    }
    for side, sign in (("L", -1), ("R", 1)):
        goal_line = sign * half_length
        for corner, y_sign in (("T", -1), ("B", 1)):
            points[f"{corner}{side}_PITCH_CORNER"] = (goal_line, y_sign * half_width, 0)
        # Area corners: L_/R_ then T/B (side of the pitch) then L/R (goal-line end or pitch end, seen from above).
        for area, length, width in (("PENALTY", PENALTY_AREA_LENGTH, PENALTY_AREA_WIDTH),
                                    ("GOAL", GOAL_AREA_LENGTH, GOAL_AREA_WIDTH)):
            inner = goal_line - sign * length
            ends = {"L": min(goal_line, inner), "R": max(goal_line, inner)}
            for corner, y_sign in (("T", -1), ("B", 1)):
                for end, x in ends.items():
                    points[f"{side}_{area}_AREA_{corner}{end}_CORNER"] = (x, y_sign * width / 2, 0)
        # Posts: the left one is at +y for the left goal (facing -x) and at -y for the right goal (facing +x).
        left_y = -sign * GOAL_LENGTH / 2
        for post, y in (("L", left_y), ("R", -left_y)):
            points[f"{side}_GOAL_T{post}_POST"] = (goal_line, y, -GOAL_HEIGHT)
            points[f"{side}_GOAL_B{post}_POST"] = (goal_line, y, 0)
    return {name: np.array(point, dtype=np.float64) for name, point in points.items()}


def _segment(start: np.ndarray, end: np.ndarray, step: float) -> np.ndarray:
    """Points from ``start`` to ``end`` (both included), evenly spaced at most ``step`` apart."""
    count = max(1, math.ceil(np.linalg.norm(end - start) / step))
    return start + np.linspace(0.0, 1.0, count + 1)[:, None] * (end - start)


def _arc(centre: np.ndarray, start_angle: float, end_angle: float, step: float) -> np.ndarray:
    """Points of the circle of radius 9.15 m around ``centre`` from one angle to the other (both included), on the
    ground, at most ``step`` metres of arc apart."""
    count = max(1, math.ceil(abs(end_angle - start_angle) * CENTER_CIRCLE_RADIUS / step))
    angles = np.linspace(start_angle, end_angle, count + 1)
    return centre + CENTER_CIRCLE_RADIUS * np.stack([np.cos(angles), np.sin(angles), np.zeros_like(angles)], 1)


def pitch_polylines(step: float = 1.0) -> dict[str, np.ndarray]:
    """Each of the 26 drawable classes (``DRAWN_CLASSES``) as an N x 3 world polyline, points at most ``step``
    metres apart (sn-calibration's ``sample_field_points``, which uses 0.1 m on lines and 0.2 m on circles).

    Straight classes run between their two ``LINE_EXTREMITIES``; the centre circle is closed (last point = first);
    each penalty arc runs from its top (y < 0) to its bottom (y > 0) intersection with the 16.5 m line.
    """
    if not step > 0:
        raise ValueError(f"pitch_polylines: step should be a positive number of metres, got {step}")
    points = key_points()
    # Half the angle the penalty arc spans, seen from its mark: the 16.5 m line is 5.5 m away.
    half_angle = math.acos((PENALTY_AREA_LENGTH - GOAL_LINE_TO_PENALTY_MARK) / CENTER_CIRCLE_RADIUS)
    polylines = {}
    for name in DRAWN_CLASSES:
        if name == "Circle central":
            polylines[name] = _arc(points["CENTER_MARK"], 0.0, 2 * math.pi, step)
        elif name == "Circle left":  # around angle 0: the side facing the centre mark
            polylines[name] = _arc(points["L_PENALTY_MARK"], -half_angle, half_angle, step)
        elif name == "Circle right":  # around angle pi, from the top (angle pi + a) to the bottom (pi - a)
            polylines[name] = _arc(points["R_PENALTY_MARK"], math.pi + half_angle, math.pi - half_angle, step)
        else:
            start, end = LINE_EXTREMITIES[name]
            polylines[name] = _segment(points[start], points[end], step)
    return polylines
