"""The SoccerNet-GSR Labels-GameState.json reader and writer on a hand-written clip in the official layout."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

from shared_utils.datasets import DatasetFormatError
from sports_image_gen.data.gamestate import Player, read_gamestate, write_gamestate

# Two frames of a clip, as the GSR paper's supplementary Fig. S3 shows the file: a player with a pitch position,
# a referee off the pitch (bbox_pitch null), the ball, and the per-frame "pitch" annotation (not read).
PITCH = {"x_bottom_left": -29.17307773076183, "y_bottom_left": -13.960906317008366,
         "x_bottom_right": -28.399824812615115, "y_bottom_right": -14.278786952621587,
         "x_bottom_middle": -28.786446826184775, "y_bottom_middle": -14.119801608871501}
LABELS = {
    "info": {"version": "1.3", "game_id": "11", "id": "200", "num_tracklets": "3", "action_position": "956196",
             "action_class": "Shots on target", "visibility": "visible", "game_time_start": "2 - 15:41",
             "game_time_stop": "2 - 16:11", "clip_start": "941000", "clip_stop": "971000", "name": "SNGS-200",
             "im_dir": "img1", "frame_rate": 25, "seq_length": 2, "im_ext": ".jpg"},
    "images": [
        {"is_labeled": True, "image_id": "3200000001", "file_name": "000001.jpg", "height": 1080, "width": 1920,
         "has_labeled_person": True, "has_labeled_pitch": True, "has_labeled_camera": True,
         "ignore_regions_y": [], "ignore_regions_x": []},
        {"is_labeled": True, "image_id": "3200000002", "file_name": "000002.jpg", "height": 1080, "width": 1920,
         "has_labeled_person": True, "has_labeled_pitch": True, "has_labeled_camera": True,
         "ignore_regions_y": [], "ignore_regions_x": []},
    ],
    "annotations": [
        {"id": "3200000001", "image_id": "3200000001", "track_id": 1, "supercategory": "object", "category_id": 1,
         "attributes": {"role": "player", "jersey": "14", "team": "left"},
         "bbox_image": {"x": 1020, "y": 508, "x_center": 1043.0, "y_center": 557.5, "w": 46, "h": 99},
         "bbox_pitch": PITCH, "bbox_pitch_raw": PITCH},
        {"id": "3200000002", "image_id": "3200000001", "track_id": 7, "supercategory": "object", "category_id": 3,
         "attributes": {"role": "referee", "jersey": None, "team": None},
         "bbox_image": {"x": 10, "y": 20, "x_center": 25.0, "y_center": 60.0, "w": 30, "h": 80},
         "bbox_pitch": None, "bbox_pitch_raw": None},
        {"id": "3200000019", "image_id": "3200000001", "supercategory": "pitch", "category_id": 5,
         "lines": {"Side line top": [{"x": 0.21, "y": 0.34}, {"x": 0.61, "y": 0.39}]}},
        {"id": "3200000020", "image_id": "3200000002", "track_id": 12, "supercategory": "object", "category_id": 4,
         "attributes": {"role": "ball", "jersey": None, "team": None},
         "bbox_image": {"x": 900, "y": 600, "x_center": 905.0, "y_center": 605.0, "w": 10, "h": 10},
         "bbox_pitch": {**PITCH, "x_bottom_middle": 3.5, "y_bottom_middle": -1.25}},
    ],
    "categories": [{"supercategory": "object", "id": 1, "name": "player"},
                   {"supercategory": "object", "id": 2, "name": "goalkeeper"},
                   {"supercategory": "object", "id": 3, "name": "referee"},
                   {"supercategory": "object", "id": 4, "name": "ball"},
                   {"supercategory": "pitch", "id": 5, "name": "pitch"},
                   {"supercategory": "camera", "id": 6, "name": "camera"},
                   {"supercategory": "object", "id": 7, "name": "other"}],
}


def write_clip(root: Path, labels: dict) -> Path:
    """<root>/SNGS-200/Labels-GameState.json (the frames of img1/ are not needed to read the labels)."""
    path = root / "SNGS-200" / "Labels-GameState.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(labels), encoding="utf-8")
    return path


def test_reads_the_hand_written_clip(tmp_path):
    state = read_gamestate(write_clip(tmp_path, LABELS))
    assert state.version == "1.3"
    assert state.image_dir == tmp_path / "SNGS-200" / "img1"
    assert state.images == [{"image_id": "3200000001", "file_name": "000001.jpg", "width": 1920, "height": 1080},
                            {"image_id": "3200000002", "file_name": "000002.jpg", "width": 1920, "height": 1080}]
    player, referee = state.players("3200000001")
    assert (player.track_id, player.role, player.team, player.jersey) == (1, "player", "left", "14")
    np.testing.assert_array_equal(player.box, [1020, 508, 1066, 607])  # x_center -+ w / 2, y_center -+ h / 2
    np.testing.assert_array_equal(player.pitch_xy, [-28.786446826184775, -14.119801608871501])
    assert (referee.role, referee.team, referee.jersey, referee.pitch_xy) == ("referee", None, None, None)
    (ball,) = state.players("3200000002")
    assert ball.role == "ball" and ball.track_id == 12
    np.testing.assert_array_equal(ball.pitch_xy, [3.5, -1.25])
    with pytest.raises(KeyError, match="3200000003"):
        state.players("3200000003")


@pytest.mark.parametrize("remove, message", [
    (("info", "version"), "info lacks field 'version'"),
    (("images", 1, "file_name"), "image 1 lacks field 'file_name'"),
    (("annotations", 0, "track_id"), "annotation 0 lacks field 'track_id'"),
    (("annotations", 0, "attributes", "team"), "annotation 0 attributes lacks field 'team'"),
    (("annotations", 3, "bbox_image", "x_center"), "annotation 3 bbox_image lacks field 'x_center'"),
    (("annotations", 0, "bbox_pitch", "y_bottom_middle"), "annotation 0 bbox_pitch lacks field 'y_bottom_middle'"),
])
def test_missing_field_names_file_and_field(tmp_path, remove, message):
    labels = copy.deepcopy(LABELS)
    record = labels
    for key in remove[:-1]:
        record = record[key]
    del record[remove[-1]]
    path = write_clip(tmp_path, labels)
    with pytest.raises(DatasetFormatError, match=f"Labels-GameState.json: {message}"):
        read_gamestate(path)


@pytest.mark.parametrize("attribute, value, message", [
    ("role", "coach", "'role' should be one of"),
    ("team", "home", "'team' should be left, right or null"),
    ("jersey", 14, "'jersey' should be a string or null"),
])
def test_bad_attribute_names_the_field(tmp_path, attribute, value, message):
    labels = copy.deepcopy(LABELS)
    labels["annotations"][0]["attributes"][attribute] = value
    with pytest.raises(DatasetFormatError, match=f"annotation 0 attributes field {message}"):
        read_gamestate(write_clip(tmp_path, labels))


def test_versions(tmp_path):
    labels = copy.deepcopy(LABELS)
    labels["info"]["version"] = "1.1"
    with pytest.warns(UserWarning, match="SNGS-200.*'1.1' predates 1.3"):
        assert read_gamestate(write_clip(tmp_path, labels)).version == "1.1"
    labels["info"]["version"] = "2.0"
    with pytest.warns(UserWarning, match="SNGS-200.*'2.0' is not one of the documented versions"):
        read_gamestate(write_clip(tmp_path, labels))


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="SNGS-404"):
        read_gamestate(tmp_path / "SNGS-404" / "Labels-GameState.json")


def test_writer_round_trip(tmp_path):
    images = [{"image_id": "1000001", "file_name": "000001.jpg", "width": 640, "height": 360},
              {"image_id": "1000002", "file_name": "000002.jpg", "width": 640, "height": 360}]
    players = {"1000001": [
        Player(track_id=3, role="goalkeeper", team="right", jersey="1", box=np.array([10.5, 20.0, 30.5, 80.0]),
               pitch_xy=np.array([50.0, 2.5])),
        Player(track_id=9, role="other", team=None, jersey=None, box=np.array([0.0, 0.0, 4.0, 4.0]),
               pitch_xy=None),
    ]}
    path = tmp_path / "SNGS-900" / "Labels-GameState.json"
    write_gamestate(path, images, players)
    raw = json.loads(path.read_text(encoding="utf-8"))
    assert set(raw) == {"info", "images", "annotations", "categories"}
    assert raw["info"]["name"] == "SNGS-900" and raw["info"]["seq_length"] == 2
    annotation = raw["annotations"][0]
    assert annotation["category_id"] == 2 and annotation["bbox_image"]["x_center"] == 20.5
    assert annotation["bbox_pitch"]["x_bottom_left"] == 50.0
    state = read_gamestate(path)
    assert state.images == images
    assert state.players("1000002") == []
    for written, read in zip(players["1000001"], state.players("1000001")):
        assert (read.track_id, read.role, read.team, read.jersey) == (written.track_id, written.role, written.team,
                                                                      written.jersey)
        np.testing.assert_array_equal(read.box, written.box)
        assert (read.pitch_xy is None) == (written.pitch_xy is None)
    np.testing.assert_array_equal(state.players("1000001")[0].pitch_xy, [50.0, 2.5])
    with pytest.raises(ValueError, match="'1000003'"):
        write_gamestate(path, images, {"1000003": []})
    write_gamestate(path, images, {1000002: players["1000001"][:1]})  # an integer key names the same image
    assert [player.track_id for player in read_gamestate(path).players("1000002")] == [3]
