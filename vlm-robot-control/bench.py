"""`make bench PROJECT=vlm-robot-control`: every method x every split -> RESULTS.md.

1. ``env``, in this process: environment speed on one core, control steps/s with physics only and with a
   96 x 96 render per step (random actions, pick_place, llvmpipe limited to one thread), and the expert's steps/s.
2. Each method's config exactly as ``make train CONFIG=<method>.yaml`` runs it (fit, then rollouts of the best
   checkpoint on every split), into ``runs/vlm-robot-control/bench/<method>/version_<n>/``, timed; its metrics
   feed the tables.
3. Policy inference rate on CPU, in this process: one observation (batch 1) through each learned policy.

The numbers of each method (and ``env``) are kept with their date in ``bench.json``, from which RESULTS.md is
written: ``python bench.py --only ppo`` re-runs some methods and keeps the other rows (``--only env``: the
environment speed only); arguments after ``--`` go to every run (e.g. ``-- --trainer.max_epochs=1``).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch

from shared_utils.bench import (
    Store,
    bench_dir,
    fmt,
    markdown_table,
    median_seconds,
    parse_args,
    results_header,
    run_config,
    write_results,
)
from shared_utils.checkpoints import find_checkpoint, latest_run, load_model

# Mesa llvmpipe: render on one core, like the physics; set before the first render (env_speed), and the runs
# inherit it.
os.environ.setdefault("LP_NUM_THREADS", "1")

PROJECT = "vlm-robot-control"
HERE = Path(__file__).resolve().parent
CONFIGS = HERE / "configs"
TRAINED = ["random", "oracle", "state_bc", "grounded_bc", "pixel_film", "pixel_film_lite0", "cliport", "saycan", "ppo"]
METHODS = ["env", *TRAINED]
# Bench rows that are a config plus arguments: the ImageNet Lite0 backbone (frozen, FiLM on its stage
# outputs) instead of the small CNN; 4 epochs, as one Lite0 epoch costs ~4x a small-CNN one on CPU.
LITE0 = ["--model.init_args.net.init_args.backbone", "lite0", "--model.init_args.net.init_args.freeze_backbone", "true",
         "--trainer.max_epochs", "4"]
VARIANTS = {"pixel_film_lite0": ("pixel_film", LITE0)}
SPLITS = ["seen", "unseen_combo", "unseen_phrasing", "distractors", "perturbed"]
FAMILIES = ["pick_place", "stack", "push", "put_all", "sort"]


def env_speed(steps: int = 5000) -> dict[str, float]:
    import vlm_robot_control  # noqa: F401, I001  (before mujoco: it picks MUJOCO_GL)
    from vlm_robot_control.env.expert import ScriptedExpert
    from vlm_robot_control.env.tabletop import TabletopEnv

    import mujoco

    actions = np.random.default_rng(0).uniform(-1, 1, size=(steps, 4)).astype(np.float32)
    out = {}
    # physics_no_sleep: the A/B of MuJoCo's sleeping (scene.py), same protocol, same run.
    for name, image in (("physics", False), ("physics_no_sleep", False), ("render_96", True)):
        env = TabletopEnv("pick_place", observation_image=image)
        n = steps if not image else steps // 2
        rates = []
        env.reset(seed=0)   # builds the (cached, reused) model, whose option flags we may then edit
        if name == "physics_no_sleep":
            env._model.opt.enableflags &= ~int(mujoco.mjtEnableBit.mjENBL_SLEEP)
        # Best of 3, as timeit advises, not median_seconds: on shared cores the slower runs measure the other
        # jobs (RESULTS.md lists every run).
        for _ in range(3):
            env.reset(seed=0)
            start = time.perf_counter()
            for a in actions[:n]:
                *_, terminated, truncated, _ = env.step(a)
                if terminated or truncated:
                    env.reset()
            rates.append(n / (time.perf_counter() - start))
        out[f"env_steps_per_s_{name}"] = max(rates)
        out[f"env_steps_per_s_{name}_runs"] = rates
        env.close()
    env = TabletopEnv("pick_place")
    expert = ScriptedExpert(env)
    env.reset(seed=0)
    start, n = time.perf_counter(), 0
    while n < steps:
        *_, terminated, truncated, _ = env.step(expert.act())
        n += 1
        if terminated or truncated:
            env.reset()
            expert.reset()
    out["expert_steps_per_s"] = n / (time.perf_counter() - start)
    return out


def measure(method: str, extra: list[str]) -> dict:
    """fit + test of one method's config as `make train` runs it: the record bench.json keeps for the method."""
    config, method_args = VARIANTS.get(method, (method, []))
    if method == "ppo":
        # PPO fine-tunes the bench's own state BC run (10 PPO iterations), so its row is BC + RL.
        state_bc = find_checkpoint(latest_run(bench_dir(PROJECT) / "state_bc"), "best")
        method_args = ["--model.init_args.init_ckpt", str(state_bc), "--trainer.max_epochs", "10"]
    run = run_config(PROJECT, [CONFIGS / f"{config}.yaml"], method, [*method_args, *extra])
    return {"metrics": run.metrics, "minutes": run.seconds / 60, "policy_hz": policy_hz(run.run_dir)}


def policy_hz(run_dir: Path, repeats: int = 200) -> float | None:
    """Actions per second at batch 1 (one forward pass per action; chunked policies need fewer); None for the
    policies that learn nothing or predict no actions themselves."""
    from vlm_robot_control.env.tabletop import TabletopEnv
    from vlm_robot_control.methods.base import PolicyModule

    module = load_model(run_dir, "best")   # the class and its net from the checkpoint; eval mode
    learned = any(p.requires_grad for p in module.parameters())
    if not learned or type(module).predict_chunk is PolicyModule.predict_chunk:
        return None
    env = TabletopEnv("pick_place", observation_image=module.observation_image)
    obs, _ = env.reset(seed=0)
    module.begin([env])
    batch = module.observation_batch([obs], [0])
    with torch.no_grad():
        return 1 / median_seconds(lambda: module.predict_chunk(batch), repeats=repeats, warmup=10)


def pct(m: dict, key: str) -> str:
    """A success rate in %, with its Wilson interval where the metrics have one."""
    if key not in m:
        return "–"
    lo, hi = m.get(f"{key}_ci_low"), m.get(f"{key}_ci_high")
    ci = f" [{100 * lo:.0f}, {100 * hi:.0f}]" if lo is not None else ""
    return f"{100 * m[key]:.0f}{ci}"


def render(args: argparse.Namespace, store: Store) -> str:
    """RESULTS.md from the numbers in ``store``."""
    rows = store.rows(TRAINED)
    ((_, speed),) = store.rows(["env"])
    notes = ("Seed 42. Success rate in % with the Wilson 95% interval; 50 episodes per split and family, evaluation "
             "seeds\n10,000,000 + i (never used for demos); single-step methods trained and tested on pick_place.")
    text = results_header(PROJECT, "vlm-robot-control: results", args, store, notes)

    text += "## Methods x splits (pick_place)\n\n"
    text += markdown_table(
        ["method", *SPLITS, "episode length (all families)", "fit + test (min)", "policy Hz (batch 1)"],
        [[method, *(pct(r["metrics"], f"test/success_rate_{s}_pick_place") for s in SPLITS),
          fmt(r["metrics"].get("test/episode_length"), 0), fmt(r["minutes"], 1), fmt(r["policy_hz"], 0)]
         for method, r in rows])

    text += "\nPooled over families, with intervals (`test/success_rate_<split>`):\n\n"
    table = []
    for method, r in rows:
        m = r["metrics"]
        multistep = any(f"test/success_rate_{f}" in m for f in ("put_all", "sort"))
        table.append([method, *(pct(m, f"test/success_rate_{s}") for s in SPLITS),
                      fmt(m["test/multistep_completed"], 2) if multistep else "–"])
    text += markdown_table(["method", *SPLITS, "multistep completed (sub-goals)"], table)

    text += "\n## Per task family (splits pooled, where the method was tested on it)\n\n"
    text += markdown_table(["method", *FAMILIES], [
        [method, *(fmt(100 * r["metrics"][f"test/success_rate_{f}"], 0) if f"test/success_rate_{f}" in r["metrics"]
                   else "–" for f in FAMILIES)] for method, r in rows])

    grounding = dict(rows)["grounded_bc"]["metrics"]["test/grounding_accuracy"]
    text += ("\nGrounding accuracy of grounded_bc (matched (pick, place) = the task's goal): "
             f"{fmt(100 * grounding, 1)}%.\n\n")

    runs = {name: ", ".join(f"{rate:.0f}" for rate in speed[f"env_steps_per_s_{name}_runs"])
            for name in ("physics", "physics_no_sleep", "render_96")}
    text += ("## Environment speed (one CPU core)\n\n"
             "Best of 3 runs of 5,000 (physics) / 2,500 (render) steps; all runs: "
             f"{runs['physics']} (physics), {runs['physics_no_sleep']} (sleeping off) and {runs['render_96']} "
             "(render).\n\n")
    text += markdown_table(["measure", "steps/s"], [
        ["physics only (random actions, 5 x 8 ms substeps)", fmt(speed["env_steps_per_s_physics"], 0)],
        ["physics only, MuJoCo sleeping off (A/B of scene.py's choice)",
         fmt(speed["env_steps_per_s_physics_no_sleep"], 0)],
        ["physics + 96 x 96 render per step", fmt(speed["env_steps_per_s_render_96"], 0)],
        ["scripted expert acting (physics + expert logic)", fmt(speed["expert_steps_per_s"], 0)]])
    text += "\nMethods ran: " + ", ".join(f"{method} ({r['date']})" for method, r in rows) + ".\n"
    return text


def main() -> None:
    args = parse_args(METHODS, description=__doc__.splitlines()[0])
    store = Store(HERE / "bench.json")
    for method in args.methods:
        print(f"== {method}", flush=True)
        store.put(method, env_speed() if method == "env" else measure(method, args.extra))
    write_results(HERE / "RESULTS.md", render(args, store))


if __name__ == "__main__":
    main()
