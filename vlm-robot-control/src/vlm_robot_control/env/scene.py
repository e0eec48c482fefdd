"""The MuJoCo tabletop: a Cartesian parallel gripper, coloured blocks, bowls and zones, a top camera.

One model is compiled per object count ``(blocks, bowls, zones)`` and reused: colours and poses change
per episode through ``model.geom_rgba`` and ``data.qpos`` / ``data.mocap_pos``, which costs nothing,
while recompiling XML costs milliseconds. Bowls and zones are mocap bodies (static for the physics),
so only the blocks and the gripper are simulated.

Speed (the issue asks >= 5,000 control steps/s on one core without rendering). Two choices cut the
physics cost (sleeping alone: ~1.9x more env steps/s, RESULTS.md) without changing what the tasks need:

- MuJoCo's sleeping (``<flag sleep="enable"/>``, hence mujoco >= 4.0): a block at rest (speed under
  ``sleep_tolerance`` for 10 steps) is frozen and skipped until something awake touches it. The
  gripper is actuated, so the compiler never lets it sleep; any block it touches wakes at once.
- Contact filtering (contype/conaffinity bits): table 1, bowls 2, fingers 2, blocks 3. Blocks touch
  everything; fingers touch blocks and bowls but not the table (the hand's z joint limit keeps them
  2 mm above it); bowls (static) never test against the table.

Frame: the table is the plane z = 0, the workspace the square |x|, |y| <= ``WORKSPACE``; x points
right and y away from the viewer in the top camera's image (image row 0 = +y).
"""

from __future__ import annotations

import math
from functools import cache

import mujoco

WORKSPACE = 0.17          # half side of the square objects are placed in (m)
BLOCK_HALF = 0.0125       # 2.5 cm cubes
BOWL_RADIUS = 0.05        # inner radius of a bowl's wall ring
ZONE_HALF = 0.05          # 10 cm square zones
HAND_XY_RANGE = (-0.25, 0.25)   # the gripper's x and y joint ranges (m)
HAND_Z_RANGE = (0.012, 0.16)
FINGER_OPEN = 0.03        # each finger's slide joint range [0, FINGER_OPEN]: 3 cm clearance per side
TIMESTEP = 0.008          # physics step (s); the control step is N_SUBSTEPS of them (25 Hz)
N_SUBSTEPS = 5
CAMERA_HEIGHT = 0.62
CAMERA_FOVY = 40.0


def _bowl_walls(n: int = 10) -> str:
    """A ring of ``n`` boxes: a bowl a block can drop into, from primitive geoms only (fast contacts)."""
    half_len = BOWL_RADIUS * math.tan(math.pi / n) + 0.004
    walls = []
    for k in range(n):
        a = 2 * math.pi * k / n
        walls.append(
            f'<geom class="bowl" type="box" size="0.004 {half_len:.4f} 0.012" '
            f'pos="{BOWL_RADIUS * math.cos(a):.4f} {BOWL_RADIUS * math.sin(a):.4f} 0.012" '
            f'euler="0 0 {a:.4f}"/>'
        )
    return "\n".join(walls)


def scene_xml(n_blocks: int, n_bowls: int, n_zones: int) -> str:
    """MJCF of the tabletop with the given numbers of objects (poses and colours set per episode)."""
    blocks = "\n".join(
        f'<body name="block{i}" pos="{0.5 + 0.1 * i} 0.5 {BLOCK_HALF}"><freejoint/>'
        f'<geom class="block" name="block{i}"/></body>' for i in range(n_blocks)
    )
    bowls = "\n".join(
        f'<body name="bowl{i}" mocap="true" pos="{-0.5 - 0.15 * i} 0.5 0">'
        f'<geom class="bowl" name="bowl{i}" type="cylinder" size="{BOWL_RADIUS + 0.004} 0.002" pos="0 0 0.002"/>'
        f"{_bowl_walls()}</body>" for i in range(n_bowls)
    )
    zones = "\n".join(
        f'<body name="zone{i}" mocap="true" pos="{-0.5 - 0.15 * i} -0.5 0">'
        f'<geom class="zone" name="zone{i}"/></body>' for i in range(n_zones)
    )
    hxy, hz = HAND_XY_RANGE, HAND_Z_RANGE
    return f"""
<mujoco model="vlm_tabletop">
  <compiler autolimits="true" angle="radian"/>
  <option timestep="{TIMESTEP}" integrator="Euler" cone="elliptic" impratio="10" sleep_tolerance="0.001">
    <flag sleep="enable"/>
  </option>
  <visual>
    <quality offsamples="0" shadowsize="0"/>
    <global offwidth="256" offheight="256"/>
    <headlight ambient="0.45 0.45 0.45" diffuse="0.5 0.5 0.5" specular="0 0 0"/>
  </visual>
  <default>
    <default class="block">
      <geom contype="3" conaffinity="3" type="box" size="{BLOCK_HALF} {BLOCK_HALF} {BLOCK_HALF}" mass="0.03"
            friction="1.2 0.01 0.001" condim="4"/>
    </default>
    <default class="bowl"><geom contype="2" conaffinity="2" rgba="0.5 0.5 0.5 1" friction="0.6 0.005 0.0001"/></default>
    <default class="zone">
      <geom type="box" size="{ZONE_HALF} {ZONE_HALF} 0.0005" pos="0 0 0.0005" contype="0" conaffinity="0"/>
    </default>
    <default class="finger">
      <geom contype="2" conaffinity="2" type="box" size="0.012 0.005 0.022" pos="0 0 0.012"
            friction="1.5 0.02 0.001" condim="4" rgba="0.25 0.25 0.28 1" mass="0.02"/>
    </default>
  </default>
  <worldbody>
    <geom name="table" type="plane" contype="1" conaffinity="1" size="0.6 0.6 0.6"
          rgba="0.82 0.78 0.70 1" friction="0.5 0.005 0.0001"/>
    <camera name="top" pos="0 0 {CAMERA_HEIGHT}" xyaxes="1 0 0 0 1 0" fovy="{CAMERA_FOVY}"/>
    <body name="hand" gravcomp="1">
      <joint name="hand_x" type="slide" axis="1 0 0" range="{hxy[0]} {hxy[1]}" damping="5"/>
      <joint name="hand_y" type="slide" axis="0 1 0" range="{hxy[0]} {hxy[1]}" damping="5"/>
      <joint name="hand_z" type="slide" axis="0 0 1" range="{hz[0]} {hz[1]}" damping="5"/>
      <geom name="palm" type="box" size="0.015 0.05 0.008" pos="0 0 0.05" mass="0.3" rgba="0.3 0.3 0.35 1"/>
      <body name="finger_left" pos="0 0.005 0" gravcomp="1">
        <joint name="finger_left" type="slide" axis="0 1 0" range="0 {FINGER_OPEN}" damping="1"/>
        <geom class="finger" name="finger_left"/>
      </body>
      <body name="finger_right" pos="0 -0.005 0" gravcomp="1">
        <joint name="finger_right" type="slide" axis="0 -1 0" range="0 {FINGER_OPEN}" damping="1"/>
        <geom class="finger" name="finger_right"/>
      </body>
    </body>
    {blocks}
    {bowls}
    {zones}
  </worldbody>
  <equality><joint joint1="finger_left" joint2="finger_right"/></equality>
  <actuator>
    <position name="hand_x" joint="hand_x" kp="1500" kv="60" timeconst="0.03" ctrlrange="{hxy[0]} {hxy[1]}"/>
    <position name="hand_y" joint="hand_y" kp="1500" kv="60" timeconst="0.03" ctrlrange="{hxy[0]} {hxy[1]}"/>
    <position name="hand_z" joint="hand_z" kp="1500" kv="60" timeconst="0.03" ctrlrange="{hz[0]} {hz[1]}"/>
    <position name="fingers" joint="finger_left" kp="300" kv="3" timeconst="0.05" ctrlrange="0 {FINGER_OPEN}"/>
  </actuator>
</mujoco>"""


@cache
def _compiled_xml(n_blocks: int, n_bowls: int, n_zones: int) -> str:
    return scene_xml(n_blocks, n_bowls, n_zones)


def build_model(n_blocks: int, n_bowls: int, n_zones: int) -> mujoco.MjModel:
    """A fresh model (each env owns its copy: colours are written into it per episode)."""
    model = mujoco.MjModel.from_xml_string(_compiled_xml(n_blocks, n_bowls, n_zones))
    # Software rendering is fast only without multisampling, shadows and reflections (see README),
    # and with coarse tessellation: MuJoCo draws each box face as numquads^2 quads (default 4: 16)
    # and cylinders with numslices (default 28) sides. Measured at 96 x 96, renders/s: defaults
    # (without multisampling/shadows) 694, numslices 8 934, + numquads 1 1976; the image is unchanged.
    model.vis.quality.offsamples = 0
    model.vis.quality.shadowsize = 0
    model.vis.quality.numquads = 1
    model.vis.quality.numslices = 8
    model.vis.quality.numstacks = 4
    return model


def fast_renderer(model: mujoco.MjModel, height: int, width: int) -> mujoco.Renderer:
    """An offscreen renderer with shadows, reflections, skybox and haze off (~15x faster on CPU)."""
    renderer = mujoco.Renderer(model, height, width)
    for flag in (mujoco.mjtRndFlag.mjRND_SHADOW, mujoco.mjtRndFlag.mjRND_REFLECTION,
                 mujoco.mjtRndFlag.mjRND_SKYBOX, mujoco.mjtRndFlag.mjRND_HAZE):
        renderer.scene.flags[flag] = 0
    return renderer
