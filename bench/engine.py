"""Engine benchmark: the real teacher and Rotten Tomatoes through every engine stage.

Runs the job pipeline at the quick preset with 3 sampled architectures of different sizes and
writes bench/results/engine.json: the task teacher's accuracy, size and latency; each block's
distillation loss before and after training; each architecture's size, measured latency and dev
accuracy after a short distillation fine-tune; and the wall time of every stage.

    .venv/bin/python bench/engine.py [--preset quick] [--run-dir runs/bench-engine] [--fresh]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


SHARED_STAGES = ("prepare", "states", "blocks", "fewshot")


def reuse_stages(source: Path, run_dir: Path) -> None:
    """Copy the job stages that do not depend on the search strategy from an earlier run.

    The copied stage markers keep the seconds measured when those stages ran (same machine).
    """
    run_dir.mkdir(parents=True)
    for name in ("space.json", "teacher.json", "blocks.json", "fewshot.json", "basis.safetensors"):
        shutil.copy2(source / name, run_dir / name)
    for name in ("states", "supernet"):
        shutil.copytree(source / name, run_dir / name)
    (run_dir / "stages").mkdir()
    for stage in SHARED_STAGES:
        shutil.copy2(source / "stages" / f"{stage}.json", run_dir / "stages" / f"{stage}.json")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="quick", choices=["tiny", "quick", "standard"])
    parser.add_argument("--run-dir", default="runs/bench-engine")
    parser.add_argument("--fresh", action="store_true", help="delete the run folder first (the teacher cache stays)")
    parser.add_argument("--no-ray", action="store_true")
    parser.add_argument("--reuse-run", help="copy the prepare..fewshot stages (and their measured seconds) from "
                        "another run folder of the same preset and seed, e.g. runs/bench-search")
    parser.add_argument("--out", default=str(HERE / "results" / "engine.json"))
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    from slimformer.contracts.spec import JobSpec
    from slimformer.workers.pipeline import format_table, run_job
    from slimformer.workers.progress import ConsoleReporter
    from slimformer.workers.ray_runtime import init_ray, shutdown_ray

    run_dir = Path(args.run_dir)
    if args.fresh:
        shutil.rmtree(run_dir, ignore_errors=True)
    spec = JobSpec(name="bench-engine", preset=args.preset, search={"strategy": "sample", "finalists": 3})
    if args.reuse_run and not run_dir.exists():
        reuse_stages(Path(args.reuse_run), run_dir)
    started = time.perf_counter()
    if not args.no_ray:
        init_ray(num_cpus=os.cpu_count())
    try:
        results = run_job(spec, run_dir, ConsoleReporter(), use_ray=not args.no_ray)
    finally:
        shutdown_ray()
    teacher = results["teacher"]
    doc = {
        "preset": args.preset,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "latency_setting": spec.latency.model_dump(),
        "task": results["task"],
        "teacher": {k: teacher[k] for k in ("dev_accuracy", "test_accuracy", "params", "latency_ms", "from_cache")},
        "blocks": [
            {k: b[k] for k in ("block", "loss_start", "loss_end", "steps", "seconds")} for b in results["blocks"]
        ],
        "archs": [
            {k: f[k] for k in ("hash", "short", "params", "latency_ms", "latency_onnx_ms", "predicted_latency_ms",
                               "dev_accuracy", "test_accuracy")}
            for f in sorted(results["finalists"], key=lambda f: f["params"])
        ],
        "export": {k: results["export"][k] for k in ("best", "folder", "sizes")},
        "stage_seconds": results["stage_seconds"],
        "wall_seconds": round(time.perf_counter() - started, 1),
        "command": "python bench/engine.py " + " ".join(sys.argv[1:]),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2))
    print(format_table(results))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
