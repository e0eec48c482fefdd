"""What every project's ``bench.py`` shares: ``make bench PROJECT=<p> [ARGS="--only METHOD ..."]``.

A bench runs each method's config exactly as ``make train`` does, reads the runs' ``metrics.json``, times
what it times with one median timer, and writes ``RESULTS.md`` with one header (command, date, machine,
"generated, do not edit"). A project's bench.py then reads top to bottom::

    args = parse_args(METHODS)                               # --only METHOD ..., extra CLI args after --
    store = Store(HERE / "bench.json")                       # the numbers RESULTS.md is written from
    for method in args.methods:
        run = run_config("bev-uncertainty", [CONFIGS / f"{method}.yaml"], method, args.extra)
        store.put(method, {"metrics": run.metrics, "minutes": run.seconds / 60})
    rows = store.rows(METHODS)                               # re-run now or kept from an earlier run
    write_results(HERE / "RESULTS.md", results_header("bev-uncertainty", "Results", args, store)
                  + markdown_table(["method", "IoU"], [[m, fmt(r["metrics"]["test/iou"])] for m, r in rows]))

Every run of a bench lands under ``runs/<project>/bench/<method>/version_<n>/``. The numbers of each
method are kept with their date in ``<project>/bench.json``, committed beside RESULTS.md (which is written
from it), so ``--only geometry`` re-runs one method and takes the others from the last full run, in any
clone; RESULTS.md says which rows ran when.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from types import ModuleType

import torch

from shared_utils.checkpoints import latest_run
from shared_utils.cli import runs_root
from shared_utils.paths import collection_root


def load_bench(path: str | Path) -> ModuleType:
    """A project's ``bench.py`` as a module (it is a script beside the package, not part of it): what the
    tests use to check its methods and that RESULTS.md is what its ``render(args, store)`` makes."""
    path = Path(path)
    spec = importlib.util.spec_from_file_location(f"bench_{path.parent.name.replace('-', '_')}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def bench_dir(project: str) -> Path:
    """``runs/<project>/bench/``: where a bench's runs and its ``bench.json`` go."""
    return runs_root() / project / "bench"


def parse_args(methods: Sequence[str], argv: Sequence[str] | None = None,
               description: str | None = None) -> argparse.Namespace:
    """The flags of every bench: ``--only METHOD ...`` (re-run these, keep the others' earlier numbers),
    ``--real`` (the project's real-data benchmark, from an optional extra, instead of the synthetic one) and,
    after ``--``, extra CLI arguments given to every run. ``args.methods`` is what to run now, in the
    order of ``methods``; ``args.only`` is None for a full run."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--real", action="store_true",
                        help="run the real-data benchmark (its optional extra installed) instead of the synthetic one")
    parser.add_argument("--only", nargs="+", metavar="METHOD", choices=list(methods),
                        help="re-run these methods; the others come from the earlier run kept in bench.json")
    parser.add_argument("extra", nargs="*", help="extra CLI arguments for every run (after --)")
    args = parser.parse_args(argv)
    args.methods = [m for m in methods if args.only is None or m in args.only]
    args.argv = list(sys.argv[1:] if argv is None else argv)
    return args


@dataclass
class BenchRun:
    run_dir: Path
    seconds: float
    metrics: dict[str, float]


def read_metrics(run_dir: str | Path) -> dict[str, float]:
    """The ``metrics`` of a run's ``metrics.json`` (the last validate/test of the run)."""
    path = Path(run_dir) / "metrics.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: the run did not finish a validate/test")
    return json.loads(path.read_text())["metrics"]


def run_config(project: str, configs: Sequence[str | Path], name: str, args: Sequence[str] = (),
               subcommand: str = "fit", cli_module: str | None = None) -> BenchRun:
    """Run ``<project> fit --config ... --test_after_fit=true`` exactly as ``make train`` does (a subprocess
    from the collection root, so it has its own memory and threads), into ``runs/<project>/bench/<name>/``.
    Returns the run directory, the wall time of the whole command and its test metrics. ``subcommand`` "test"
    (with ``--ckpt_path`` in ``args``) evaluates a checkpoint instead."""
    module = cli_module or f"{project.replace('-', '_')}.cli"
    command = [sys.executable, "-c", f"from {module} import main; main()", subcommand,
               *(f"--config={c}" for c in configs), f"--experiment=bench/{name}",
               "--trainer.enable_progress_bar=false", *args]
    if subcommand == "fit":
        command.append("--test_after_fit=true")
    start = time.perf_counter()
    subprocess.run(command, cwd=collection_root() or Path.cwd(), check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    run = latest_run(bench_dir(project) / name)
    return BenchRun(run, seconds, read_metrics(run))


def run_methods(names: Sequence[str], store: Store, run: Callable[[str], dict]) -> list[str]:
    """``store.put(name, run(name))`` for each name, in order, printing each one's minutes. A method whose run
    fails (its subprocess exits non-zero, or it finds no run it depends on) is printed and skipped, so that
    the others still run; the names of the failed ones are returned (the bench exits non-zero with them, after
    writing RESULTS.md, where their rows keep their earlier numbers)."""
    failed = []
    for name in names:
        start = time.perf_counter()
        try:
            store.put(name, run(name))
        except (subprocess.CalledProcessError, FileNotFoundError) as err:
            failed.append(name)
            print(f"{name}: FAILED ({err})", flush=True)
            continue
        print(f"{name}: {(time.perf_counter() - start) / 60:.1f} min", flush=True)
    return failed


def export_pictures(project: str, names: Sequence[str], tag: str, folder: str | Path) -> list[str]:
    """The last TensorBoard image ``tag`` of each bench run ``names`` (latest version) as ``folder/<name>.png``, for
    the README; returns the names written (a method without a run or without the tag is skipped)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    folder = Path(folder)
    folder.mkdir(exist_ok=True)
    written = []
    for name in names:
        if not (bench_dir(project) / name).is_dir():
            continue
        for events in sorted(Path(latest_run(bench_dir(project) / name)).glob("events.out.tfevents.*")):
            accumulator = EventAccumulator(str(events), size_guidance={"images": 0})
            accumulator.Reload()
            if tag in accumulator.Tags()["images"]:
                (folder / f"{name}.png").write_bytes(accumulator.Images(tag)[-1].encoded_image_string)
                written.append(name)
    return written


def median_seconds(fn: Callable[[], object], repeats: int = 5, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` over ``repeats`` calls after ``warmup`` calls (CUDA synchronised)."""
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


class Store:
    """The numbers of each method of a bench, with their date: ``<project>/bench.json``, committed with the
    RESULTS.md written from it (machine-readable results, and what ``--only`` keeps for the other rows)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.data: dict = json.loads(self.path.read_text()) if self.path.is_file() else {}
        self.ran: list[str] = []

    def put(self, name: str, record: dict) -> None:
        """Keep ``record`` for ``name`` (saved at once: a bench that fails later keeps what it measured)."""
        self.data[name] = {**record, "date": date.today().isoformat()}
        self.ran.append(name)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self.data, indent=1))

    def rows(self, names: Sequence[str]) -> list[tuple[str, dict]]:
        """``(name, record)`` for each of ``names``; a name never measured is an error naming the file."""
        missing = [n for n in names if n not in self.data]
        if missing:
            raise FileNotFoundError(f"{self.path} has no numbers for {', '.join(missing)}: run the bench without "
                                    "--only first (or --only with those)")
        return [(n, self.data[n]) for n in names]


def machine() -> str:
    """One line: CPU architecture and count, torch threads, GPU, torch version."""
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    return (f"{platform.machine()}, {os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads, {gpu}, "
            f"torch {torch.__version__}")


def results_header(project: str, title: str, args: argparse.Namespace | None = None, store: Store | None = None,
                   notes: str = "") -> str:
    """The header of every RESULTS.md: title, the command that wrote it, date, machine, which rows ran now."""
    flags = " ".join(args.argv) if args is not None else ""
    command = f"make bench PROJECT={project}" + (f' ARGS="{flags}"' if flags else "")
    lines = [f"# {title}", "",
             f"Generated by `{command}` on {date.today().isoformat()} ({machine()}); do not edit by hand: "
             "regenerate it."]
    kept = {} if store is None or not store.ran else {
        n: r["date"] for n, r in store.data.items() if isinstance(r, dict) and n not in store.ran and "date" in r}
    if kept:  # --only, or --real beside the synthetic rows (or the other way round)
        lines.append(f"Re-run by this command: {', '.join(store.ran)}; the other rows come from earlier runs of this "
                     f"bench ({', '.join(f'{n} {d}' for n, d in kept.items())}).")
    if notes:
        lines += ["", notes]
    return "\n".join(lines) + "\n\n"


def fmt(value: float | None, digits: int = 3) -> str:
    """A table cell: fixed digits, '–' for a missing value."""
    return "–" if value is None else f"{value:.{digits}f}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub Markdown table; cells are written with ``str``."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        if len(row) != len(header):
            raise ValueError(f"row {list(row)} has {len(row)} cells, the header {len(header)}")
        lines.append("| " + " | ".join(str(c) for c in row) + " |")
    return "\n".join(lines) + "\n"


def write_results(path: str | Path, text: str) -> None:
    """Write RESULTS.md (and print it)."""
    Path(path).write_text(text.rstrip("\n") + "\n")
    print(text)
