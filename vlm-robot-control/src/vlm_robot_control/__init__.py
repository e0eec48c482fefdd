"""Language-conditioned robotic manipulation in a MuJoCo tabletop (see README).

Importing the package registers the environment with gymnasium::

    import gymnasium, vlm_robot_control
    env = gymnasium.make("VLMTabletop-v0", task="pick_place", render_mode="rgb_array")

(or ``gymnasium.make("vlm_robot_control:VLMTabletop-v0", ...)`` without the import).
"""

import os

# Headless offscreen rendering (EGL works on CPU-only machines); set before anything imports mujoco.
os.environ.setdefault("MUJOCO_GL", "egl")

import contextlib  # noqa: E402

import gymnasium  # noqa: E402

# Loading triton (lightning and sentence-transformers import it) after a Mesa EGL context exists
# crashes the process (two LLVMs); loading it first is safe. It costs ~0.5 s where installed.
with contextlib.suppress(ImportError):
    import triton  # noqa: F401

ENV_ID = "VLMTabletop-v0"

if ENV_ID not in gymnasium.registry:
    # No TimeLimit wrapper: the env truncates itself after 100 control steps per sub-goal.
    gymnasium.register(ENV_ID, entry_point="vlm_robot_control.env.tabletop:TabletopEnv", disable_env_checker=True)
