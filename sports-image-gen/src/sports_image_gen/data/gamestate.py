"""SoccerNet Game State Reconstruction labels (Somers et al., "SoccerNet Game State Reconstruction: End-to-End
Athlete Tracking and Identification on a Minimap", CVPRW 2024; devkit github.com/SoccerNet/sn-gamestate).

    <split>/SNGS-XXX/img1/000001.jpg ...        30 s clips at 25 Hz, 1920 x 1080
    <split>/SNGS-XXX/Labels-GameState.json      COCO-like labels of the clip

``Labels-GameState.json`` (paper, supplementary Fig. S3; TrackLab's ``soccernet_game_state.py`` reader) holds
``info`` (version, name, im_dir, frame_rate, seq_length, ...), ``images`` (image_id as a string, file_name,
width, height, is_labeled, has_labeled_person / _pitch / _camera, ignore_regions_x / _y), ``annotations`` and
``categories``. Annotations with supercategory "object" are the people and the ball: track_id, category_id,
attributes {role: player / goalkeeper / referee / ball / other, jersey: a string or null, team: left / right /
null}, bbox_image {x, y, x_center, y_center, w, h} in pixels and bbox_pitch {x/y_bottom_left, _middle, _right}
in metres (null, or absent, when the person stands off the pitch), in the sn-calibration world frame (see
``pitch.py``). The "pitch" and "camera" annotations of the same file (line points, camera parameters) are not read
here.

Versions: the devkit documents 1.0 (release), 1.1 (team left/right fixes), 1.2 (clean-up) and 1.3 (temporally
consistent bbox_pitch, the current one). A file of another documented version is read with a warning that names it
(its pitch positions or team labels are the older ones); an undocumented version is read with a warning too, since
every field read here is checked and a format change that matters fails on that field, naming it.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shared_utils.datasets import DatasetFormatError

CURRENT_VERSION = "1.3"
DOCUMENTED_VERSIONS = ("1.0", "1.1", "1.2", "1.3")
ROLES = ("player", "goalkeeper", "referee", "ball", "other")
TEAMS = ("left", "right")
# The category list every Labels-GameState.json carries; category_id follows the role.
CATEGORIES = (
    {"supercategory": "object", "id": 1, "name": "player"},
    {"supercategory": "object", "id": 2, "name": "goalkeeper"},
    {"supercategory": "object", "id": 3, "name": "referee"},
    {"supercategory": "object", "id": 4, "name": "ball"},
    {"supercategory": "pitch", "id": 5, "name": "pitch"},
    {"supercategory": "camera", "id": 6, "name": "camera"},
    {"supercategory": "object", "id": 7, "name": "other"},
)
CATEGORY_ID = {category["name"]: category["id"] for category in CATEGORIES if category["supercategory"] == "object"}
FRAME_RATE = 25  # every SoccerNet-GSR clip
IMAGE_FIELDS = ("image_id", "file_name", "width", "height")


@dataclass
class Player:
    """One annotated object of a frame: a person (player, goalkeeper, referee, other) or the ball.

    ``box`` is x1 y1 x2 y2 in pixels; ``pitch_xy`` the bottom middle of the box on the pitch in metres (sn-calibration
    world frame), None when the annotation has no bbox_pitch.
    """

    track_id: int
    role: str
    team: str | None
    jersey: str | None
    box: np.ndarray
    pitch_xy: np.ndarray | None


def _field(record: Mapping, name: str, where: str, path: Path) -> object:
    """``record[name]``, or a DatasetFormatError naming the file, the record and the missing field."""
    if not isinstance(record, Mapping):
        raise DatasetFormatError(f"{path}: {where} should be a JSON object, found {type(record).__name__}")
    if name not in record:
        raise DatasetFormatError(f"{path}: {where} lacks field '{name}'")
    return record[name]


def _number(record: Mapping, name: str, where: str, path: Path) -> float:
    """A numeric field (JSON booleans excluded), or a DatasetFormatError naming it."""
    value = _field(record, name, where, path)
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise DatasetFormatError(f"{path}: {where} field '{name}' should be a number, found {value!r}")
    return float(value)


def _parse_player(annotation: Mapping, index: int, path: Path) -> Player:
    """A Player from one "object" annotation (``index`` in the annotations list, for the error messages)."""
    where = f"annotation {index}"
    track_id = _field(annotation, "track_id", where, path)
    if not isinstance(track_id, int) or isinstance(track_id, bool):
        raise DatasetFormatError(f"{path}: {where} field 'track_id' should be an integer, found {track_id!r}")
    attributes = _field(annotation, "attributes", where, path)
    role = _field(attributes, "role", f"{where} attributes", path)
    if role not in ROLES:
        raise DatasetFormatError(f"{path}: {where} attributes field 'role' should be one of {ROLES}, found {role!r}")
    team = _field(attributes, "team", f"{where} attributes", path)
    if team is not None and team not in TEAMS:
        raise DatasetFormatError(f"{path}: {where} attributes field 'team' should be left, right or null, "
                                 f"found {team!r}")
    jersey = _field(attributes, "jersey", f"{where} attributes", path)
    if jersey is not None and not isinstance(jersey, str):
        raise DatasetFormatError(f"{path}: {where} attributes field 'jersey' should be a string or null, "
                                 f"found {jersey!r}")
    # TrackLab builds its boxes from the centre and size: read the same fields.
    bbox = _field(annotation, "bbox_image", where, path)
    x_center, y_center, w, h = (_number(bbox, name, f"{where} bbox_image", path)
                                for name in ("x_center", "y_center", "w", "h"))
    box = np.array([x_center - w / 2, y_center - h / 2, x_center + w / 2, y_center + h / 2])
    pitch = annotation.get("bbox_pitch")  # null (or absent) for someone off the pitch
    pitch_xy = None
    if pitch is not None:
        pitch_xy = np.array([_number(pitch, name, f"{where} bbox_pitch", path)
                             for name in ("x_bottom_middle", "y_bottom_middle")])
    return Player(track_id=track_id, role=role, team=team, jersey=jersey, box=box, pitch_xy=pitch_xy)


class GameState:
    """The labels of one SoccerNet-GSR clip: ``version``, ``images`` (dicts image_id / file_name / width /
    height, in file order), ``image_dir`` (where the frames are) and the annotated objects of each frame."""

    def __init__(self, path: Path, version: str, image_dir: Path, images: list[dict],
                 players_per_image: dict[str, list[Player]]):
        self.path = path
        self.version = version
        self.image_dir = image_dir
        self.images = images
        self._players = players_per_image

    def players(self, image_id: str) -> list[Player]:
        """Every annotated object of frame ``image_id`` (people and ball; filter on ``role``), in file order."""
        if image_id not in self._players:
            raise KeyError(f"{self.path}: no image with image_id {image_id!r}")
        return self._players[image_id]


def read_gamestate(path: str | Path) -> GameState:
    """Read a ``Labels-GameState.json``; a missing or malformed field raises naming the file and the field."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"SoccerNet-GSR labels {path} not found; expected <split>/SNGS-XXX/"
                                f"Labels-GameState.json next to img1/")
    try:
        with open(path, encoding="utf-8") as file:
            labels = json.load(file)
    except json.JSONDecodeError as error:
        raise DatasetFormatError(f"{path}: not valid JSON ({error})") from error
    info = _field(labels, "info", "the top level", path)
    version = str(_field(info, "version", "info", path))  # a string in the files ("1.3"): 1.3 reads the same
    if version not in DOCUMENTED_VERSIONS:
        warnings.warn(f"{path}: info.version {version!r} is not one of the documented versions "
                      f"{DOCUMENTED_VERSIONS}; read as version {CURRENT_VERSION}", stacklevel=2)
    elif version != CURRENT_VERSION:
        warnings.warn(f"{path}: info.version {version!r} predates {CURRENT_VERSION} (team labels fixed in 1.1, "
                      f"temporally consistent pitch positions in 1.3): download the dataset again", stacklevel=2)
    images = []
    for index, image in enumerate(_field(labels, "images", "the top level", path)):
        entry = {name: _field(image, name, f"image {index}", path) for name in IMAGE_FIELDS}
        entry["image_id"] = str(entry["image_id"])
        images.append(entry)
    players: dict[str, list[Player]] = {image["image_id"]: [] for image in images}
    for index, annotation in enumerate(_field(labels, "annotations", "the top level", path)):
        if _field(annotation, "supercategory", f"annotation {index}", path) != "object":
            continue  # pitch lines and camera parameters
        image_id = str(_field(annotation, "image_id", f"annotation {index}", path))
        if image_id not in players:
            raise DatasetFormatError(f"{path}: annotation {index} field 'image_id' {image_id!r} names no entry "
                                     f"of 'images'")
        players[image_id].append(_parse_player(annotation, index, path))
    image_dir = path.parent / str(info.get("im_dir", "img1"))
    return GameState(path=path, version=version, image_dir=image_dir, images=images, players_per_image=players)


def _annotation(player: Player, annotation_id: int, image_id: str) -> dict:
    """The "object" annotation of ``player`` as the real file writes it."""
    x1, y1, x2, y2 = (float(value) for value in player.box)
    pitch = None
    if player.pitch_xy is not None:
        x, y = (float(value) for value in player.pitch_xy)
        # A rendered player's foot point is exact: the bottom left / middle / right points coincide.
        pitch = {f"{axis}_bottom_{point}": value for point in ("left", "right", "middle")
                 for axis, value in (("x", x), ("y", y))}
    return {
        "id": str(annotation_id),
        "image_id": image_id,
        "track_id": int(player.track_id),
        "supercategory": "object",
        "category_id": CATEGORY_ID[player.role],
        "attributes": {"role": player.role, "jersey": player.jersey, "team": player.team},
        "bbox_image": {"x": x1, "y": y1, "x_center": (x1 + x2) / 2, "y_center": (y1 + y2) / 2,
                       "w": x2 - x1, "h": y2 - y1},
        "bbox_pitch": pitch,
        # The real files carry this too (by its name, the position before refinement; sometimes null): a rendered
        # position has no rawer form.
        "bbox_pitch_raw": pitch,
    }


def write_gamestate(path: str | Path, images: Sequence[Mapping], players_per_image: Mapping[str, Sequence[Player]],
                    version: str = CURRENT_VERSION) -> None:
    """Write a ``Labels-GameState.json`` with the fields of the real files (for the synthetic renderer).

    ``images`` are dicts image_id / file_name / width / height (frames in ``img1/`` next to ``path``);
    ``players_per_image`` maps an image_id to its objects (an image without an entry has none). Pitch lines and
    camera annotations are not written, and the images say so (has_labeled_pitch / has_labeled_camera false).
    """
    path = Path(path)
    image_ids = [str(image["image_id"]) for image in images]
    players_per_image = {str(image_id): players for image_id, players in players_per_image.items()}
    unknown = set(players_per_image) - set(image_ids)
    if unknown:
        raise ValueError(f"write_gamestate({path}): players given for image_id(s) {sorted(unknown)} that are not in "
                         f"images")
    for image_id, players in players_per_image.items():
        for player in players:
            if player.role not in ROLES:
                raise ValueError(f"write_gamestate({path}): image {image_id}, track {player.track_id}: role "
                                 f"{player.role!r} is not one of {ROLES}")
    annotations = []
    for image_id in image_ids:
        for player in players_per_image.get(image_id, ()):
            annotations.append(_annotation(player, len(annotations) + 1, image_id))
    labels = {
        "info": {
            "version": version,
            "name": path.parent.name,
            "im_dir": "img1",
            "frame_rate": FRAME_RATE,
            "seq_length": len(images),
            "im_ext": ".jpg",
            "num_tracklets": str(len({annotation["track_id"] for annotation in annotations})),
        },
        "images": [{
            "is_labeled": True,
            "image_id": image_id,
            "file_name": image["file_name"],
            "height": int(image["height"]),
            "width": int(image["width"]),
            "has_labeled_person": True,
            "has_labeled_pitch": False,
            "has_labeled_camera": False,
            "ignore_regions_y": [],
            "ignore_regions_x": [],
        } for image_id, image in zip(image_ids, images)],
        "annotations": annotations,
        "categories": list(CATEGORIES),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(labels, indent=1), encoding="utf-8")
