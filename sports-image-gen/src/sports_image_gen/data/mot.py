"""The MOTChallenge sequence layout, as SoccerNet-tracking (Cioppa et al., CVPRW 2022) and SportsMOT (Cui et al.,
ICCV 2023) ship it.

    <seq>/seqinfo.ini      [Sequence] name, imDir, frameRate, seqLength, imWidth, imHeight, imExt
    <seq>/img1/000001.jpg  the frames, 1-based and zero-padded
    <seq>/gt/gt.txt        one box per line: frame, id, x, y, w, h, conf, class, visibility[, unused]
    <seq>/gameinfo.ini     SoccerNet-tracking only: the clip's action and what each tracklet is

gt.txt is comma separated, boxes in pixels (x, y the top-left corner). SoccerNet-tracking writes 10 columns with
conf 1 and -1 in the last three; SportsMOT writes 9 (``1, 1, 1`` after the box, with spaces after the commas).
gameinfo.ini is a hand-written [Sequence] section (``num_tracklets=26``, ``trackletID_1= player team left;7``,
``trackletID_14= referee;main``, ``trackletID_18= ball;1`` ...) whose content varies from clip to clip, so it is
read line by line and never rejected: every ``key=value`` line is kept as text, a line that is neither that, a
section header, a comment nor blank is kept raw in ``gameinfo_unparsed``.

A missing file raises ``FileNotFoundError``, malformed content ``DatasetFormatError`` (a ``ValueError``), naming
the file, the line or key and what was expected.
"""

from __future__ import annotations

import configparser
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from shared_utils.datasets import DatasetFormatError, folder_listing

SEQINFO_KEYS = ("name", "imDir", "frameRate", "seqLength", "imWidth", "imHeight", "imExt")
GT_COLUMNS = ("frame", "id", "x", "y", "w", "h", "conf", "class", "visibility", "unused")
TRACKLET_KEY = re.compile(r"trackletID_(\d+)", re.IGNORECASE)


@dataclass
class MotSequence:
    """One sequence: its seqinfo.ini, frame paths, ground truth (N x 10, the 9-column form padded with -1) and, for
    SoccerNet-tracking, gameinfo.ini (``tracklets``: id -> description such as "player team left;7")."""

    name: str
    frame_rate: float
    length: int
    width: int
    height: int
    image_paths: list[Path]
    gt: np.ndarray
    tracklets: dict[int, str] = field(default_factory=dict)
    gameinfo: dict[str, str] = field(default_factory=dict)
    gameinfo_unparsed: list[str] = field(default_factory=list)

    def boxes(self, frame: int) -> tuple[np.ndarray, np.ndarray]:
        """(ids, N x 4 x1 y1 x2 y2 pixels) of the boxes of 1-based ``frame``. Rows whose conf is 0 are left out:
        MOTChallenge's flag for "ignore this box" (SoccerNet-tracking and SportsMOT only write 1)."""
        rows = self.gt[(self.gt[:, 0] == frame) & (self.gt[:, 6] != 0)]
        xyxy = np.concatenate([rows[:, 2:4], rows[:, 2:4] + rows[:, 4:6]], axis=1)
        return rows[:, 1].astype(np.int64), xyxy


def read_seqinfo(path: Path) -> dict[str, str]:
    """The [Sequence] keys of a seqinfo.ini (case kept: ``imDir``, ``frameRate``...)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; expected a MOT sequence folder with seqinfo.ini ([Sequence] "
                                f"{', '.join(SEQINFO_KEYS)}), img1/ and gt/gt.txt; {folder_listing(path.parent)}")
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # keys are camelCase
    try:
        parser.read(path, encoding="utf-8")
    except configparser.Error as error:
        raise DatasetFormatError(f"{path}: not a valid ini file ({error})") from error
    if not parser.has_section("Sequence"):
        raise DatasetFormatError(f"{path}: no [Sequence] section; expected [Sequence] with {', '.join(SEQINFO_KEYS)}")
    section = parser["Sequence"]
    for key in SEQINFO_KEYS:
        if key not in section:
            raise DatasetFormatError(f"{path}: [Sequence] lacks key '{key}'; expected {', '.join(SEQINFO_KEYS)}")
    return dict(section)


def _seqinfo_number(info: dict[str, str], key: str, kind: type, path: Path) -> float | int:
    """A numeric seqinfo value, or a DatasetFormatError naming the key."""
    try:
        return kind(info[key])
    except ValueError as error:
        raise DatasetFormatError(f"{path}: [Sequence] key '{key}' should be {kind.__name__}, found "
                                 f"{info[key]!r}") from error


def read_gt(path: Path) -> np.ndarray:
    """A MOT gt.txt as an N x 10 float array (9-column lines padded with -1); blank lines are skipped."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; expected gt/gt.txt (frame, id, x, y, w, h, conf, class, "
                                f"visibility[, unused] per line) in the MOT sequence; {folder_listing(path.parent)}")
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        cells = line.split(",")
        if len(cells) not in (9, 10):
            raise DatasetFormatError(f"{path}, line {number}: {len(cells)} comma-separated columns, expected 9 or "
                                     f"10 ({', '.join(GT_COLUMNS)}): {line!r}")
        try:
            values = [float(cell) for cell in cells]
        except ValueError as error:
            raise DatasetFormatError(f"{path}, line {number}: a column is not a number: {line!r}") from error
        rows.append(values + [-1.0] * (10 - len(values)))
    return np.array(rows, dtype=np.float64).reshape(-1, 10)


def read_gameinfo(path: Path) -> tuple[dict[str, str], dict[int, str], list[str]]:
    """SoccerNet-tracking's gameinfo.ini, read tolerantly: (every key=value, tracklet id -> description, the lines
    that are neither). Values are stripped; a repeated key keeps its last value, as configparser does."""
    values: dict[str, str] = {}
    unparsed: list[str] = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", ";")) or (stripped.startswith("[") and stripped.endswith("]")):
            continue
        key, equals, value = stripped.partition("=")
        if not equals or not key.strip():
            unparsed.append(line)
            continue
        values[key.strip()] = value.strip()
    tracklets = {}
    for key, value in values.items():
        match = TRACKLET_KEY.fullmatch(key)
        if match:
            tracklets[int(match.group(1))] = value
    return values, tracklets, unparsed


def read_mot_sequence(folder: str | Path) -> MotSequence:
    """The sequence in ``folder`` (seqinfo.ini, the seqLength frames of imDir, gt/gt.txt, gameinfo.ini if any)."""
    folder = Path(folder)
    seqinfo_path = folder / "seqinfo.ini"
    info = read_seqinfo(seqinfo_path)
    length = _seqinfo_number(info, "seqLength", int, seqinfo_path)
    image_dir = folder / info["imDir"]
    if not image_dir.is_dir():
        raise FileNotFoundError(f"frame folder {image_dir} (imDir of {seqinfo_path}) not found; "
                                f"{folder_listing(folder)}")
    image_paths = sorted(image_dir.glob(f"*{info['imExt']}"))
    if len(image_paths) != length:
        raise DatasetFormatError(f"{image_dir}: {len(image_paths)} {info['imExt']} frames, expected seqLength = "
                                 f"{length} from {seqinfo_path}")
    gameinfo, tracklets, unparsed = {}, {}, []
    if (folder / "gameinfo.ini").is_file():
        gameinfo, tracklets, unparsed = read_gameinfo(folder / "gameinfo.ini")
    return MotSequence(
        name=info["name"],
        frame_rate=_seqinfo_number(info, "frameRate", float, seqinfo_path),
        length=length,
        width=_seqinfo_number(info, "imWidth", int, seqinfo_path),
        height=_seqinfo_number(info, "imHeight", int, seqinfo_path),
        image_paths=image_paths,
        gt=read_gt(folder / "gt" / "gt.txt"),
        tracklets=tracklets,
        gameinfo=gameinfo,
        gameinfo_unparsed=unparsed,
    )
