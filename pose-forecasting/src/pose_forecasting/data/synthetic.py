"""A procedural stand-in for Human3.6M that writes the real expmap release format.

``<root>/S{n}/{action}_{1,2}.txt``: one 50 Hz frame per line, 99 comma-separated numbers (root translation
in mm, then 32 joint exponential maps, the first one the global rotation), as in the release that
Martinez et al. (CVPR 2017), HisRepItself (Mao et al., ECCV 2020) and siMLPe (Guo et al., WACV 2023) read.
The real loader, forward kinematics and test protocols therefore run on it unchanged. The expmap format
has no bone lengths, so each subject's scaled skeleton goes to ``S{n}/skeleton_offsets.txt`` (32 lines
``x,y,z``, mm, the layout of :data:`skeleton.OFFSETS_MM`).

Motion: each file is a chain of motion primitives (gait, minimum-jerk reaches, sit/stand transitions,
waving and talking gestures, looking around and posing), the action's own primitive most of the time and
another one starting at random times, cross-faded over 0.8 s. Periodic gaits with drifting tempo and
minimum-jerk point-to-point movements (Flash & Hogan, J. Neurosci. 1985) make the future predictable from
the past for a learned model, while the switches and tempo changes make zero and constant velocity fail
at long horizons, as on the real data. Each subject has its own bone lengths, tempo, amplitudes and
posture.

The joint angles are "degrees of freedom" in an anatomical frame of the H36M rest pose, found with
:func:`skeleton.forward_kinematics`: y up, z forward (the toes), x to the subject's left; legs hang, the
spine points up and the arms point straight up from the neck, so the clavicles turn the arms sideways
and the shoulders bring them down. The global rotation (heading) and root translation are written too,
although the loader zeroes them like the literature: turning in place is therefore spine/neck yaw.
"""

from __future__ import annotations

import inspect
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from pose_forecasting.data.skeleton import NUM_JOINTS, OFFSETS_MM
from shared_utils.cache import generate_once

VERSION = 1  # bump when the generated data changes, so that ensure_synthetic regenerates it
FPS = 50  # the release's frame rate (the loader keeps every second line: 25 fps)
CROSSFADE_S = 0.4  # half-width of the blend between two primitives
ANGLE_NOISE_RAD = 0.003  # white noise on every joint angle, a marker-jitter stand-in

# Degrees of freedom (radians), the right side mirrored from the left one (positive = same anatomical
# motion on both sides), then the root's forward speed (m/s) and turning rate (rad/s).
_SIDED = ("hip_flex", "hip_abd", "knee", "ankle", "sh_flex", "sh_abd", "sh_twist", "elbow", "wrist")
DOFS = (("spine_flex", "spine_bend", "spine_yaw", "neck_flex", "neck_yaw")
        + tuple(f"{s}_{d}" for s in "lr" for d in _SIDED) + ("speed", "turn"))
_I = {name: i for i, name in enumerate(DOFS)}
_ANGLES = slice(0, len(DOFS) - 2)

# Lower body of a seated subject (a chair-height sit: thighs about horizontal, shanks vertical).
_SEATED = {"hip_flex": 1.45, "hip_abd": 0.12, "knee": 1.5, "ankle": 0.1}


@dataclass(frozen=True)
class _Style:
    """Per-subject parameters: how this person walks, gestures and stands."""

    base: np.ndarray  # (D,) neutral standing posture
    cadence: float  # strides per second
    stride: float  # hip swing amplitude factor
    arm_swing: float
    gesture: float  # gesture amplitude factor
    tempo: float  # speed factor of reaches and transitions
    dominant: str  # "l" or "r"


# ---------------------------------------------------------------------------------------------- helpers

def _minjerk(x: np.ndarray) -> np.ndarray:
    """Minimum-jerk position profile ``10x^3 - 15x^4 + 6x^5`` on [0, 1] (Flash & Hogan 1985)."""
    x = np.clip(x, 0.0, 1.0)
    return x ** 3 * (10 - 15 * x + 6 * x ** 2)


def _keyframed(t: np.ndarray, times: Sequence[float], values: np.ndarray) -> np.ndarray:
    """Minimum-jerk segments between keyframes ``(K,)`` times and ``(K, C)`` values, held after the ends."""
    times = np.asarray(times, dtype=float)
    values = np.asarray(values, dtype=float)
    i = np.clip(np.searchsorted(times, t, side="right") - 1, 0, len(times) - 2)
    s = _minjerk((t - times[i]) / np.maximum(times[i + 1] - times[i], 1e-9))
    return values[i] + (values[i + 1] - values[i]) * s[:, None]


def _smooth_noise(t: np.ndarray, rng: np.random.Generator, fmin: float = 0.05, fmax: float = 0.3) -> np.ndarray:
    """A slow random signal in about [-1, 1]: three sinusoids of random low frequency and phase."""
    f = rng.uniform(fmin, fmax, 3)
    p = rng.uniform(0, 2 * np.pi, 3)
    return np.sin(2 * np.pi * f[:, None] * t + p[:, None]).sum(0) / np.sqrt(3)


def _phase(t: np.ndarray, rng: np.random.Generator, frequency: float, variation: float) -> np.ndarray:
    """Phase of an oscillation whose frequency drifts by ``variation`` (relative): tempo changes."""
    f = frequency * (1 + variation * _smooth_noise(t, rng))
    return 2 * np.pi * np.cumsum(f) / FPS + rng.uniform(0, 2 * np.pi)


def _bump(x: np.ndarray, centre: float, kappa: float) -> np.ndarray:
    """A periodic bump of the phase ``x`` (von Mises shape, 1 at ``centre``)."""
    return np.exp(kappa * (np.cos(x - centre) - 1))


def _side(side: str, **values: float) -> dict[str, float]:
    return {f"{side}_{k}": v for k, v in values.items()}


def _pose_sequence(t: np.ndarray, rng: np.random.Generator, style: _Style,
                   poses: Callable[[], dict[str, float]], move_s: tuple[float, float],
                   hold_s: tuple[float, float], rest_s: tuple[float, float] | None) -> np.ndarray:
    """Minimum-jerk moves from the base posture to target postures drawn by ``poses()``, each held for a
    while, with a return to the base in between when ``rest_s`` is given. ``(T, D)`` absolute DOFs."""
    times, values = [0.0], [style.base]
    while times[-1] <= t[-1]:
        target = style.base.copy()
        for name, value in poses().items():
            target[_I[name]] = value
        # Hold with a small drift so that a held posture is not frozen.
        drift = target + np.r_[rng.normal(0, 0.04, len(DOFS) - 2), 0, 0] * style.gesture
        move = rng.uniform(*move_s) / style.tempo
        times += [times[-1] + move, times[-1] + move + rng.uniform(*hold_s)]
        values += [target, drift]
        if rest_s is not None:
            times += [times[-1] + rng.uniform(*move_s) / style.tempo]
            times += [times[-1] + rng.uniform(*rest_s)]
            values += [style.base, style.base]
    return _keyframed(t, times, np.stack(values))


# ------------------------------------------------------------------------------------------- primitives

def _gait(t: np.ndarray, rng: np.random.Generator, style: _Style, kind: str) -> np.ndarray:
    """Walking: hip/knee/ankle cycles, counter-swinging arms, torso counter-rotation, drifting tempo.

    ``kind``: "walk"; "dog" (slower and irregular, dominant arm forward holding a leash that tugs, looking
    down); "together" (slow, little arm swing, head turned towards the partner).
    """
    slow, variation = {"walk": (1.0, 0.12), "dog": (0.85, 0.25), "together": (0.8, 0.1)}[kind]
    phi = _phase(t, rng, style.cadence * slow, variation)
    frequency = np.gradient(phi) * FPS / (2 * np.pi)
    swing = {"walk": 1.0, "dog": 0.8, "together": 0.4}[kind] * style.arm_swing
    q = np.tile(style.base, (len(t), 1))
    for side, psi in (("l", phi), ("r", phi + np.pi)):
        # psi = pi/2: heel strike (hip most flexed); -pi/2: toe-off; knee flexes most early in swing.
        q[:, _I[f"{side}_hip_flex"]] += 0.32 * style.stride * np.sin(psi) + 0.05
        q[:, _I[f"{side}_knee"]] += 0.85 * _bump(psi, -0.4, 3.0) + 0.2 * _bump(psi, 2.2, 4.0)
        q[:, _I[f"{side}_ankle"]] += 0.15 * np.sin(psi + 0.5) - 0.2 * _bump(psi, -1.6, 4.0)
        q[:, _I[f"{side}_sh_flex"]] += -0.25 * swing * np.sin(psi)
        q[:, _I[f"{side}_elbow"]] += 0.2 - 0.15 * swing * np.sin(psi)
    q[:, _I["spine_yaw"]] += 0.08 * np.sin(phi)
    q[:, _I["spine_bend"]] += 0.03 * np.sin(phi)
    q[:, _I["speed"]] = 1.45 * style.stride * frequency
    q[:, _I["turn"]] = 0.4 * _smooth_noise(t, rng)
    if kind == "dog":
        d = style.dominant
        tugs = rng.uniform(0, t[-1] + 1, max(1, int(0.5 * (t[-1] + 1))))
        tug = np.exp(-(((t[:, None] - tugs[None]) / 0.15) ** 2)).sum(1)
        q[:, _I[f"{d}_sh_flex"]] = style.base[_I[f"{d}_sh_flex"]] + 0.5 + 0.3 * tug
        q[:, _I[f"{d}_elbow"]] = style.base[_I[f"{d}_elbow"]] + 0.6 - 0.4 * tug
        q[:, _I["spine_flex"]] += 0.1
        q[:, _I["neck_flex"]] += 0.3
    elif kind == "together":
        q[:, _I["neck_yaw"]] += rng.choice([-1, 1]) * 0.35 + 0.15 * _smooth_noise(t, rng)
    return q


def _reach(t: np.ndarray, rng: np.random.Generator, style: _Style, target: str) -> np.ndarray:
    """Repeated minimum-jerk reaches of one hand (mostly the dominant one) or both, to a target and back.

    ``target``: "mouth" (eating, smoking), "ear" (phoning: long holds), "forward" (purchases: reach and lean
    forward), "camera" (taking a photo: both hands in front of the face).
    """
    # Hand targets found by forward kinematics of the rest skeleton (wrist 5-10 cm from the target).
    postures = {"mouth": dict(sh_flex=1.0, sh_abd=0.2, sh_twist=0.75, elbow=2.45),
                "ear": dict(sh_flex=1.0, sh_abd=0.3, sh_twist=0.1, elbow=2.5),
                "forward": dict(sh_flex=1.2, sh_abd=0.2, sh_twist=0.1, elbow=0.3),
                "camera": dict(sh_flex=1.15, sh_abd=0.2, sh_twist=0.5, elbow=2.2)}[target]
    hold = {"mouth": (0.4, 1.5), "ear": (2.0, 4.0), "forward": (0.3, 1.0), "camera": (0.8, 2.0)}[target]

    def pose() -> dict[str, float]:
        if target == "camera":
            sides = "lr"
        else:
            sides = style.dominant if rng.random() < 0.75 else "lr".replace(style.dominant, "")
        out: dict[str, float] = {}
        for side in sides:
            out |= _side(side, **{k: v * rng.uniform(0.9, 1.1) for k, v in postures.items()})
        if target == "forward":
            out |= dict(spine_flex=rng.uniform(0.2, 0.5), neck_flex=0.25, spine_yaw=rng.uniform(-0.4, 0.4))
        return out

    return _pose_sequence(t, rng, style, pose, (0.6, 1.1), hold, (0.3, 1.2))


def _sit_cycle(t: np.ndarray, rng: np.random.Generator, style: _Style) -> np.ndarray:
    """Sitting down and standing up in turn: minimum-jerk transitions through a forward trunk lean."""
    standing, seated = style.base.copy(), style.base.copy()
    for side in "lr":
        for name, value in _SEATED.items():
            seated[_I[f"{side}_{name}"]] = value
    seated[_I["spine_flex"]] -= 0.05
    for side in "lr":  # hands on the thighs
        seated[_I[f"{side}_sh_flex"]] += 0.4
        seated[_I[f"{side}_elbow"]] += 0.6
    times, values = [0.0], [standing]
    while times[-1] <= t[-1]:
        for goal in (seated, standing):
            duration = rng.uniform(1.2, 2.0) / style.tempo
            # Halfway through the transition the trunk leans forward over the feet.
            middle = 0.5 * (values[-1] + goal)
            middle[_I["spine_flex"]] += rng.uniform(0.4, 0.7)
            middle[_I["neck_flex"]] -= 0.2
            times += [times[-1] + duration / 2, times[-1] + duration, times[-1] + duration + rng.uniform(0.8, 3.0)]
            values += [middle, goal, goal]
    return _keyframed(t, times, np.stack(values))


def _gesture(t: np.ndarray, rng: np.random.Generator, style: _Style, kind: str) -> np.ndarray:
    """Arm gestures. ``kind``: "wave" (greeting: raise a hand and wave at ~2.5 Hz, or bow), "point"
    (directions: point with a straight arm, head and trunk turned that way), "talk" (discussion: both
    forearms beat at ~1.5 Hz with changing amplitude while the trunk turns between listeners)."""
    g = style.gesture
    if kind == "talk":
        def listener() -> dict[str, float]:  # forearms forward, turned towards someone
            arms = {**_side("l", sh_flex=0.35, sh_twist=0.4, elbow=1.3), **_side("r", sh_flex=0.35, sh_twist=0.4,
                                                                                 elbow=1.3)}
            return dict(spine_yaw=rng.uniform(-0.4, 0.4), neck_yaw=rng.uniform(-0.4, 0.4), **arms)

        q = _pose_sequence(t, rng, style, listener, (0.8, 1.4), (1.0, 3.0), None)
        for side, lag in (("l", 0.0), ("r", rng.uniform(0.5, 2.5))):
            beat = np.sin(_phase(t, rng, 1.5, 0.15) + lag) * (0.6 + 0.4 * _smooth_noise(t, rng))
            q[:, _I[f"{side}_elbow"]] += 0.35 * g * beat
            q[:, _I[f"{side}_sh_flex"]] += 0.12 * g * beat
            q[:, _I[f"{side}_wrist"]] += 0.3 * g * beat
        return q
    if kind == "point":
        def pose() -> dict[str, float]:
            side = style.dominant if rng.random() < 0.7 else "lr".replace(style.dominant, "")
            turn = rng.uniform(0.1, 0.5) * (1 if side == "l" else -1)
            return dict(spine_yaw=turn, neck_yaw=turn, **_side(side, sh_flex=rng.uniform(0.9, 1.5) * g,
                        sh_abd=rng.uniform(0.2, 1.1), sh_twist=0.0, elbow=0.1))

        return _pose_sequence(t, rng, style, pose, (0.6, 1.0), (0.8, 2.0), (0.5, 1.5))
    # Greeting: a bow, or a raised hand that waves (the wave's amplitude follows how far the arm is up).
    side = style.dominant
    bow = rng.random() < 0.3

    def pose() -> dict[str, float]:
        if bow:
            return dict(spine_flex=rng.uniform(0.4, 0.7), neck_flex=0.3)
        return _side(side, sh_flex=0.25, sh_abd=2.1, sh_twist=-1.2, elbow=1.2)  # forearm up, hand above head

    q = _pose_sequence(t, rng, style, pose, (0.6, 0.9), (1.0, 2.5), (0.5, 1.5))
    if not bow:
        rest = style.base[_I[f"{side}_sh_abd"]]
        raised = (q[:, _I[f"{side}_sh_abd"]] - rest) / (2.1 - rest)
        q[:, _I[f"{side}_elbow"]] += 0.35 * g * raised * np.sin(_phase(t, rng, 2.5, 0.1))
    return q


def _look_around(t: np.ndarray, rng: np.random.Generator, style: _Style, kind: str) -> np.ndarray:
    """Standing still and turning the trunk and head. ``kind``: "wait" (weight shifts, looking around),
    "pose" (a succession of held poses: hands on hips, arms out, twisted or bent trunk)."""
    if kind == "wait":
        def pose() -> dict[str, float]:
            shift = rng.uniform(-0.1, 0.1)  # pelvis to one side: one hip abducts, the other adducts
            return dict(spine_yaw=rng.uniform(-0.7, 0.7), neck_yaw=rng.uniform(-0.6, 0.6),
                        neck_flex=rng.uniform(-0.1, 0.3), l_hip_abd=shift, r_hip_abd=-shift,
                        l_knee=max(0.0, -shift) * 2, r_knee=max(0.0, shift) * 2)

        return _pose_sequence(t, rng, style, pose, (0.8, 1.5), (0.5, 2.0), None)

    def pose() -> dict[str, float]:
        arms = rng.integers(3)
        out = dict(spine_yaw=rng.uniform(-0.6, 0.6), spine_bend=rng.uniform(-0.25, 0.25),
                   spine_flex=rng.uniform(-0.1, 0.3), neck_yaw=rng.uniform(-0.5, 0.5))
        for side in "lr":
            if arms == 0:  # hands on the hips
                out |= _side(side, sh_abd=0.35, sh_flex=-0.35, sh_twist=0.7, elbow=0.95)
            elif arms == 1:  # arms out
                out |= _side(side, sh_abd=rng.uniform(0.8, 1.6), sh_flex=rng.uniform(-0.2, 0.8), elbow=0.2)
            else:  # one arm up
                out |= _side(side, sh_abd=2.2 if side == style.dominant else 0.2, elbow=0.3)
        return out

    return _pose_sequence(t, rng, style, pose, (1.0, 1.6), (1.0, 2.5), None)


def _seated(primitive: Callable[..., np.ndarray], t: np.ndarray, rng: np.random.Generator, style: _Style,
            **kwargs: str) -> np.ndarray:
    """Any upper-body primitive performed on a chair: seated legs, no root motion."""
    q = primitive(t, rng, style, **kwargs)
    for side in "lr":
        for name, value in _SEATED.items():
            q[:, _I[f"{side}_{name}"]] = value
    q[:, _I["speed"]] = q[:, _I["turn"]] = 0.0
    return q


Primitive = Callable[[np.ndarray, np.random.Generator, _Style], np.ndarray]
_WALK = partial(_gait, kind="walk")
_WAIT = partial(_look_around, kind="wait")
# Per action: the main primitive, then the ones that interrupt it now and then.
ACTION_PRIMITIVES: dict[str, tuple[Primitive, ...]] = {
    "walking": (_WALK, _WAIT),
    "eating": (partial(_seated, _reach, target="mouth"), partial(_seated, _look_around, kind="wait")),
    "smoking": (partial(_reach, target="mouth"), _WAIT, _WALK),
    "discussion": (partial(_gesture, kind="talk"), _WAIT, _WALK),
    "directions": (partial(_gesture, kind="point"), _WAIT, _WALK),
    "greeting": (partial(_gesture, kind="wave"), _WALK, _WAIT),
    "phoning": (partial(_reach, target="ear"), _WALK, _WAIT),
    "posing": (partial(_look_around, kind="pose"), partial(_gesture, kind="wave")),
    "purchases": (partial(_reach, target="forward"), _WALK),
    "sitting": (partial(_seated, _gesture, kind="talk"), partial(_seated, _reach, target="mouth"), _sit_cycle),
    "sittingdown": (_sit_cycle, partial(_seated, _look_around, kind="wait")),
    "takingphoto": (partial(_reach, target="camera"), _WAIT, _WALK),
    "waiting": (_WAIT, _WALK),
    "walkingdog": (partial(_gait, kind="dog"), _WAIT),
    "walkingtogether": (partial(_gait, kind="together"), partial(_gesture, kind="talk")),
}


# ----------------------------------------------------------------------------------------- skeleton & FK

def _rot(axis: int, angle: np.ndarray) -> np.ndarray:
    """``(T, 3, 3)`` rotation by ``angle`` about a coordinate axis, right-hand rule, for the skeleton's
    row-vector convention (``v @ M`` is the rotated ``v``)."""
    c, s = np.cos(angle), np.sin(angle)
    m = np.zeros((len(angle), 3, 3))
    i, j = [(1, 2), (2, 0), (0, 1)][axis]
    m[:, axis, axis] = 1
    m[:, i, i] = m[:, j, j] = c
    m[:, i, j], m[:, j, i] = s, -s
    return m


def _log(m: np.ndarray) -> np.ndarray:
    """Exponential map ``(T, 3)`` of rotation matrices, the inverse of Rodrigues' formula (angles < pi)."""
    theta = np.arccos(np.clip((np.trace(m, axis1=1, axis2=2) - 1) / 2, -1.0, 1.0))
    w = np.stack([m[:, 2, 1] - m[:, 1, 2], m[:, 0, 2] - m[:, 2, 0], m[:, 1, 0] - m[:, 0, 1]], axis=1)
    scale = np.where(theta < 1e-6, 0.5, theta / (2 * np.sin(np.maximum(theta, 1e-6))))
    return w * scale[:, None]


_MIRROR = np.diag([-1.0, 1.0, 1.0])  # the sagittal plane: right-side rotations are S M S of the left one


def _local_rotations(q: np.ndarray) -> dict[int, np.ndarray]:
    """Local rotation matrices ``{joint: (T, 3, 3)}`` of the joints the DOFs move."""
    d = {name: q[:, i] for name, i in _I.items()}
    half = {k: d[k] / 2 for k in ("spine_flex", "spine_bend", "spine_yaw", "neck_flex", "neck_yaw")}
    spine = _rot(1, half["spine_yaw"]) @ _rot(2, half["spine_bend"]) @ _rot(0, half["spine_flex"])
    neck = _rot(1, half["neck_yaw"]) @ _rot(0, half["neck_flex"])
    rots = {11: spine, 12: spine, 13: neck, 14: neck}
    # Clavicle: the rest-pose arm points up; turning it -90 deg about z makes the left arm point left.
    # Shoulder and elbow DOFs are then written in that "T-pose" frame C (arm along +x, elbow flexion
    # bringing the forearm forward) and conjugated into the joint's frame: local = C M C^T.
    clavicle = _rot(2, np.full(len(q), -np.pi / 2))
    for side, (hip, knee, ankle, clav, shoulder, elbow, wrist) in (("l", (6, 7, 8, 16, 17, 18, 19)),
                                                                     ("r", (1, 2, 3, 24, 25, 26, 27))):
        s = {k: d[f"{side}_{k}"] for k in _SIDED}
        left = {
            hip: _rot(2, s["hip_abd"]) @ _rot(0, -s["hip_flex"]),
            knee: _rot(0, s["knee"]),
            ankle: _rot(0, -s["ankle"]),
            clav: clavicle,
            # Twist about the upper arm, then lower it from horizontal (abduction = angle from hanging),
            # then swing it forward (flexion).
            shoulder: clavicle @ _rot(0, s["sh_twist"]) @ _rot(2, s["sh_abd"] - np.pi / 2) @ _rot(0, -s["sh_flex"])
            @ clavicle.transpose(0, 2, 1),
            elbow: clavicle @ _rot(1, -s["elbow"]) @ clavicle.transpose(0, 2, 1),
            wrist: clavicle @ _rot(2, s["wrist"]) @ clavicle.transpose(0, 2, 1),
        }
        rots |= left if side == "l" else {j: _MIRROR @ m @ _MIRROR for j, m in left.items()}
    return rots


def _subject(subject: int, seed: int) -> tuple[_Style, np.ndarray]:
    """A subject's style and bone offsets (mm): overall size and per-limb proportions vary by a few %."""
    rng = np.random.default_rng([seed, subject, 0])
    offsets = OFFSETS_MM * rng.uniform(0.92, 1.08)
    for joints in (range(1, 11), range(11, 16), range(16, 32)):  # legs, spine and head, arms
        offsets[list(joints)] *= rng.uniform(0.95, 1.05)
    base = np.zeros(len(DOFS))
    base[_I["spine_flex"]] = rng.uniform(0.0, 0.12)
    base[_I["neck_flex"]] = rng.uniform(-0.05, 0.15)
    for side in "lr":
        base[_I[f"{side}_sh_abd"]] = rng.uniform(0.1, 0.2)
        base[_I[f"{side}_sh_twist"]] = rng.uniform(0.1, 0.4)
        base[_I[f"{side}_elbow"]] = rng.uniform(0.1, 0.35)
        base[_I[f"{side}_knee"]] = rng.uniform(0.02, 0.1)
        base[_I[f"{side}_hip_abd"]] = rng.uniform(0.02, 0.08)
        base[_I[f"{side}_wrist"]] = rng.uniform(-0.2, 0.2)
    style = _Style(base=base, cadence=rng.uniform(0.8, 1.0), stride=rng.uniform(0.85, 1.15),
                   arm_swing=rng.uniform(0.6, 1.3), gesture=rng.uniform(0.8, 1.2), tempo=rng.uniform(0.85, 1.15),
                   dominant="r" if rng.random() < 0.85 else "l")
    return style, offsets


def _motion(action: str, frames: int, rng: np.random.Generator, style: _Style) -> np.ndarray:
    """``(frames, D)`` DOFs of one file: segments of 2-5 s, the action's main primitive with probability
    0.65, cross-faded with smoothsteps that sum to one."""
    primitives = ACTION_PRIMITIVES[action]
    t = np.arange(frames) / FPS
    starts, labels = [0.0], [0]
    switch = rng.uniform(2.0, 5.0)
    while switch < t[-1]:
        label = 0 if rng.random() < 0.65 else int(rng.integers(1, len(primitives)))
        if label != labels[-1]:  # else the same primitive goes on (two gaits out of phase would cancel out)
            starts.append(switch)
            labels.append(label)
        switch += rng.uniform(2.0, 5.0)
    # up[k]: the total weight of segments k, k+1, ... rises from 0 to 1 around the start of segment k.
    up = [np.ones_like(t)] + [_minjerk((t - s + CROSSFADE_S) / (2 * CROSSFADE_S)) for s in starts[1:]]
    up.append(np.zeros_like(t))
    q = np.zeros((frames, len(DOFS)))
    for k, label in enumerate(labels):
        w = up[k] - up[k + 1]
        active = w > 0
        origin = starts[k] - CROSSFADE_S if k else 0.0
        q[active] += w[active, None] * primitives[label](t[active] - origin, rng, style)
    return q


def _expmap_file(q: np.ndarray, rng: np.random.Generator, offsets: np.ndarray) -> np.ndarray:
    """``(T, 99)`` frames of the release format from DOFs: root translation (mm), 32 expmaps."""
    frames = len(q)
    q = q.copy()
    q[:, _ANGLES] += rng.normal(0, ANGLE_NOISE_RAD, (frames, q.shape[1] - 2))
    rots = _local_rotations(q)
    expmaps = np.zeros((frames, NUM_JOINTS, 3))
    for joint, m in rots.items():
        expmaps[:, joint] = _log(m)
    heading = np.cumsum(q[:, _I["turn"]]) / FPS + rng.uniform(-np.pi, np.pi)
    expmaps[:, 0, 1] = -(np.mod(heading + np.pi, 2 * np.pi) - np.pi)  # the yaw _rot(1, heading), in (-pi, pi]
    # The root walks along its heading; its height puts the lowest foot joint on the floor (forward
    # kinematics of the legs only, row-vector convention as in skeleton.forward_kinematics).
    step = q[:, _I["speed"]] * 1000 / FPS
    xz = np.cumsum(np.stack([step * np.sin(heading), step * np.cos(heading)], 1), 0)
    lowest = np.zeros(frames)
    for hip, knee, ankle, toe, site in ((1, 2, 3, 4, 5), (6, 7, 8, 9, 10)):
        g = rots[hip]
        foot = offsets[hip] + offsets[knee] @ g
        g = rots[knee] @ g
        foot = foot + offsets[ankle] @ g
        g = rots[ankle] @ g
        toes = foot + offsets[toe] @ g
        lowest = np.minimum.reduce([lowest, foot[:, 1], toes[:, 1], (toes + offsets[site] @ g)[:, 1]])
    root = np.stack([xz[:, 0], -lowest, xz[:, 1]], 1)
    return np.concatenate([root, expmaps.reshape(frames, -1)], 1)


_DIGITS = np.array([[ord(c) for c in f"{i:03d}"] for i in range(1000)], dtype=np.uint8)


def _format(rows: np.ndarray) -> bytes:
    """``"%.6f"`` comma-separated lines (|x| < 1e6), vectorised: np.savetxt takes seconds for the dataset.

    Each number is laid out as 15 bytes (sign, 6 integer digits, point, 6 decimals, separator); the
    sign of non-negative numbers and the leading zeros are then dropped.
    """
    q = np.rint(np.abs(rows) * 1e6).astype(np.int64)
    integer, fraction = np.divmod(q, 10 ** 6)
    text = np.empty(rows.shape + (15,), dtype=np.uint8)
    text[..., 0] = np.where((rows < 0) & (q > 0), ord("-"), 0)
    text[..., 1:4] = _DIGITS[integer // 1000]
    text[..., 4:7] = _DIGITS[integer % 1000]
    text[..., 7] = ord(".")
    text[..., 8:11] = _DIGITS[fraction // 1000]
    text[..., 11:14] = _DIGITS[fraction % 1000]
    text[..., 14] = ord(",")
    text[:, -1, 14] = ord("\n")
    leading = text[..., 1:6]  # integer digits before the units digit
    leading[np.cumsum(leading != ord("0"), -1) == 0] = 0
    flat = text.ravel()
    return flat[flat != 0].tobytes()


# ---------------------------------------------------------------------------------------------------- API

def generate(root: str | Path, subjects: Sequence[int] = (1, 5, 6, 7, 8, 9, 11), frames: int = 500,
             seed: int = 0) -> Path:
    """Writes ``S{n}/{action}_{1,2}.txt`` (``frames`` lines at 50 Hz) and ``S{n}/skeleton_offsets.txt``.

    500 lines = 10 s = 250 frames at 25 fps, enough for the 256-window protocol (start frames drawn in
    ``[16, T - 150)``) while keeping a default training run short. Deterministic for a ``seed``.
    """
    from pose_forecasting.data.h36m import ACTIONS

    root = Path(root)
    for subject in subjects:
        style, offsets = _subject(subject, seed)
        folder = root / f"S{subject}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "skeleton_offsets.txt").write_bytes(_format(offsets))
        for action in ACTIONS:
            for sub in (1, 2):
                rng = np.random.default_rng([seed, subject, zlib.crc32(action.encode()), sub])
                q = _motion(action, frames, rng, style)
                (folder / f"{action}_{sub}.txt").write_bytes(_format(_expmap_file(q, rng, offsets)))
    return root


def ensure_synthetic(cache_dir: str | Path, **kwargs: object) -> Path:
    """Generates the dataset once into ``cache_dir/<hash of the arguments>/`` and returns that root
    (``shared_utils.cache.generate_once``: a marker written last, so an interrupted run or two processes at
    once never leave a half dataset that looks complete). ``kwargs`` are :func:`generate`'s arguments."""
    bound = inspect.signature(generate).bind(None, **kwargs)
    bound.apply_defaults()
    settings = {k: v for k, v in bound.arguments.items() if k != "root"}
    settings["subjects"] = [int(s) for s in settings["subjects"]]  # a tuple or a YAML list: one record
    record = {"version": VERSION, **settings}
    return generate_once(cache_dir, record, lambda root: generate(root, **settings))
