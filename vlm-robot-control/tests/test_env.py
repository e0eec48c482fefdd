"""The tabletop environment: gymnasium API, determinism, generalisation splits, object placement,
success checks, the privileged state and the action semantics."""

from __future__ import annotations

import math
import re
import warnings

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import vlm_robot_control  # noqa: F401  (registers VLMTabletop-v0)
from vlm_robot_control.env import scene, tasks
from vlm_robot_control.env.expert import ScriptedExpert
from vlm_robot_control.env.tabletop import MAX_DELTA, TabletopEnv
from vlm_robot_control.env.tasks import (
    COLOUR_NAMES,
    FAMILIES,
    HELDOUT_PAIRS,
    SLOTS,
    SPLITS,
    TEMPLATES,
    goal_reached,
    heldout_phrasings,
    load_phrasings,
    sample_task,
)


def make(family: str = "pick_place", split: str = "seen", **kwargs) -> TabletopEnv:
    return TabletopEnv(family, split, **kwargs)


def objects_of(task, kind: str) -> list[str]:
    return [colour for k, colour in task.objects if k == kind]


# -- gymnasium API ---------------------------------------------------------------------------------

@pytest.mark.parametrize("observation_image", [False, True])
def test_check_env_passes_without_warnings(observation_image):
    env = gymnasium.make("VLMTabletop-v0", task="put_all", render_mode="rgb_array",
                         observation_image=observation_image).unwrapped
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env)
    assert [str(w.message) for w in caught] == []
    obs, _ = env.reset(seed=0)
    assert ("image" in obs) == observation_image
    if observation_image:
        assert obs["image"].shape == (96, 96, 3) and obs["image"].dtype == np.uint8
    env.close()


@pytest.mark.parametrize("family", FAMILIES)
def test_gymnasium_make_and_render_every_family(family):
    env = gymnasium.make("VLMTabletop-v0", task=family, render_mode="rgb_array")
    obs, info = env.reset(seed=3)
    assert env.unwrapped.family == family and info["family"] == family and info["split"] == "seen"
    assert isinstance(info["instruction"], str) and info["instruction"] == env.unwrapped.task.instruction
    assert info["subgoals_total"] == len(env.unwrapped.task.goals) and info["subgoals_done"] == 0
    assert not info["is_success"]
    assert env.observation_space.contains(obs)
    frame = env.render()
    assert frame.shape == (96, 96, 3) and frame.dtype == np.uint8
    assert frame.reshape(-1, 3).std(axis=0).max() > 5          # a scene, not a blank frame
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
    assert reward == 0.0 and not terminated and not truncated
    env.close()


def test_render_without_render_mode_returns_none_and_bad_mode_is_refused():
    assert make().render() is None
    with pytest.raises(ValueError, match="render_mode"):
        make(render_mode="human")


def test_bad_family_and_split_are_refused():
    with pytest.raises(ValueError, match="task 'pick'"):
        make("pick")
    with pytest.raises(ValueError, match="split 'unseen'"):
        make("pick_place", "unseen")


# -- determinism -----------------------------------------------------------------------------------

def trajectory(env: TabletopEnv, seed: int, actions: np.ndarray) -> tuple[dict, list[dict]]:
    obs, info = env.reset(seed=seed)
    observations = [obs]
    for action in actions:
        observations.append(env.step(action)[0])
    return info, observations


def assert_same_observations(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for key in x:
            np.testing.assert_array_equal(x[key], y[key], err_msg=key)


@pytest.mark.parametrize("family", ["pick_place", "put_all"])
def test_seeded_reset_and_steps_are_deterministic(family):
    actions = np.random.default_rng(0).uniform(-1, 1, size=(15, 4))
    a = make(family, observation_image=True, image_size=32)
    b = make(family, observation_image=True, image_size=32)
    info_a, obs_a = trajectory(a, 11, actions)
    task_a = a.task
    info_b, obs_b = trajectory(b, 11, actions)
    assert info_a == info_b
    np.testing.assert_array_equal(task_a.positions, b.task.positions)
    np.testing.assert_array_equal(task_a.yaws, b.task.yaws)
    assert task_a.objects == b.task.objects and task_a.goals == b.task.goals
    assert_same_observations(obs_a, obs_b)
    # The same env after other episodes (colours and poses rewritten in between) replays it too.
    trajectory(a, 12, actions)
    info_again, obs_again = trajectory(a, 11, actions)
    assert info_again == info_a
    assert_same_observations(obs_again, obs_a)


def test_different_seeds_give_different_episodes():
    env = make("pick_place", observation_image=True, image_size=32)
    episodes, positions = [], []
    for seed in range(6):
        episodes.append(env.reset(seed=seed))
        positions.append(env.task.positions.copy())
    for i in range(6):
        for j in range(i):
            assert not np.allclose(positions[i], positions[j])
            assert not np.array_equal(episodes[i][0]["image"], episodes[j][0]["image"])
            assert not np.array_equal(episodes[i][0]["state"], episodes[j][0]["state"])
    assert len({info["instruction"] for _, info in episodes}) > 1


# -- splits ----------------------------------------------------------------------------------------

def colour_pair(task) -> tuple[str, str]:
    """The (pick, place) colours: of the first goal, or sort's two block colours."""
    if task.family == "sort":
        return task.objects[0][1], task.objects[2][1]
    block, target = task.goals[0]
    return task.objects[block][1], task.objects[target][1]


def test_heldout_pairs_are_the_documented_six():
    assert HELDOUT_PAIRS == {("red", "yellow"), ("yellow", "red"), ("green", "purple"), ("purple", "green"),
                             ("blue", "orange"), ("orange", "blue")}


@pytest.mark.parametrize("family", FAMILIES)
def test_unseen_combo_uses_only_heldout_pairs_and_seen_never(family):
    distinct = family in ("stack", "sort")
    all_pairs = {(a, b) for a in COLOUR_NAMES for b in COLOUR_NAMES if a != b or not distinct}
    pairs = {split: {colour_pair(sample_task(family, split, np.random.default_rng(s)))
                     for s in range(150 if split in ("seen", "unseen_combo") else 30)} for split in SPLITS}
    assert pairs["unseen_combo"] == set(HELDOUT_PAIRS)                  # only, and all, held-out pairs
    for split in ("seen", "unseen_phrasing", "distractors", "perturbed"):
        assert pairs[split] <= all_pairs - HELDOUT_PAIRS, split
    assert pairs["seen"] == all_pairs - HELDOUT_PAIRS                   # every training pair occurs


def instruction_words(task) -> dict[str, str]:
    if task.family == "sort":
        return {}
    pick, place = colour_pair(task)
    place_kind = "block" if task.family == "stack" else task.objects[task.goals[0][1]][0]
    return {"pick": f"{pick} block", "place": f"{place} {place_kind}"}


def possible_instructions(task, templates) -> set[str]:
    return {t.format(**instruction_words(task)) for t in templates}


@pytest.mark.parametrize("family", FAMILIES)
def test_unseen_phrasing_uses_only_heldout_templates(family):
    heldout = heldout_phrasings(family)
    assert heldout and not set(heldout) & set(TEMPLATES[family])
    used = set()
    env = make(family, "unseen_phrasing")
    for seed in range(30):
        _, info = env.reset(seed=seed)
        assert info["instruction"] in possible_instructions(env.task, heldout)
        used |= {t for t in heldout if t.format(**instruction_words(env.task)) == info["instruction"]}
    assert used == set(heldout)
    seen = make(family, "seen")
    for seed in range(30):
        _, info = seen.reset(seed=seed)
        assert info["instruction"] in possible_instructions(seen.task, TEMPLATES[family])
        assert info["instruction"] not in possible_instructions(seen.task, heldout)


PHRASINGS = """# my held-out phrasings, one per line

hand the {pick} over to the {place}
   drop the {pick} into the {place}
"""


def test_user_phrasing_file(tmp_path):
    path = tmp_path / "mine.txt"
    path.write_text(PHRASINGS)
    templates = load_phrasings(path)
    assert templates == ("hand the {pick} over to the {place}", "drop the {pick} into the {place}")
    env = make("pick_place", "unseen_phrasing", phrasings=templates)
    instructions = set()
    for seed in range(12):
        _, info = env.reset(seed=seed)
        assert info["instruction"] in possible_instructions(env.task, templates)
        instructions.add(info["instruction"].split(" the ")[0])
    assert instructions == {"hand", "drop"}


@pytest.mark.parametrize("bad", ["put the {colour} in the {place}", "put the {} in the {place}",
                                 "put the {0} in the {place}", "put the {pick in the {place}"])
def test_phrasing_file_with_bad_placeholder_names_file_and_line(tmp_path, bad):
    path = tmp_path / "bad.txt"
    path.write_text(f"# comment\nput the {{pick}} in the {{place}}\n\n{bad}\n")
    with pytest.raises(ValueError, match=re.escape(f"{path}:4:")):
        load_phrasings(path)


def test_missing_or_empty_phrasing_file_is_named(tmp_path):
    missing = tmp_path / "nope.txt"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        load_phrasings(missing)
    empty = tmp_path / "empty.txt"
    empty.write_text("# only a comment\n\n")
    with pytest.raises(ValueError, match=re.escape(str(empty)) + ".*no templates"):
        load_phrasings(empty)


# (blocks, bowls, zones) of seen -> distractors: two extra blocks and one extra bowl/zone
# (sort: two extra bowls, since extra blocks would need sorting too).
COUNTS = {"pick_place": ((2, 2, 0), (4, 3, 0)), "push": ((2, 0, 2), (4, 0, 3)),
          "stack": ((3, 0, 0), (5, 1, 0)), "sort": ((3, 2, 0), (3, 4, 0))}


@pytest.mark.parametrize("family", FAMILIES)
def test_distractors_add_objects(family):
    for seed in range(5):
        plain, extra = make(family, "seen"), make(family, "distractors")
        obs_plain, _ = plain.reset(seed=seed)
        obs_extra, _ = extra.reset(seed=seed)
        if family == "put_all":   # 2 or 3 blocks to put, one other block, two bowls (+2 blocks, +1 bowl)
            n_goals = len(plain.task.goals)
            assert plain.task.counts() == (n_goals + 1, 2, 0) and len(extra.task.goals) in (2, 3)
            assert extra.task.counts() == (len(extra.task.goals) + 3, 3, 0)
        else:
            assert (plain.task.counts(), extra.task.counts()) == COUNTS[family]
        for env, obs in ((plain, obs_plain), (extra, obs_extra)):
            present = obs["environment_state"].reshape(len(SLOTS), 4)[:, 3]
            assert present.sum() == len(env.task.objects)


@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize("family", FAMILIES)
def test_instructions_stay_unambiguous(family, split):
    """Distractors never share the colour a goal refers to, so the instruction names one thing."""
    for seed in range(30):
        task = sample_task(family, split, np.random.default_rng(seed))
        blocks, n_blocks = objects_of(task, "block"), len(objects_of(task, "block"))
        targets = [c for k, c in task.objects if k != "block"]
        assert len(set(targets)) == len(targets)                   # one bowl/zone per colour
        pick, place = colour_pair(task)
        if family in ("pick_place", "push"):
            assert blocks.count(pick) == 1 and task.goals == [(blocks.index(pick), n_blocks + targets.index(place))]
        elif family == "stack":
            assert blocks.count(pick) == 1 and blocks.count(place) == 1
            assert task.goals == [(blocks.index(pick), blocks.index(place))]
        elif family == "put_all":
            assert sorted(b for b, _ in task.goals) == [i for i, c in enumerate(blocks) if c == pick]
            assert {t for _, t in task.goals} == {n_blocks + targets.index(place)}
        else:   # sort: every block into the bowl of its colour
            assert sorted(b for b, _ in task.goals) == list(range(n_blocks))
            assert all(targets[t - n_blocks] == blocks[b] for b, t in task.goals)


def test_perturbed_changes_the_picture_not_the_scene():
    seen = make("pick_place", "seen", observation_image=True)
    perturbed = make("pick_place", "perturbed", observation_image=True)
    table = []
    for seed in range(6):
        obs_seen, info_seen = seen.reset(seed=seed)
        obs_pert, info_pert = perturbed.reset(seed=seed)
        assert info_seen["instruction"] == info_pert["instruction"]
        assert seen.task.objects == perturbed.task.objects and seen.task.goals == perturbed.task.goals
        np.testing.assert_array_equal(seen.task.positions, perturbed.task.positions)
        np.testing.assert_array_equal(seen.task.yaws, perturbed.task.yaws)
        np.testing.assert_array_equal(obs_seen["environment_state"], obs_pert["environment_state"])
        # The camera renders from this episode's pose (with sleeping on, a stale pose could survive a reset).
        np.testing.assert_allclose(perturbed._data.cam_xpos[0], perturbed._model.cam_pos[0], atol=1e-12)
        # The table fills most of the image: its colour is the median pixel.
        colour_seen = np.median(obs_seen["image"].reshape(-1, 3), axis=0)
        colour_pert = np.median(obs_pert["image"].reshape(-1, 3), axis=0)
        table.append(colour_seen)
        assert np.abs(colour_seen - colour_pert).max() >= 5, seed
        assert np.abs(obs_seen["image"].astype(int) - obs_pert["image"]).mean() > 5
    assert all(np.array_equal(t, table[0]) for t in table)       # seen's camera and light never move
    # Perturbations do not accumulate over episodes: a fresh env renders seed 2 the same way.
    again, _ = make("pick_place", "perturbed", observation_image=True).reset(seed=2)
    np.testing.assert_array_equal(perturbed.reset(seed=2)[0]["image"], again["image"])


def test_perturbed_starts_the_gripper_where_seen_does():
    seen, perturbed = make("pick_place", "seen"), make("pick_place", "perturbed")
    for seed in range(3):
        np.testing.assert_array_equal(seen.reset(seed=seed)[0]["state"], perturbed.reset(seed=seed)[0]["state"])


# -- object placement ------------------------------------------------------------------------------

# The open gripper's reach around a grasped block: each finger box (0.024 x 0.01 m) sits at
# FINGER_OPEN + 5 mm body offset + 5 mm half thickness from the hand's centre, 12 mm long each way.
FINGER_REACH = math.hypot(0.012, scene.FINGER_OPEN + 0.005 + 0.005)
BLOCK_CIRCUMRADIUS = math.sqrt(2) * scene.BLOCK_HALF
# A bowl's wall ring: 10 boxes 8 mm thick at radius BOWL_RADIUS, each tangent to the circle and long
# enough to close the ring (half length R tan(pi/10) + 4 mm), so its outer corners are this far out.
WALL_HALF_LEN = scene.BOWL_RADIUS * math.tan(math.pi / 10) + 0.004
BOWL_OUTER = math.hypot(scene.BOWL_RADIUS + 0.004, WALL_HALF_LEN)


def check_placement(task) -> None:
    pos = task.positions
    kinds = [k for k, _ in task.objects]
    for i in range(len(kinds)):
        assert np.all(np.abs(pos[i]) <= scene.WORKSPACE), (i, pos[i])
        for j in range(i):
            d = float(np.linalg.norm(pos[i] - pos[j]))
            dx, dy = np.abs(pos[i] - pos[j])
            pair = {kinds[i], kinds[j]}
            if pair == {"bowl"}:
                assert d >= 2 * BOWL_OUTER, (i, j, d)
            elif pair == {"zone"}:
                assert max(dx, dy) >= 2 * scene.ZONE_HALF, (i, j, dx, dy)
            elif pair == {"block"}:   # an open gripper around one block does not touch another
                assert d >= FINGER_REACH + BLOCK_CIRCUMRADIUS, (i, j, d)
            elif pair == {"block", "bowl"}:   # ... nor the bowl's wall
                assert d >= FINGER_REACH + BOWL_OUTER, (i, j, d)
            else:                     # block and zone: the block starts off the zone
                assert max(dx, dy) >= scene.ZONE_HALF + BLOCK_CIRCUMRADIUS, (i, j, dx, dy)


@pytest.mark.parametrize("split", ["seen", "distractors", "unseen_combo"])
@pytest.mark.parametrize("family", FAMILIES)
def test_objects_do_not_overlap(family, split):
    for seed in range(60):
        check_placement(sample_task(family, split, np.random.default_rng(seed)))


@pytest.mark.parametrize("family", FAMILIES)
def test_env_places_objects_where_the_task_says_and_they_rest(family):
    env = make(family, "distractors")
    for seed in range(3):
        env.reset(seed=seed)
        n_blocks = env.task.counts()[0]
        start = env.block_positions().copy()
        np.testing.assert_allclose(start[:, :2], env.task.positions[:n_blocks], atol=1e-12)
        np.testing.assert_allclose(start[:, 2], scene.BLOCK_HALF, atol=1e-12)
        np.testing.assert_allclose(env.target_positions()[:, :2], env.task.positions[n_blocks:], atol=1e-12)
        for _ in range(10):   # hold still: nothing was placed inside anything else
            env.step(np.array([0.0, 0.0, 0.0, -1.0]))
        np.testing.assert_allclose(env.block_positions(), start, atol=1e-3)


def test_bowl_walls_form_a_closed_ring():
    import mujoco  # here, not at the top: vlm_robot_control must pick MUJOCO_GL=egl before mujoco loads

    model = scene.build_model(0, 1, 0)
    bowl = model.body("bowl0").id
    walls = [g for g in np.flatnonzero(model.geom_bodyid == bowl) if model.geom_type[g] == mujoco.mjtGeom.mjGEOM_BOX]
    assert len(walls) == 10
    for g in walls:
        rotation = np.zeros(9)
        mujoco.mju_quat2Mat(rotation, model.geom_quat[g])
        rotation = rotation.reshape(3, 3)
        radial = model.geom_pos[g, :2] / np.linalg.norm(model.geom_pos[g, :2])
        np.testing.assert_allclose(np.abs(rotation[:2, 0] @ radial), 1.0, atol=1e-6)   # thin side faces out
        corners = np.array([model.geom_pos[g] + rotation @ (np.array(c) * model.geom_size[g])
                            for c in ((1, 1, 1), (1, -1, 1), (-1, 1, 1), (-1, -1, 1))])
        radii = np.hypot(corners[:, 0], corners[:, 1])
        assert radii.max() <= BOWL_OUTER + 2e-4 and radii.min() >= scene.BOWL_RADIUS - 0.004   # XML rounding


# -- success checks --------------------------------------------------------------------------------

H = scene.BLOCK_HALF
BOWL = np.array([0.05, -0.02, 0.0])
ZONE = np.array([-0.06, 0.08, 0.0])
BASE = np.array([0.02, 0.03, H])            # a block resting on the table


@pytest.mark.parametrize(("kind", "block", "target", "held", "expected"), [
    ("bowl", BOWL + [0.0, 0.0, H], BOWL, False, True),                 # centred on the floor
    ("bowl", BOWL + [0.025, -0.02, H], BOWL, False, True),             # off centre, 3.2 cm < 3.75 cm
    ("bowl", BOWL + [0.0, 0.0, 3 * H], BOWL, False, True),             # on another block in the bowl
    ("bowl", BOWL + [0.04, 0.0, H], BOWL, False, False),               # against the wall: not in
    ("bowl", BOWL + [0.08, 0.0, H], BOWL, False, False),               # outside
    ("bowl", BOWL + [0.0, 0.0, 0.07], BOWL, False, False),             # above the bowl
    ("bowl", BOWL + [0.0, 0.0, H], BOWL, True, False),                 # still in the fingers
    ("block", BASE + [0.005, -0.004, 2 * H], BASE, False, True),       # stacked, slightly offset
    ("block", BASE + [0.019, 0.0, 2 * H], BASE, False, False),         # overhangs by 3/4 of a block
    ("block", BASE + [0.0, 0.0, 4 * H], BASE, False, False),           # hovering above
    ("block", BASE + [0.04, 0.0, 0.0], BASE, False, False),            # beside it on the table
    ("block", BASE + [0.0, 0.0, 2 * H], BASE, True, False),            # held on top
    ("zone", ZONE + [0.045, -0.045, H], ZONE, False, True),            # inside near a corner
    ("zone", ZONE + [0.0, 0.055, H], ZONE, False, False),              # centre just outside
    ("zone", ZONE + [0.0, 0.0, 0.04], ZONE, False, False),             # lifted over it
    ("zone", ZONE + [0.0, 0.0, H], ZONE, True, False),                 # held
])
def test_goal_reached_on_hand_built_positions(kind, block, target, held, expected):
    assert bool(goal_reached(kind, np.asarray(block, float), np.asarray(target, float), held)) is expected


# -- privileged state ------------------------------------------------------------------------------

def expected_slot(task, i: int) -> int:
    kind, colour = task.objects[i]
    instance = task.objects[:i].count((kind, colour))
    return SLOTS.index((kind, colour, instance))


@pytest.mark.parametrize("split", ["seen", "distractors"])
@pytest.mark.parametrize("family", FAMILIES)
def test_environment_state_slots(family, split):
    assert len(SLOTS) == 6 * 3 + 6 + 6
    env = make(family, split)
    expert = ScriptedExpert(env)
    for seed in range(2):
        obs, _ = env.reset(seed=seed)
        expert.reset()
        for _ in range(40):   # the expert is carrying or pushing a block by now
            obs = env.step(expert.act())[0]
        state = obs["environment_state"]
        assert state.shape == (len(SLOTS) * 4,) and state.dtype == np.float32
        state = state.reshape(len(SLOTS), 4)
        task, n_blocks = env.task, env.task.counts()[0]
        expected = np.zeros((len(SLOTS), 4))
        for i in range(len(task.objects)):
            xyz = env.block_positions()[i] if i < n_blocks else env.target_positions()[i - n_blocks]
            expected[expected_slot(task, i)] = [*xyz, 1.0]
        np.testing.assert_allclose(state, expected, atol=1e-6)
        assert len({expected_slot(task, i) for i in range(len(task.objects))}) == len(task.objects)


# -- actions ---------------------------------------------------------------------------------------

def hand_steps(env: TabletopEnv, action, n: int) -> np.ndarray:
    """Per-step hand displacement (n, 3) while repeating ``action``."""
    path = [env.hand_position()]
    for _ in range(n):
        obs = env.step(np.asarray(action, float))[0]
        path.append(env.hand_position())
        np.testing.assert_allclose(obs["state"][:3], path[-1], atol=1e-6)
    return np.diff(path, axis=0)


@pytest.mark.parametrize(("axis", "value"), [(0, 0.5), (0, -0.8), (1, 0.3), (1, -0.5), (2, -0.5), (2, -0.3)])
def test_action_moves_the_hand_by_its_fraction_of_max_delta(axis, value):
    env = make()
    env.reset(seed=4)
    action = np.array([0.0, 0.0, 0.0, -1.0])
    action[axis] = value
    steps = hand_steps(env, action, 10)
    # After the position servo catches up, every step moves value * MAX_DELTA along the axis only.
    np.testing.assert_allclose(steps[6:, axis], value * MAX_DELTA, rtol=0.03)
    others = [a for a in range(3) if a != axis]
    assert np.abs(steps[:, others]).max() < 1e-6


@pytest.mark.parametrize("value", [1.0, -1.0])
def test_full_action_moves_the_hand_by_max_delta(value):
    env = make()
    env.reset(seed=4)
    steps = hand_steps(env, [value, 0.0, 0.0, -1.0], 10)
    np.testing.assert_allclose(steps[6:, 0], value * MAX_DELTA, rtol=0.05)


def test_out_of_range_actions_are_clipped():
    a, b = make(), make()
    a.reset(seed=1)
    b.reset(seed=1)
    for _ in range(5):
        obs_a = a.step(np.array([4.0, -3.0, 0.0, 7.0]))[0]
        obs_b = b.step(np.array([1.0, -1.0, 0.0, 1.0]))[0]
    np.testing.assert_array_equal(obs_a["state"], obs_b["state"])


def test_close_and_open_the_fingers():
    env = make()
    obs, _ = env.reset(seed=2)
    assert env.finger_opening() == pytest.approx(1.0) and obs["state"][3] == pytest.approx(1.0)
    for _ in range(8):
        obs = env.step(np.array([0.0, 0.0, 0.0, 1.0]))[0]
    assert env.finger_opening() < 0.05 and obs["state"][3] == pytest.approx(env.finger_opening(), abs=1e-6)
    for _ in range(8):
        obs = env.step(np.array([0.0, 0.0, 0.0, -1.0]))[0]
    assert env.finger_opening() > 0.95 and obs["state"][3] == pytest.approx(env.finger_opening(), abs=1e-6)


@pytest.mark.parametrize("family", ["pick_place", "sort"])
def test_truncation_after_max_steps_per_goal(family):
    env = make(family)
    env.reset(seed=0)
    limit = tasks.MAX_STEPS_PER_GOAL * len(env.task.goals)
    for step in range(1, limit + 1):
        _, reward, terminated, truncated, info = env.step(np.array([0.0, 0.0, 0.0, -1.0]))
        assert reward == 0.0 and not terminated and truncated == (step == limit)
        assert not info["is_success"] and info["subgoals_total"] == len(env.task.goals)


# -- speed choices that must not change the physics a task needs --------------------------------------

def test_resting_blocks_sleep_reset_wakes_them_and_the_gripper_wakes_what_it_pushes():
    """MuJoCo sleeping (scene.py): resting blocks are frozen, a reset or a touch wakes them."""
    env = make("push")
    env.reset(seed=0)
    data, n_trees = env._data, env._model.ntree
    for _ in range(5):   # hold still: every block comes to rest and sleeps; the actuated hand never does
        env.step(np.array([0.0, 0.0, 0.0, 1.0]))
    assert data.ntree_awake == 1
    env.reset(seed=1)
    assert data.ntree_awake == n_trees
    # A reset after sleeping puts the blocks where the new task says (sleeping must not keep stale poses).
    np.testing.assert_allclose(env.block_positions()[:, :2], env.task.positions[:env.task.counts()[0]], atol=1e-12)
    expert = ScriptedExpert(env)
    moved = False
    start = env.block_positions().copy()
    for _ in range(200):   # the expert pushes the block: it must wake and move
        *_, terminated, truncated, _ = env.step(expert.act())
        moved |= bool(np.any(np.abs(env.block_positions() - start) > 0.01))
        if terminated or truncated:
            break
    assert moved and terminated


@pytest.mark.parametrize("family", FAMILIES)
def test_random_rollouts_stay_inside_the_observation_space(family):
    """The privileged state is not clipped (it costs as much as a tenth of a step): check it never needs to be."""
    env = make(family, "distractors")
    rng = np.random.default_rng(0)
    for seed in range(2):
        obs, _ = env.reset(seed=seed)
        for _ in range(150):
            obs, *_ = env.step(rng.uniform(-1, 1, size=4))
            assert env.observation_space.contains(obs)
            assert np.abs(obs["environment_state"].reshape(-1, 4)[:, :3]).max() < 0.5   # positions (m)
