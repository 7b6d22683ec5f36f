"""Benchmark: how well the latency lookup table predicts whole-model latency.

On the default space of the real teacher (MiniLM-L6 facts; the teacher itself is not loaded) this
profiles a fresh latency table, samples >= 40 seeded random sub-networks spread evenly over the
hidden sizes, measures each for real, and compares predicted with measured:

    mape         mean |predicted - measured| / measured
    kendall_tau  rank agreement (what the search needs: which of two archs is faster)

Per statistic (`median`, the default everywhere, and `low_half_mean`, see
`timing.summarize_ms`) it reports:

    raw          the table straight from the profiler: profiled first, then the archs are measured (torch)
    calibrated   the table after `LatencyTable.calibrate` on a separate calibration set measured in
                 the same interleaved rounds as the evaluated archs (torch: scale only, removing
                 drift of the machine's speed between profiling and measuring; onnxruntime: scale
                 and offset, which is how an onnxruntime table is made)
    noise_floor  the measurement against itself: each arch's first-half rounds vs its second-half
                 rounds. No predictor can agree with a measurement better than the measurement
                 agrees with itself, so on a loaded machine this bounds what any table can reach.
    co_measured  (--co-measure) a second table profiled in the very rounds that measure the archs

The headline `mape` / `kendall_tau` are the median statistic's calibrated numbers: a job never
uses a raw table. A torch table loaded from the cache is checked against 8 whole models measured
at the time of use (`latency_build.check_against_models`, scale only), an onnxruntime table is made by
that fit (scale and offset). Raw shows what the check removes: on the idle dev VM the machine's
speed drifted by up to 6% in the minute between profiling and measuring, shifting every
prediction alike (tau unchanged, MAPE 1.5-6.8% over four runs).

With `--runtime onnxruntime` the archs are exported with the project's exporter and timed under
onnxruntime (1 intra-op thread, 1 inter-op thread); numbers go under the "onnxruntime" key of the
same results file, next to "torch".

Usage:
    python bench/latency.py                      # torch, 40 archs -> bench/results/latency.json
    python bench/latency.py --runtime onnxruntime
    python bench/latency.py --smoke              # 8 archs, few rounds -> latency.smoke.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results" / "latency.json"
STATS = ("median", "low_half_mean")


def _prepare_env(threads: int, thp: bool) -> None:
    """Set before torch / onnxruntime load: their thread pools and torch's allocator read these once.

    THP_MEM_ALLOC_ENABLE=1 makes torch put tensors of 2 MB and more on transparent huge pages. On
    the 4 KB pages of the dev VM, the same arch's latency depended on *when* its weights were
    allocated (the first models built in a process ran 10-30% slower than copies built later);
    with huge pages the copies agreed within a few percent.
    """
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, str(threads))
    if thp:
        os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Latency table vs whole-model measurement.")
    p.add_argument("--runtime", choices=("torch", "onnxruntime"), default="torch")
    p.add_argument("--n", type=int, default=40, help="archs to evaluate (default 40)")
    p.add_argument("--calibration", type=int, default=8, help="archs in the calibration set (default 8)")
    p.add_argument("--repeats", type=int, default=30, help="measurement rounds (2 timed forwards each)")
    p.add_argument("--table-repeats", type=int, default=20, help="rounds when profiling the table")
    p.add_argument("--copies", type=int, default=3, help="slots per op per hidden size in the profiling models")
    p.add_argument("--co-measure", action="store_true", help="also profile a table in the measurement rounds")
    p.add_argument("--no-thp", dest="thp", action="store_false", help="leave torch on 4 KB pages")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="default bench/results/latency.json")
    p.add_argument("--smoke", action="store_true", help="8 archs, 4 rounds: checks that the bench runs")
    args = p.parse_args(argv)
    if args.smoke:
        args.n, args.calibration, args.repeats, args.table_repeats = 8, 4, 4, 4
    if args.out is None:
        args.out = RESULTS.with_name("latency.smoke.json") if args.smoke else RESULTS
    return args


def sample_archs(space: Any, n: int, seed: int, exclude: frozenset[Any] = frozenset()) -> list[Any]:
    """`n` distinct seeded random archs, hidden sizes taken in turn so each gets n / len(H)."""
    rng = random.Random(f"latency-bench-{seed}")
    archs: list[Any] = []
    seen = set(exclude)
    while len(archs) < n:
        arch = space.sample(rng, hidden=space.hidden_sizes[len(archs) % len(space.hidden_sizes)])
        if arch not in seen:
            seen.add(arch)
            archs.append(arch)
    return archs


def metrics(predicted: list[float], measured: list[float]) -> dict[str, float]:
    """MAPE, max APE, mean signed error and Kendall's tau of predicted vs measured."""
    from scipy.stats import kendalltau

    ape = [abs(p - m) / m for p, m in zip(predicted, measured, strict=True)]
    signed = [(p - m) / m for p, m in zip(predicted, measured, strict=True)]
    return {
        "mape": round(statistics.mean(ape), 4),
        "max_ape": round(max(ape), 4),
        "mean_signed_error": round(statistics.mean(signed), 4),
        "kendall_tau": round(float(kendalltau(predicted, measured).statistic), 4),
    }


def noise_floor(samples: list[list[int]], stat: str) -> dict[str, float]:
    """Each model's first-half samples against its second half (in time), as `metrics` does."""
    from slimformer.supernet.timing import summarize_ms

    first = [summarize_ms(s[: len(s) // 2], stat) for s in samples]
    second = [summarize_ms(s[len(s) // 2 :], stat) for s in samples]
    return metrics(first, second)


def timer_for(runtime: str, models: list[Any], setting: Any, vocab: int, tmp: Path) -> Any:
    """A ModelTimer, or for onnxruntime an OnnxTimer over the models exported into `tmp`."""
    from slimformer.supernet import model_timing

    if runtime == "torch":
        return model_timing.ModelTimer(models, setting)
    paths = [model_timing.export_for_latency(m, tmp / f"m{i}") for i, m in enumerate(models)]
    return model_timing.OnnxTimer(paths, setting, vocab)


def evaluate(
    stat: str, table: Any, co_table: Any, timer: Any, calib: list[Any], archs: list[Any], runtime: str
) -> tuple[dict[str, Any], list[dict[str, float]]]:
    """Metrics for one statistic, and per-arch predicted / calibrated / measured ms."""
    from slimformer.search_space.latency import LatencyTable, predict_latency

    measured_all = timer.latencies(stat)
    cal_measured, measured = measured_all[: len(calib)], measured_all[len(calib) :]
    out: dict[str, Any] = {}
    per_arch: list[dict[str, float]] = [{} for _ in archs]
    if runtime == "torch":
        predicted = [predict_latency(a, table) for a in archs]
        out["raw"] = metrics(predicted, measured)
        for row, p in zip(per_arch, predicted, strict=True):
            row["predicted_ms"] = round(p, 4)
    fitted = LatencyTable.from_dict(table.to_dict())
    # Torch: the machine's speed drifts as a factor, so fit the scale only. ONNX: scale and offset.
    fitted.calibrate(zip(calib, cal_measured, strict=True), fit_offset=runtime != "torch")
    calibrated = [predict_latency(a, fitted) for a in archs]
    out["calibrated"] = {**metrics(calibrated, measured), "n": len(calib), "scale": round(fitted.scale, 4),
                         "offset_ms": round(fitted.offset_ms, 4)}
    if co_table is not None:
        if runtime != "torch":
            co_table.calibrate(zip(calib, cal_measured, strict=True))
        out["co_measured"] = metrics([predict_latency(a, co_table) for a in archs], measured)
    out["noise_floor"] = noise_floor(timer.samples[len(calib) :], stat)
    for row, c, m in zip(per_arch, calibrated, measured, strict=True):
        row["calibrated_ms"], row["measured_ms"] = round(c, 4), round(m, 4)
    return out, per_arch


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from slimformer.search_space import TeacherFacts, count_params, space_for_teacher
    from slimformer.search_space.latency import LatencySetting, hardware_fingerprint
    from slimformer.supernet import latency_build, op_profiler, timing
    from slimformer.supernet.subnet import SubNet, SubNetConfig

    t_start = time.perf_counter()
    space = space_for_teacher(TeacherFacts())
    setting = LatencySetting(args.batch, args.seq_len, args.threads, args.runtime)
    last = [0.0]

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t_start:7.1f}s] {msg}", file=sys.stderr, flush=True)

    def progress(frac: float, msg: str) -> None:
        if frac - last[0] >= 0.2 or frac == 1.0:
            last[0] = 0.0 if frac == 1.0 else frac
            log(msg)

    # 1. The table as a user gets it: profiled first (what build_latency_table does, kept open
    # here so both statistics come from the same samples).
    log(f"profiling the table for hidden sizes {list(space.hidden_sizes)}, {args.table_repeats} rounds")
    profiler = op_profiler.TableProfiler(space, setting, copies=args.copies, seed=args.seed)
    timing.run_rounds([profiler], setting.threads, args.table_repeats, progress=progress)
    tables = {stat: profiler.table(stat) for stat in STATS}
    table_meta = tables["median"].meta
    del profiler
    table_s = time.perf_counter() - t_start
    log(f"table profiled in {table_s:.1f}s; overhead {tables['median'].overhead_ms:.3f} ms (median)")

    # 2. The evaluated archs and the calibration set, measured in the same interleaved rounds.
    calib = latency_build.calibration_set(space, args.calibration, seed=args.seed + 1)
    archs = sample_archs(space, args.n, args.seed, exclude=frozenset(calib))
    torch.manual_seed(args.seed)
    # Build in a shuffled order: on the dev VM models built earlier in a process ran slower than
    # ones built later (memory placement), which would otherwise bias the calibration set, built
    # first, against the evaluated archs.
    order = list(range(len(calib) + len(archs)))
    random.Random(f"build-order-{args.seed}").shuffle(order)
    built = {i: SubNet(SubNetConfig.for_arch((calib + archs)[i], space)).eval() for i in order}
    models = [built[i] for i in range(len(order))]
    t_measure = time.perf_counter()
    co = op_profiler.TableProfiler(space, setting, copies=args.copies, seed=args.seed + 2) if args.co_measure else None
    with tempfile.TemporaryDirectory(prefix="latency-bench-") as tmp:
        timer = timer_for(args.runtime, models, setting, space.teacher.vocab_size, Path(tmp))
        log(f"measuring {len(archs)} archs + {len(calib)} calibration archs under {args.runtime}, "
            f"{args.repeats} rounds" + (" + a co-measured table" if co is not None else ""))
        timing.run_rounds([timer] if co is None else [co, timer], setting.threads, args.repeats,
                           progress=progress)
    measure_s = time.perf_counter() - t_measure

    # 3. Compare, per statistic.
    by_stat: dict[str, Any] = {}
    rows = [{"hash": a.hash, "arch": a.short(), "hidden": a.hidden, "params": count_params(a, space)}
            for a in archs]
    for stat in STATS:
        co_table = co.table(stat) if co is not None else None
        by_stat[stat], per_arch = evaluate(stat, tables[stat], co_table, timer, calib, archs, args.runtime)
        for row, values in zip(rows, per_arch, strict=True):
            row.update(values if stat == "median" else {f"{k}_{stat}": v for k, v in values.items()})
    head = by_stat["median"]["calibrated"]
    median_pred = "calibrated_ms"
    per_hidden = {
        str(h): metrics([r[median_pred] for r in rows if r["hidden"] == h],
                        [r["measured_ms"] for r in rows if r["hidden"] == h])
        for h in space.hidden_sizes
    }
    t = tables["median"]
    result: dict[str, Any] = {
        "n": len(archs),
        "mape": head["mape"],
        "kendall_tau": head["kendall_tau"],
        "headline": "median statistic, calibrated table (what a job uses)",
        **by_stat,
        "per_hidden_median": per_hidden,
        "setting": setting.to_dict(),
        "hardware": hardware_fingerprint(),
        "torch_version": torch.__version__,
        "python": platform.python_version(),
        "smoke": bool(args.smoke),
        "thp_alloc": os.environ.get("THP_MEM_ALLOC_ENABLE", "0"),
        "repeats": args.repeats,
        "table": {
            "overhead_ms": round(t.overhead_ms, 4),
            "embeddings_ms": {str(h): round(v, 4) for h, v in t.embeddings.items()},
            "head_ms": {str(h): round(v, 4) for h, v in t.head.items()},
            "meta": {k: v for k, v in table_meta.items() if k != "residual_ms"},
        },
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
        "command": "python bench/latency.py " + " ".join(sys.argv[1:]),
        "seconds": {"table": round(table_s, 1), "measure": round(measure_s, 1),
                    "total": round(time.perf_counter() - t_start, 1)},
        "rows": rows,
    }
    for stat in STATS:
        parts = [f"{k} mape={v['mape']:.4f} tau={v['kendall_tau']:.4f}" for k, v in by_stat[stat].items()]
        log(f"{stat}: " + " | ".join(parts))
    return result


def write(result: dict[str, Any], runtime: str, out: Path) -> None:
    """Store `result` under `runtime` in `out`, keeping the other runtime's numbers."""
    doc: dict[str, Any] = {}
    if out.exists():
        try:
            doc = json.loads(out.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            doc = {}
    doc[runtime] = result
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, out)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    _prepare_env(args.threads, args.thp)
    result = run(args)
    write(result, args.runtime, args.out)
    keys = ("n", "mape", "kendall_tau", "headline", "seconds")
    print(json.dumps({k: result[k] for k in keys}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
