"""Motion-capture clips, Acclaim ASF/AMC (the CMU Graphics Lab Motion Capture Database) and BVH (Biovision
Hierarchy), as 3D joint positions by forward kinematics, resampled to 25 fps and mapped onto the 22
Human3.6M joints the models predict.

Acclaim (Lander, "Working with Motion Capture File Formats", Game Developer 1998; the CMU database's reader):

- ASF ``:units``: ``length u`` (file lengths and root translations are inches * u: CMU writes 0.45, so a
  metre is ``value / u * 0.0254``) and ``angle deg|rad``; ``:root`` with ``order`` (which AMC value is
  which, e.g. ``TX TY TZ RX RY RZ``) and ``axis``; ``:bonedata`` with per bone a unit ``direction`` in the
  global frame at rest, a ``length``, ``axis ax ay az XYZ`` (the bone's local frame ``C``) and ``dof`` (the
  rotations the AMC gives, in that order); ``:hierarchy`` (parent child child ...).
- AMC: header lines, then per frame its number and ``bone v1 v2 ...`` in the bone's ``dof`` order.
- Forward kinematics: ``L = C M C^-1`` with ``M`` the dof rotations applied in their order (fixed axes:
  ``rx ry rz`` gives ``M = Rz Ry Rx``) and ``C`` the axis angles applied in the axis order; a bone's
  global rotation is ``G = G_parent L`` and its end ``start + length * G direction``. Points: the root
  (its translation) and every bone's end.

BVH (Biovision; the CMU BVH conversions and most exporters): ``HIERARCHY`` of ``ROOT``/``JOINT`` blocks
with ``OFFSET`` (in the parent's frame), ``CHANNELS`` and ``End Site``; ``MOTION`` with ``Frames:``,
``Frame Time:`` and one line of channel values per frame. Rotation channels compose in their listed order
(``Zrotation Xrotation Yrotation`` gives ``R = Rz Rx Ry``, column vectors); position channels, where a
joint has them, replace its offset. A joint is at ``p_parent + G_parent offset``; an End Site is named
``<parent>_end``. Units are not in the file: ``units`` (metres per file unit) says them.

Both become what the Human3.6M loader produces: root translation and root rotation zeroed (as in
HisRepItself's and LTD's preprocessing of H36M and CMU), turned into the Human3.6M body frame (y up,
x left, facing z: one fixed rotation per rig, from its rest pose), metres, 25 fps (positions linearly
interpolated at t = k / 25), the 22 joints of ``skeleton.JOINTS_USED`` in that order
(``H36M_FROM_ACCLAIM``, ``H36M_FROM_BVH``; a clip without a point the tables name needs ``joint_map``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pose_forecasting.data.skeleton import JOINT_NAMES, JOINTS_USED
from shared_utils.datasets import DatasetFormatError

FPS = 25
INCH = 0.0254
USED_NAMES = tuple(JOINT_NAMES[j] for j in JOINTS_USED)

# Human3.6M joint (a joint of the 22 the models predict) -> the Acclaim point at the same place: the END of
# the CMU bone below it (lfemur ends at the knee, lclavicle at the shoulder, upperneck at the head's base).
H36M_FROM_ACCLAIM = {
    "RightLeg": "rfemur", "RightFoot": "rtibia", "RightToeBase": "rfoot", "RightToeSite": "rtoes",
    "LeftLeg": "lfemur", "LeftFoot": "ltibia", "LeftToeBase": "lfoot", "LeftToeSite": "ltoes",
    "Spine1": "upperback", "Neck": "thorax", "Head": "upperneck", "HeadSite": "head",
    "LeftArm": "lclavicle", "LeftForeArm": "lhumerus", "LeftHand": "lradius",
    "LeftHandThumbSite": "lthumb", "LeftWristEnd": "lhand",
    "RightArm": "rclavicle", "RightForeArm": "rhumerus", "RightHand": "rradius",
    "RightHandThumbSite": "rthumb", "RightWristEnd": "rhand",
}
# Human3.6M joint -> BVH joint candidates, first present wins: the CMU BVH names (which Human3.6M's own names
# follow), then those of the bvhtools clips (LeftToe), of Mixamo (HeadTop_End) and of 19-joint rigs (LeftKnee).
# A rig without toe tips, head tops or thumbs falls back on the End Site of the joint above (e.g. HeadSite =
# Head_end).
H36M_FROM_BVH = {
    side + name: [c.format(side=side, s=side[0]) for c in candidates]
    for side in ("Left", "Right")
    for name, candidates in {
        "Leg": ["{side}Leg", "{side}Knee"],
        "Foot": ["{side}Foot", "{side}Ankle"],
        "ToeBase": ["{side}ToeBase", "{side}Toe", "{side}Foot_end", "{side}Ankle_end"],
        "ToeSite": ["{side}ToeBase_end", "{side}Toe_end", "{side}Toe_End", "{side}Foot_end", "{side}Ankle_end"],
        "Arm": ["{side}Arm", "{side}Shoulder"],
        "ForeArm": ["{side}ForeArm", "{side}Elbow"],
        "Hand": ["{side}Hand", "{side}Wrist"],
        "HandThumbSite": ["{s}Thumb_end", "{side}HandThumb_end", "{side}HandThumb3_end", "{side}Hand_end",
                          "{side}Wrist_end"],
        "WristEnd": ["{side}HandIndex1", "{side}FingerBase", "{side}Hand_end", "{side}Wrist_end"],
    }.items()
} | {"Spine1": ["Spine1", "Chest"], "Neck": ["Neck"], "Head": ["Head"], "HeadSite": ["Head_end", "HeadTop_End"]}


def rotation(axis: str, degrees: np.ndarray) -> np.ndarray:
    """``(..., 3, 3)`` rotation about x, y or z by ``degrees`` (column vectors, right-handed)."""
    a = np.deg2rad(np.asarray(degrees, dtype=np.float64))
    c, s, one, zero = np.cos(a), np.sin(a), np.ones_like(a), np.zeros_like(a)
    rows = {"x": [[one, zero, zero], [zero, c, -s], [zero, s, c]],
            "y": [[c, zero, s], [zero, one, zero], [-s, zero, c]],
            "z": [[c, -s, zero], [s, c, zero], [zero, zero, one]]}[axis.lower()]
    return np.moveaxis(np.array(rows), (0, 1), (-2, -1))


def euler(axes: str, degrees: np.ndarray) -> np.ndarray:
    """Rotations about ``axes`` (e.g. "xyz"), ``degrees`` ``(..., len(axes))``, applied first to last about
    fixed axes, i.e. the matrix ``R_last ... R_first`` (``(..., 3, 3)``)."""
    degrees = np.asarray(degrees, dtype=np.float64)
    matrix = np.broadcast_to(np.eye(3), (*degrees.shape[:-1], 3, 3))
    for i, axis in enumerate(axes):
        matrix = rotation(axis, degrees[..., i]) @ matrix
    return matrix


def resample(positions: np.ndarray, fps: float, target_fps: float = FPS) -> np.ndarray:
    """``(F, J, 3)`` frames at ``fps`` -> frames at ``t = k / target_fps`` within the clip (linear)."""
    times = np.arange(0.0, (len(positions) - 1) / fps + 1e-9, 1.0 / target_fps) * fps
    low = np.minimum(np.floor(times).astype(int), len(positions) - 1)
    high = np.minimum(low + 1, len(positions) - 1)
    weight = (times - low)[:, None, None]
    return ((1 - weight) * positions[low] + weight * positions[high]).astype(np.float32)


def to_h36m(names: list[str], positions: np.ndarray, table: dict, path: Path) -> np.ndarray:
    """``(F, 22, 3)``: the points of ``table`` (H36M name -> point name or candidates) in JOINTS_USED order.
    Names match exactly, else without case and without a namespace prefix (Mixamo's ``mixamorig:LeftLeg``)."""
    index = {n: i for i, n in enumerate(names)}
    for i, n in enumerate(names):
        index.setdefault(n.split(":")[-1].lower(), i)
    chosen, missing = [], []
    for joint in USED_NAMES:
        candidates = table.get(joint, [])
        candidates = [candidates] if isinstance(candidates, str) else candidates
        found = next((c for c in candidates if c in index), None)
        found = found or next((c.lower() for c in candidates if c.lower() in index), None)
        if found is None:
            missing.append(f"{joint} (tried {candidates})")
        chosen.append(found)
    if missing:
        raise DatasetFormatError(f"{path}: no point for the Human3.6M joints {missing}; its points are {names}. "
                                 "Map them with data.init_args.joint_map {h36m_joint: point}")
    return positions[:, [index[c] for c in chosen]]


# -- Acclaim ASF / AMC -----------------------------------------------------------------------------------------


@dataclass
class Bone:
    name: str
    direction: np.ndarray  # (3,) unit, global frame at rest
    length: float  # file units
    axis: np.ndarray  # (3,) degrees
    axis_order: str  # e.g. "xyz"
    dof: list[str] = field(default_factory=list)  # e.g. ["rx", "ry", "rz"], the AMC value order
    parent: str | None = None


@dataclass
class AcclaimSkeleton:
    path: Path
    bones: dict[str, Bone]  # "root" first, then parents before children
    length_unit: float = 1.0  # ASF :units length (CMU: 0.45)
    degrees: bool = True
    root_order: list[str] = field(default_factory=lambda: ["tx", "ty", "tz", "rx", "ry", "rz"])

    @property
    def metres_per_unit(self) -> float:
        return INCH / self.length_unit

    def channels(self, name: str) -> list[str]:
        return self.root_order if name == "root" else self.bones[name].dof


def _floats(values: list[str], where: str, count: int | None = None) -> np.ndarray:
    if count is not None and len(values) != count:
        raise DatasetFormatError(f"{where}: expected {count} numbers, found {len(values)}: {' '.join(values)!r}")
    try:
        return np.array([float(v) for v in values])
    except ValueError:
        raise DatasetFormatError(f"{where}: not a number in {' '.join(values)!r}") from None


def read_asf(path: str | Path) -> AcclaimSkeleton:
    """Parse an ASF skeleton; errors name the file and line."""
    path = Path(path)
    if not path.is_file():
        raise DatasetFormatError(f"{path}: ASF file not found")
    skeleton = AcclaimSkeleton(path, {"root": Bone("root", np.zeros(3), 0.0, np.zeros(3), "xyz")})
    section, bone, children = None, None, {}
    for number, raw in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        where = f"{path}:{number}"
        if not line:
            continue
        words = line.split()
        if words[0].startswith(":"):
            section = words[0][1:].lower()
            continue
        key = words[0].lower()
        if section == "units" and key == "length":
            skeleton.length_unit = float(_floats(words[1:], where, 1)[0])
        elif section == "units" and key == "angle":
            skeleton.degrees = words[1].lower().startswith("deg")
        elif section == "root" and key == "order":
            skeleton.root_order = [w.lower() for w in words[1:]]
        elif section == "root" and key == "axis":
            skeleton.bones["root"].axis_order = words[1].lower()
        elif section == "root" and key == "orientation":  # the root's C, in its axis order
            skeleton.bones["root"].axis = _floats(words[1:], where, 3)
        elif section == "bonedata":
            if key == "begin":
                bone = {"where": where}
            elif key == "end":
                if bone is None or "name" not in bone:
                    raise DatasetFormatError(f"{where}: 'end' of a bone without 'name'")
                for needed in ("direction", "length", "axis"):
                    if needed not in bone:
                        raise DatasetFormatError(f"{bone['where']}: bone {bone['name']!r} has no '{needed}'")
                skeleton.bones[bone["name"]] = Bone(bone["name"], bone["direction"], bone["length"], bone["axis"],
                                                    bone["axis_order"], bone.get("dof", []))
                bone = None
            elif bone is not None and key == "name":
                bone["name"] = words[1]
            elif bone is not None and key == "direction":
                bone["direction"] = _floats(words[1:], where, 3)
            elif bone is not None and key == "length":
                bone["length"] = float(_floats(words[1:], where, 1)[0])
            elif bone is not None and key == "axis":
                bone["axis"], bone["axis_order"] = _floats(words[1:4], where, 3), words[4].lower()
            elif bone is not None and key == "dof":
                dof = [w.lower() for w in words[1:]]
                unsupported = [d for d in dof if d not in ("rx", "ry", "rz")]
                if unsupported:
                    raise DatasetFormatError(f"{where}: dof {unsupported} (translation or length) is not supported: "
                                             "only rotations rx ry rz on bones")
                bone["dof"] = dof
        elif section == "hierarchy" and key not in ("begin", "end"):
            children[words[0]] = (words[1:], where)
    # Order the bones parents first from the hierarchy; every bone must hang from the root.
    ordered, queue = {"root": skeleton.bones["root"]}, ["root"]
    while queue:
        parent = queue.pop(0)
        for child in children.get(parent, ([], ""))[0]:
            if child not in skeleton.bones:
                raise DatasetFormatError(f"{children[parent][1]}: hierarchy names bone {child!r}, not in :bonedata")
            skeleton.bones[child].parent = parent
            ordered[child] = skeleton.bones[child]
            queue.append(child)
    orphans = sorted(set(skeleton.bones) - set(ordered))
    if orphans:
        raise DatasetFormatError(f"{path}: bones {orphans} are not in the :hierarchy under root")
    skeleton.bones = ordered
    if not skeleton.degrees:
        raise DatasetFormatError(f"{path}: ':units angle rad' is not supported (CMU files use deg)")
    return skeleton


def read_amc(path: str | Path, skeleton: AcclaimSkeleton) -> dict[str, np.ndarray]:
    """Parse an AMC motion: ``{bone: (F, len(dof)) values}`` (the root's in its ``order``); every frame must
    give every bone with dofs (missing or extra values are errors naming the line)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetFormatError(f"{path}: AMC file not found")
    moving = [name for name, bone in skeleton.bones.items() if name == "root" or bone.dof]
    frames: list[dict[str, np.ndarray]] = []
    for number, raw in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith(("#", ":")):
            continue
        words = line.split()
        where = f"{path}:{number}"
        if len(words) == 1 and words[0].isdigit():
            if frames:
                _check_frame(frames[-1], moving, where)
            frames.append({})
            continue
        if not frames:
            raise DatasetFormatError(f"{where}: {words[0]!r} before the first frame number")
        name = words[0]
        if name not in skeleton.bones:
            raise DatasetFormatError(f"{where}: bone {name!r} is not in the skeleton {skeleton.path}")
        frames[-1][name] = _floats(words[1:], where, len(skeleton.channels(name)))
    if not frames:
        raise DatasetFormatError(f"{path}: no frame (expected a frame number line, then 'bone values' lines)")
    _check_frame(frames[-1], moving, f"{path}: last frame")
    return {name: np.stack([f[name] for f in frames]) for name in moving}


def _check_frame(frame: dict, moving: list[str], where: str) -> None:
    missing = [name for name in moving if name not in frame]
    if missing:
        raise DatasetFormatError(f"{where}: the frame before this line lacks bones {missing}")


def acclaim_positions(skeleton: AcclaimSkeleton, motion: dict[str, np.ndarray],
                      zero_root: bool = False) -> tuple[list[str], np.ndarray]:
    """Point names (``root`` then every bone, its end) and ``(F, P, 3)`` positions in file units."""
    values = motion["root"]
    channels = skeleton.root_order
    if zero_root:
        values = np.zeros_like(values)
    frames = len(values)
    translation = np.zeros((frames, 3))
    for i, axis in enumerate("xyz"):
        if f"t{axis}" in channels:
            translation[:, i] = values[:, channels.index(f"t{axis}")]
    rotations = [c for c in channels if c.startswith("r")]
    root = skeleton.bones["root"]
    C = euler(root.axis_order, root.axis)
    M = euler("".join(c[1] for c in rotations), values[:, [channels.index(c) for c in rotations]])
    global_rotation = {"root": C @ M @ C.T}
    position = {"root": translation}
    for name, bone in list(skeleton.bones.items())[1:]:
        C = euler(bone.axis_order, bone.axis)
        if bone.dof:
            M = euler("".join(d[1] for d in bone.dof), motion[name])
        else:
            M = np.broadcast_to(np.eye(3), (frames, 3, 3))
        global_rotation[name] = global_rotation[bone.parent] @ (C @ M @ C.T)
        position[name] = position[bone.parent] + bone.length * (global_rotation[name] @ bone.direction)
    names = list(skeleton.bones)
    return names, np.stack([position[n] for n in names], axis=1)


# -- BVH ----------------------------------------------------------------------------------------------------


@dataclass
class BvhJoint:
    name: str
    parent: int  # index into BvhClip.joints, -1 for the root
    offset: np.ndarray  # (3,) file units, parent frame
    channels: list[str]  # e.g. ["Xposition", ..., "Zrotation", ...]; empty for End Sites
    column: int  # first column of its channels in a motion line


@dataclass
class BvhClip:
    path: Path
    joints: list[BvhJoint]
    frame_time: float
    motion: np.ndarray  # (F, channels)


def read_bvh(path: str | Path) -> BvhClip:
    """Parse a BVH file; errors name the file and line."""
    path = Path(path)
    if not path.is_file():
        raise DatasetFormatError(f"{path}: BVH file not found")
    lines = path.read_text(errors="replace").splitlines()
    joints: list[BvhJoint] = []
    stack: list[int] = []
    columns, pending, number = 0, None, 0
    for number, raw in enumerate(lines, start=1):
        words = raw.split()
        where = f"{path}:{number}"
        if not words or words[0] == "HIERARCHY":
            continue
        key = words[0]
        if key in ("ROOT", "JOINT", "End"):
            if key == "End":
                if not stack:
                    raise DatasetFormatError(f"{where}: End Site outside a joint")
                name = f"{joints[stack[-1]].name}_end"
            else:
                if len(words) < 2:
                    raise DatasetFormatError(f"{where}: {key} without a name")
                name = words[1]
            pending = BvhJoint(name, stack[-1] if stack else -1, np.zeros(3), [], columns)
        elif key == "{":
            if pending is None:
                raise DatasetFormatError(f"{where}: '{{' without a ROOT, JOINT or End Site")
            joints.append(pending)
            stack.append(len(joints) - 1)
            pending = None
        elif key == "}":
            if not stack:
                raise DatasetFormatError(f"{where}: unbalanced '}}'")
            stack.pop()
        elif key == "OFFSET":
            joints[stack[-1]].offset = _floats(words[1:], where, 3)
        elif key == "CHANNELS":
            joint = joints[stack[-1]]
            count = int(_floats(words[1:2], where, 1)[0])
            joint.channels, joint.column = words[2:], columns
            valid = {f"{a}{k}" for a in "XYZ" for k in ("position", "rotation")}
            if len(joint.channels) != count or not set(joint.channels) <= valid:
                raise DatasetFormatError(f"{where}: CHANNELS {count} then {joint.channels}: expected {count} of "
                                         f"{sorted(valid)}")
            columns += count
        elif key == "MOTION":
            break
        else:
            raise DatasetFormatError(f"{where}: unexpected {key!r} in the HIERARCHY")
    else:
        raise DatasetFormatError(f"{path}: no MOTION section")
    if stack or not joints:
        raise DatasetFormatError(f"{path}: HIERARCHY {'has unclosed blocks' if stack else 'is empty'}")
    header = {}
    for key in ("Frames:", "Frame Time:"):
        number += 1
        line = lines[number - 1].strip() if number <= len(lines) else ""
        if not line.startswith(key):
            raise DatasetFormatError(f"{path}:{number}: expected '{key} ...', found {line!r}")
        header[key] = _floats(line[len(key):].split(), f"{path}:{number}", 1)[0]
    rows = [(n, line) for n, line in enumerate(lines[number:], start=number + 1) if line.strip()]
    if len(rows) != int(header["Frames:"]):
        raise DatasetFormatError(f"{path}: 'Frames: {int(header['Frames:'])}' but {len(rows)} motion lines")
    try:
        motion = np.loadtxt([line for _, line in rows], ndmin=2) if rows else np.zeros((0, columns))
    except ValueError:
        motion = None
    if motion is None or motion.shape[1] != columns:
        for n, line in rows:  # find and name the bad line
            _floats(line.split(), f"{path}:{n} (motion)", columns)
    if header["Frame Time:"] <= 0:
        raise DatasetFormatError(f"{path}: Frame Time {header['Frame Time:']} must be positive")
    return BvhClip(path, joints, float(header["Frame Time:"]), motion)


def bvh_positions(clip: BvhClip, zero_root: bool = False) -> tuple[list[str], np.ndarray]:
    """Joint and End Site names and ``(F, J, 3)`` positions in file units."""
    frames = len(clip.motion)
    global_rotation, position = [], []
    for joint in clip.joints:
        values = clip.motion[:, joint.column:joint.column + len(joint.channels)]
        if zero_root and joint.parent < 0:
            values = np.zeros_like(values)
        translation = np.broadcast_to(joint.offset, (frames, 3)).copy()
        positions_given = [c for c in joint.channels if c.endswith("position")]
        if positions_given:  # position channels replace the offset
            translation[:] = 0.0
            for c in positions_given:
                translation[:, "XYZ".index(c[0])] = values[:, joint.channels.index(c)]
        rotations = [c for c in joint.channels if c.endswith("rotation")]
        # Listed order = intrinsic order: R = R_first R_second R_third, i.e. fixed axes applied last to first.
        local = euler("".join(c[0] for c in reversed(rotations)),
                      values[:, [joint.channels.index(c) for c in reversed(rotations)]])
        if joint.parent < 0:
            global_rotation.append(local)
            position.append(translation)
        else:
            parent_rotation = global_rotation[joint.parent]
            global_rotation.append(parent_rotation @ local)
            position.append(position[joint.parent] + (parent_rotation @ translation[..., None])[..., 0])
    return [j.name for j in clip.joints], np.stack(position, axis=1)


# -- clips as model input ----------------------------------------------------------------------------------


def load_clip(path: str | Path, units: float = 0.01, fps: float = 120.0,
              joint_map: dict[str, str] | None = None) -> np.ndarray:
    """A ``.amc`` (its ``.asf`` found by :func:`asf_for`) or ``.bvh`` clip -> ``(T, 22, 3)`` float32 metres at
    25 fps, root translation and rotation zeroed, in the Human3.6M body frame (:func:`body_frame`).
    ``units``: metres per BVH unit (Acclaim files say theirs); ``fps``: the AMC frame rate (not in the file;
    CMU's is 120); ``joint_map``: overrides of the mapping (H36M joint -> point name)."""
    path = Path(path)
    if path.suffix.lower() == ".amc":
        skeleton = read_asf(asf_for(path))
        motion = read_amc(path, skeleton)
        names, positions = acclaim_positions(skeleton, motion, zero_root=True)
        _, rest = acclaim_positions(skeleton, {k: np.zeros_like(v[:1]) for k, v in motion.items()})
        table, scale, rate = H36M_FROM_ACCLAIM, skeleton.metres_per_unit, fps
    elif path.suffix.lower() == ".bvh":
        clip = read_bvh(path)
        names, positions = bvh_positions(clip, zero_root=True)
        rest_clip = BvhClip(clip.path, clip.joints, clip.frame_time, np.zeros_like(clip.motion[:1]))
        _, rest = bvh_positions(rest_clip)
        table, scale, rate = H36M_FROM_BVH, units, 1.0 / clip.frame_time
    else:
        raise DatasetFormatError(f"{path}: not a motion clip (expected .amc with its .asf, or .bvh)")
    table = {**table, **(joint_map or {})}
    joints = to_h36m(names, positions, table, path) * scale
    joints = joints @ body_frame(to_h36m(names, rest, table, path)[0]).T
    return resample(joints, rate)


def body_frame(rest: np.ndarray) -> np.ndarray:
    """The rotation taking a rig's rest pose ``(22, 3)`` (all rotations zero) to the Human3.6M body frame:
    up (knees -> head) along +y, left (right -> left shoulder) along +x, facing +z. Zeroing the root
    rotation leaves the body in its rig's rest frame, which is upright for Acclaim (the identity, up to the
    rest pose's asymmetry) but e.g. lying along x for the bvhtools clips; one fixed rotation per rig, so the
    motion itself is unchanged."""
    index = {n: i for i, n in enumerate(USED_NAMES)}
    up = rest[index["Head"]] - (rest[index["LeftLeg"]] + rest[index["RightLeg"]]) / 2
    left = rest[index["LeftArm"]] - rest[index["RightArm"]]
    y = up / np.linalg.norm(up)
    x = left - (left @ y) * y
    x /= np.linalg.norm(x)
    return np.stack([x, y, np.cross(x, y)])  # rows: the new axes in the rig's frame


def asf_for(amc: Path) -> Path:
    """The skeleton of an AMC clip: ``<name>.asf``, else the CMU naming ``<subject>_<trial>.amc`` ->
    ``<subject>.asf``, else the folder's only ``.asf``."""
    for candidate in (amc.with_suffix(".asf"), amc.with_name(amc.stem.split("_")[0] + ".asf")):
        if candidate.is_file():
            return candidate
    found = sorted(amc.parent.glob("*.asf"))
    if len(found) == 1:
        return found[0]
    raise DatasetFormatError(f"{amc}: no skeleton: expected {amc.with_suffix('.asf').name}, "
                             f"{amc.stem.split('_')[0]}.asf or a single .asf in {amc.parent} (found "
                             f"{[p.name for p in found]})")
