"""`make bench PROJECT=vlm-robot-control`: every method x every split -> RESULTS.md.

1. Environment speed on one core: control steps/s with physics only and with a 96 x 96 render per
   step (random actions, pick_place, llvmpipe limited to one thread), and the expert's steps/s.
2. Each method's config exactly as `make train CONFIG=<method>.yaml` runs it (fit, then rollouts of
   the best checkpoint on every split), timed; its metrics.json feeds the tables.
3. Policy inference rate on CPU: one observation (batch 1) through each learned policy.

Numbers are kept in ``runs/vlm-robot-control/bench.json``; ``python bench.py --only ppo`` re-runs
some methods and takes the others from that file (``--only`` alone: the environment speed only).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("LP_NUM_THREADS", "1")   # Mesa llvmpipe: render on one core, like the physics

import numpy as np  # noqa: E402
import torch  # noqa: E402

HERE = Path(__file__).resolve().parent
RUNS = HERE / "runs" / "vlm-robot-control"
CACHE = ["--data.init_args.cache_dir", str(HERE.parent / "data" / "vlm-robot-control")]
CLI = [sys.executable, "-c", "from vlm_robot_control.cli import main; main()"]
METHODS = ["random", "oracle", "state_bc", "grounded_bc", "pixel_film", "pixel_film_lite0", "cliport", "saycan",
           "ppo"]
# Bench rows that are a config plus arguments: the ImageNet Lite0 backbone (frozen, FiLM on its stage
# outputs) instead of the small CNN; 4 epochs, as one Lite0 epoch costs ~4x a small-CNN one on CPU.
LITE0 = ["--model.init_args.net.init_args.backbone", "lite0", "--model.init_args.net.init_args.freeze_backbone", "true",
         "--trainer.max_epochs", "4"]
VARIANTS = {"pixel_film_lite0": ("pixel_film", LITE0)}
SPLITS = ["seen", "unseen_combo", "unseen_phrasing", "distractors", "perturbed"]


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
        for _ in range(3):   # best of 3, as timeit advises: the other runs measure the machine's noise
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


def extra_args(method: str, bench: dict) -> list[str]:
    """PPO fine-tunes the bench's own state BC checkpoint (10 PPO iterations), so its row is BC + RL."""
    if method in VARIANTS:
        return VARIANTS[method][1]
    if method == "ppo" and "state_bc" in bench["methods"]:
        return ["--model.init_args.init_ckpt", bench["methods"]["state_bc"]["ckpt"], "--trainer.max_epochs", "10"]
    return []


def train(method: str, extra: list[str]) -> dict:
    experiment = f"bench_{method}"
    start = time.perf_counter()
    config = VARIANTS[method][0] if method in VARIANTS else method
    subprocess.run([*CLI, "fit", "--config", f"configs/{config}.yaml", "--experiment", experiment,
                    "--test_after_fit", "true", "--trainer.enable_progress_bar", "false", *CACHE, *extra],
                   cwd=HERE, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    run = sorted((RUNS / experiment).glob("version_*"), key=lambda p: int(p.name.split("_")[1]))[-1]
    record = json.loads((run / "metrics.json").read_text())
    return {"metrics": record["metrics"], "fit_test_seconds": seconds, "test_seconds": record["seconds"],
            "run": str(run.relative_to(HERE)), "ckpt": record["ckpt"], "policy_hz": policy_hz(record["ckpt"])}


def policy_hz(ckpt: str | None, repeats: int = 200) -> float | None:
    """Actions per second at batch 1 (one forward pass per action; chunked policies need fewer)."""
    if not ckpt:
        return None
    from shared_utils.checkpoints import load_model
    from vlm_robot_control.env.tabletop import TabletopEnv
    from vlm_robot_control.methods.base import PolicyModule

    module = load_model(ckpt)   # the class and its net from the checkpoint; eval mode
    learned = any(p.requires_grad for p in module.parameters())
    if not learned or type(module).predict_chunk is PolicyModule.predict_chunk:
        return None
    env = TabletopEnv("pick_place", observation_image=module.observation_image)
    obs, _ = env.reset(seed=0)
    module.begin([env])
    batch = module.observation_batch([obs], [0])
    with torch.no_grad():
        for _ in range(10):
            module.predict_chunk(batch)
        start = time.perf_counter()
        for _ in range(repeats):
            module.predict_chunk(batch)
    return repeats / (time.perf_counter() - start)


def pct(m: dict, key: str) -> str:
    if key not in m:
        return "–"
    lo, hi = m.get(f"{key}_ci_low"), m.get(f"{key}_ci_high")
    ci = f" [{100 * lo:.0f}, {100 * hi:.0f}]" if lo is not None else ""
    return f"{100 * m[key]:.0f}{ci}"


def write_results(bench: dict) -> None:
    speed = bench["env"]
    lines = [
        "# vlm-robot-control: results",
        "",
        "Generated by `make bench PROJECT=vlm-robot-control` (bench.py); CPU, 2 cores, seed 42.",
        "Success rate in % with the Wilson 95% interval; 50 episodes per split and family, evaluation seeds",
        "10,000,000 + i (never used for demos); single-step methods trained and tested on pick_place.",
        "",
        "## Methods x splits (pick_place)",
        "",
        "| method | " + " | ".join(SPLITS)
        + " | episode length (all families) | fit + test (min) | policy Hz (batch 1) |",
        "|---|" + "---|" * (len(SPLITS) + 3),
    ]
    for method in METHODS:
        if method not in bench.get("methods", {}):
            continue
        r = bench["methods"][method]
        m = r["metrics"]
        cells = [pct(m, f"test/success_rate_{s}_pick_place") if f"test/success_rate_{s}_pick_place" in m else "–"
                 for s in SPLITS]
        hz = f"{r['policy_hz']:.0f}" if r.get("policy_hz") else "–"
        lines.append(f"| {method} | " + " | ".join(cells) +
                     f" | {m.get('test/episode_length', float('nan')):.0f} | {r['fit_test_seconds'] / 60:.1f} | {hz} |")
    lines += ["", "Pooled over families, with intervals (`test/success_rate_<split>`):", "",
              "| method | " + " | ".join(SPLITS) + " | multistep completed (sub-goals) |",
              "|---|" + "---|" * (len(SPLITS) + 1)]
    for method in METHODS:
        if method in bench.get("methods", {}):
            m = bench["methods"][method]["metrics"]
            multi = any(f"test/success_rate_{f}" in m for f in ("put_all", "sort"))
            done = f"{m['test/multistep_completed']:.2f}" if multi else "–"
            cells = " | ".join(pct(m, f"test/success_rate_{s}") for s in SPLITS)
            lines.append(f"| {method} | {cells} | {done} |")
    families = ["pick_place", "stack", "push", "put_all", "sort"]
    lines += ["", "## Per task family (splits pooled, where the method was tested on it)", "",
              "| method | " + " | ".join(families) + " |", "|---|" + "---|" * len(families)]
    for method in METHODS:
        if method in bench.get("methods", {}):
            m = bench["methods"][method]["metrics"]
            lines.append(f"| {method} | " + " | ".join(
                f"{100 * m[f'test/success_rate_{f}']:.0f}" if f"test/success_rate_{f}" in m else "–"
                for f in families) + " |")
    if any("test/grounding_accuracy" in r["metrics"] for r in bench.get("methods", {}).values()):
        lines += ["", "Grounding accuracy of grounded_bc (matched (pick, place) = the task's goal): "
                  f"{100 * bench['methods']['grounded_bc']['metrics']['test/grounding_accuracy']:.1f}%."]
    lines += [
        "",
        "## Environment speed (one CPU core)",
        "",
        "Best of 3 runs of 5,000 (physics) / 2,500 (render) steps; all runs: "
        f"{', '.join(f'{r:.0f}' for r in speed['env_steps_per_s_physics_runs'])} (physics), "
        f"{', '.join(f'{r:.0f}' for r in speed['env_steps_per_s_physics_no_sleep_runs'])} (sleeping off) and "
        f"{', '.join(f'{r:.0f}' for r in speed['env_steps_per_s_render_96_runs'])} (render).",
        "",
        "| measure | steps/s |",
        "|---|---|",
        f"| physics only (random actions, 5 x 8 ms substeps) | {speed['env_steps_per_s_physics']:.0f} |",
        "| physics only, MuJoCo sleeping off (A/B of scene.py's choice) | "
        f"{speed['env_steps_per_s_physics_no_sleep']:.0f} |",
        f"| physics + 96 x 96 render per step | {speed['env_steps_per_s_render_96']:.0f} |",
        f"| scripted expert acting (physics + expert logic) | {speed['expert_steps_per_s']:.0f} |",
        "",
        "Methods ran: " + ", ".join(f"{k} ({v['date']})" for k, v in bench.get("methods", {}).items()) + ".",
    ]
    (HERE / "RESULTS.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", choices=METHODS,
                        help="re-run these methods only (none: the environment speed only)")
    args = parser.parse_args()
    path = RUNS / "bench.json"
    bench = json.loads(path.read_text()) if path.exists() and args.only is not None else {"methods": {}}
    bench["env"] = env_speed()
    print(json.dumps(bench["env"], indent=1), flush=True)
    for method in METHODS if args.only is None else args.only:
        print(f"== {method}", flush=True)
        extra = extra_args(method, bench)
        bench["methods"][method] = {**train(method, extra), "args": extra, "date": time.strftime("%Y-%m-%d %H:%M")}
        print(json.dumps({k: v for k, v in bench["methods"][method].items() if k != "metrics"}), flush=True)
        RUNS.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(bench, indent=1))
        write_results(bench)
    write_results(bench)


if __name__ == "__main__":
    main()
