"""The MOT sequence loader on a SoccerNet-tracking (10 columns, gameinfo.ini) and a SportsMOT (9 columns) fixture."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from shared_utils.datasets import DatasetFormatError
from sports_image_gen.data.mot import read_mot_sequence

# SoccerNet-tracking: 10 columns, conf 1 and -1 in the last three.
SNMOT_GT = """\
1,1,914,855,55,172,1,-1,-1,-1
1,14,1005,339,25,68,1,-1,-1,-1
1,18,968,407,9,9,1,-1,-1,-1
2,1,916,853,55,172,1,-1,-1,-1
3,1,918,851,56,173,1,-1,-1,-1
"""
# As the clips write it: a leading space after '=', goalkeepers spelled with an s, free-text referee roles, and
# (the malformed part) a line without '=', a key without a value and a tracklet without an id.
GAMEINFO = """\
[Sequence]
name=SNMOT-060
actionPosition=975293
actionClass=Corner
num_tracklets=4
trackletID_1= player team left;7
trackletID_2= goalkeepers team right;1
trackletID_14= referee;main
trackletID_18= ball;1
this line has no equals sign
trackletID_= player team right;9
lonely_key=
"""
# SportsMOT: 9 columns, spaces after the commas, ids from 0.
SPORTSMOT_GT = """\
1, 0, 83, 421, 88, 130, 1, 1, 1
1, 1, 335, 355, 54, 150, 1, 1, 1
2, 0, 85, 421, 88, 131, 1, 1, 1

"""


def make_sequence(folder: Path, name: str, length: int, gt: str, gameinfo: str | None = None) -> Path:
    """<folder>/seqinfo.ini, img1/000001.jpg..., gt/gt.txt and optionally gameinfo.ini."""
    (folder / "img1").mkdir(parents=True)
    (folder / "gt").mkdir()
    (folder / "seqinfo.ini").write_text(f"[Sequence]\nname={name}\nimDir=img1\nframeRate=25\nseqLength={length}\n"
                                        f"imWidth=1920\nimHeight=1080\nimExt=.jpg\n", encoding="utf-8")
    for index in range(1, length + 1):
        cv2.imwrite(str(folder / "img1" / f"{index:06d}.jpg"), np.zeros((6, 8, 3), np.uint8))
    (folder / "gt" / "gt.txt").write_text(gt, encoding="utf-8")
    if gameinfo is not None:
        (folder / "gameinfo.ini").write_text(gameinfo, encoding="utf-8")
    return folder


def test_soccernet_tracking_sequence(tmp_path):
    folder = make_sequence(tmp_path / "train" / "SNMOT-060", "SNMOT-060", 3, SNMOT_GT, GAMEINFO)
    sequence = read_mot_sequence(folder)
    assert (sequence.name, sequence.frame_rate, sequence.length, sequence.width, sequence.height) == \
        ("SNMOT-060", 25.0, 3, 1920, 1080)
    assert sequence.image_paths == [folder / "img1" / f"{index:06d}.jpg" for index in (1, 2, 3)]
    assert sequence.gt.shape == (5, 10)
    np.testing.assert_array_equal(sequence.gt[1], [1, 14, 1005, 339, 25, 68, 1, -1, -1, -1])
    ids, xyxy = sequence.boxes(1)
    np.testing.assert_array_equal(ids, [1, 14, 18])
    np.testing.assert_array_equal(xyxy[0], [914, 855, 969, 1027])
    assert sequence.tracklets == {1: "player team left;7", 2: "goalkeepers team right;1", 14: "referee;main",
                                  18: "ball;1"}
    assert sequence.gameinfo["actionClass"] == "Corner" and sequence.gameinfo["lonely_key"] == ""
    assert sequence.gameinfo_unparsed == ["this line has no equals sign"]


def test_sportsmot_sequence(tmp_path):
    sequence = read_mot_sequence(make_sequence(tmp_path / "v_-6Os86HzwCs_c001", "v_-6Os86HzwCs_c001", 2,
                                               SPORTSMOT_GT))
    assert sequence.gt.shape == (3, 10)
    np.testing.assert_array_equal(sequence.gt[0], [1, 0, 83, 421, 88, 130, 1, 1, 1, -1])  # padded with -1
    ids, xyxy = sequence.boxes(2)
    np.testing.assert_array_equal(ids, [0])
    np.testing.assert_array_equal(xyxy, [[85, 421, 173, 552]])
    assert sequence.boxes(3)[0].shape == (0,)
    assert sequence.tracklets == {} and sequence.gameinfo == {}


def test_bad_gt_line_names_file_and_line(tmp_path):
    gt = SNMOT_GT + "4,1,918,851,56,173,1,-1\n"
    folder = make_sequence(tmp_path / "SNMOT-061", "SNMOT-061", 3, gt)
    with pytest.raises(DatasetFormatError, match=r"gt\.txt, line 6: 8 comma-separated columns, expected 9 or 10"):
        read_mot_sequence(folder)
    (folder / "gt" / "gt.txt").write_text("1,1,a,2,3,4,1,1,1\n", encoding="utf-8")
    with pytest.raises(DatasetFormatError, match=r"gt\.txt, line 1: a column is not a number"):
        read_mot_sequence(folder)


def test_missing_or_malformed_seqinfo(tmp_path):
    folder = make_sequence(tmp_path / "SNMOT-062", "SNMOT-062", 2, SNMOT_GT)
    (folder / "seqinfo.ini").unlink()
    with pytest.raises(FileNotFoundError, match=r"SNMOT-062/seqinfo\.ini not found"):
        read_mot_sequence(folder)
    (folder / "seqinfo.ini").write_text("[Sequence]\nname=SNMOT-062\nimDir=img1\nframeRate=25\n", encoding="utf-8")
    with pytest.raises(DatasetFormatError, match="lacks key 'seqLength'"):
        read_mot_sequence(folder)


def test_frame_count_must_match_seqlength(tmp_path):
    folder = make_sequence(tmp_path / "SNMOT-063", "SNMOT-063", 2, SNMOT_GT)
    (folder / "img1" / "000002.jpg").unlink()
    with pytest.raises(DatasetFormatError, match="1 .jpg frames, expected seqLength = 2"):
        read_mot_sequence(folder)
