"""Task families, templated instructions, generalisation splits and success checks.

A task is a scene (which objects, where) plus sub-goals ``(block, target)``: a block must end in a
bowl, on another block or in a zone. Success is read from the physics state only (object poses and
the gripper), never from what the policy did. The splits follow CLIPort's seen/unseen colours and
VIMA-Bench's levels:

- ``seen``: colour pairs and phrasings of training;
- ``unseen_combo``: held-out (pick colour, place colour) pairs; every colour is seen in training,
  only the combination is new (VIMA's "novel combination");
- ``unseen_phrasing``: training colour pairs, held-out instruction templates (a text file);
- ``distractors``: two extra blocks and one extra bowl/zone of other colours;
- ``perturbed``: camera pose and lighting moved (the tabletop env applies it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from vlm_robot_control.env.scene import BLOCK_HALF, BOWL_RADIUS, WORKSPACE, ZONE_HALF

COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.85, 0.15, 0.15), "green": (0.15, 0.65, 0.2), "blue": (0.15, 0.3, 0.85),
    "yellow": (0.95, 0.85, 0.1), "purple": (0.55, 0.2, 0.7), "orange": (0.95, 0.5, 0.1),
}
COLOUR_NAMES = tuple(COLOURS)
FAMILIES = ("pick_place", "stack", "push", "put_all", "sort")
SINGLE_STEP = ("pick_place", "stack", "push")
SPLITS = ("seen", "unseen_combo", "unseen_phrasing", "distractors", "perturbed")
MAX_STEPS_PER_GOAL = 100   # expert needs 45-75 control steps (25 Hz) per pick-and-place

# The privileged state lists objects in fixed slots: (kind, colour, instance). Up to 3 blocks of a
# colour (put_all), one bowl and one zone per colour.
INSTANCES = {"block": 3, "bowl": 1, "zone": 1}
SLOTS = [(k, c, i) for k, n in INSTANCES.items() for c in COLOUR_NAMES for i in range(n)]
SLOT_INDEX = {s: n for n, s in enumerate(SLOTS)}

# Held-out colour pairs of unseen_combo: the 6 ordered pairs three colours apart in COLOURS
# (red-yellow, green-purple, blue-orange, both ways). The other pairs are the training pairs.
HELDOUT_PAIRS = frozenset((a, b) for i, a in enumerate(COLOUR_NAMES) for j, b in enumerate(COLOUR_NAMES)
                          if (i - j) % 6 == 3)

TEMPLATES: dict[str, tuple[str, ...]] = {
    "pick_place": ("pick the {pick} and place it in the {place}", "put the {pick} in the {place}",
                   "place the {pick} into the {place}", "move the {pick} to the {place}",
                   "pick up the {pick} and drop it in the {place}"),
    "stack": ("stack the {pick} on the {place}", "put the {pick} on top of the {place}",
              "place the {pick} onto the {place}", "pick up the {pick} and stack it on the {place}"),
    "push": ("push the {pick} to the {place}", "slide the {pick} into the {place}",
             "push the {pick} onto the {place}"),
    "put_all": ("put all the {pick}s in the {place}", "place every {pick} in the {place}"),
    "sort": ("sort the blocks by colour", "put each block in the bowl of its colour"),
}


def load_phrasings(path: str | Path) -> tuple[str, ...]:
    """Instruction templates from a text file, one per line, with ``{pick}`` / ``{place}``.

    Blank lines and ``#`` comments are skipped. Errors name the file, the line and what is expected.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"paraphrase_file {path}: no such file (expected a text file, one "
                                "instruction template per line with {pick} and {place})")
    templates = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            line.format(pick="x", place="y")
        except (KeyError, IndexError, ValueError) as err:
            raise ValueError(f"{path}:{n}: template {line!r} has a placeholder other than {{pick}} / "
                             f"{{place}} ({err!r})") from None
        templates.append(line)
    if not templates:
        raise ValueError(f"paraphrase_file {path}: no templates found (one per line with {{pick}}/{{place}})")
    return tuple(templates)


def heldout_phrasings(family: str) -> tuple[str, ...]:
    """The built-in held-out phrasings of a family (``env/paraphrases/<family>.txt``)."""
    return load_phrasings(resources.files("vlm_robot_control.env") / "paraphrases" / f"{family}.txt")


@dataclass
class Task:
    """One episode's task: the objects, their start positions, the instruction and the sub-goals."""

    family: str
    instruction: str
    objects: list[tuple[str, str]]            # (kind, colour) in body order: blocks, bowls, zones
    positions: np.ndarray                     # (n_objects, 2) start xy
    goals: list[tuple[int, int]]              # (block object index, target object index)
    yaws: np.ndarray = field(default_factory=lambda: np.zeros(0))  # per block

    def counts(self) -> tuple[int, int, int]:
        kinds = [k for k, _ in self.objects]
        return kinds.count("block"), kinds.count("bowl"), kinds.count("zone")

    def slots(self) -> list[int]:
        """The state slot of each object: instances of the same (kind, colour) in object order."""
        seen: dict[tuple[str, str], int] = {}
        out = []
        for obj in self.objects:
            i = seen.get(obj, 0)
            seen[obj] = i + 1
            out.append(SLOT_INDEX[(obj[0], obj[1], i)])
        return out


def _pair(rng: np.random.Generator, split: str, distinct: bool) -> tuple[str, str]:
    """A (pick colour, place colour) pair: held-out pairs for unseen_combo, training pairs otherwise."""
    while True:
        a, b = rng.choice(COLOUR_NAMES, size=2, replace=not distinct)
        if ((a, b) in HELDOUT_PAIRS) == (split == "unseen_combo"):
            return str(a), str(b)


def _others(rng: np.random.Generator, exclude: set[str], n: int) -> list[str]:
    pool = [c for c in COLOUR_NAMES if c not in exclude]
    return [str(c) for c in rng.choice(pool, size=n, replace=False)]


def _place_objects(rng: np.random.Generator, objects: list[tuple[str, str]]) -> np.ndarray:
    """Rejection-sample start positions: bowls/zones apart, blocks clear of them and of the open gripper."""
    # Minimum centre distances: big (bowl/zone) pairs, block to big, block to block. The open
    # fingers reach 4 cm to each side of a block, so a block keeps that much room from walls.
    min_big, min_block_big, min_block = 2 * BOWL_RADIUS + 0.04, BOWL_RADIUS + 0.05, 0.065
    big_lim = WORKSPACE - 0.02
    for _ in range(2000):
        pos = np.zeros((len(objects), 2))
        ok = True
        for n, (kind, _) in enumerate(objects):
            lim = big_lim if kind != "block" else WORKSPACE
            for _ in range(50):
                p = rng.uniform(-lim, lim, size=2)
                dist = np.linalg.norm(pos[:n] - p, axis=1)
                need = np.array([min_big if kind != "block" and k != "block" else
                                 min_block if kind == "block" and k == "block" else min_block_big
                                 for k, _ in objects[:n]])
                if np.all(dist >= need):
                    pos[n] = p
                    break
            else:
                ok = False
                break
        if ok:
            return pos
    raise RuntimeError(f"could not place {objects} in the workspace (too many objects?)")


def sample_task(family: str, split: str, rng: np.random.Generator,
                phrasings: tuple[str, ...] | None = None) -> Task:
    """A random task of ``family`` for ``split``; ``phrasings`` replaces the training templates."""
    if family not in FAMILIES:
        raise ValueError(f"task {family!r}: expected one of {FAMILIES}")
    if split not in SPLITS:
        raise ValueError(f"split {split!r}: expected one of {SPLITS}")
    templates = phrasings or TEMPLATES[family]
    extra = 2 if split == "distractors" else 0   # extra blocks; plus one bowl/zone
    blocks: list[str]
    if family in ("pick_place", "push"):
        target_kind = "bowl" if family == "pick_place" else "zone"
        pick, place = _pair(rng, split, distinct=False)
        blocks = [pick, *_others(rng, {pick}, 1 + extra)]
        targets = [place, *_others(rng, {place}, 1 + (split == "distractors"))]
        goals_by_colour = [(0, 0)]
        words = {"pick": f"{pick} block", "place": f"{place} {target_kind}"}
    elif family == "stack":
        target_kind = "bowl"
        pick, place = _pair(rng, split, distinct=True)
        blocks = [pick, place, *_others(rng, {pick, place}, 1 + extra)]
        targets = _others(rng, set(), 1) if split == "distractors" else []
        goals_by_colour = []
        words = {"pick": f"{pick} block", "place": f"{place} block"}
    elif family == "put_all":
        target_kind = "bowl"
        pick, place = _pair(rng, split, distinct=False)
        n_target = int(rng.integers(2, 4))
        blocks = [pick] * n_target + _others(rng, {pick}, 1 + extra)
        targets = [place, *_others(rng, {place}, 1 + (split == "distractors"))]
        goals_by_colour = [(i, 0) for i in range(n_target)]
        words = {"pick": f"{pick} block", "place": f"{place} bowl"}
    else:  # sort: three blocks of two colours into the bowls of their colours
        target_kind = "bowl"
        a, b = _pair(rng, split, distinct=True)
        blocks = [a, a, b]
        targets = [a, b]
        goals_by_colour = [(0, 0), (1, 0), (2, 1)]
        words = {"pick": "", "place": ""}
        if split == "distractors":  # distractors for sort are bowls of other colours (blocks would need sorting too)
            targets += _others(rng, {a, b}, 2)
    objects = [("block", c) for c in blocks] + [(target_kind, c) for c in targets]
    if family == "stack":
        goals = [(0, 1)]
    else:
        goals = [(i, len(blocks) + j) for i, j in goals_by_colour]
    instruction = str(rng.choice(templates)).format(**words)
    positions = _place_objects(rng, objects)
    yaws = rng.uniform(-0.3, 0.3, size=len(blocks))
    return Task(family, instruction, objects, positions, goals, yaws)


def goal_reached(kind: str, block, target, held: bool) -> bool:
    """Whether a block (xyz) satisfies its goal relative to a target (xyz) of ``kind``.

    Plain float arithmetic (it runs every control step): numpy calls on 3-vectors cost more.
    """
    if held:
        return False
    dx, dy = abs(float(block[0]) - float(target[0])), abs(float(block[1]) - float(target[1]))
    z = float(block[2])
    if kind == "bowl":     # released inside the wall ring (possibly on another block in the bowl)
        return math.hypot(dx, dy) < BOWL_RADIUS - BLOCK_HALF and z < 0.06
    if kind == "block":    # on top of the other block, roughly aligned
        dz = z - float(target[2])
        return dx < 1.4 * BLOCK_HALF and dy < 1.4 * BLOCK_HALF and 1.5 * BLOCK_HALF < dz < 2.6 * BLOCK_HALF
    return dx < ZONE_HALF and dy < ZONE_HALF and z < 1.5 * BLOCK_HALF   # zone: pushed onto it
