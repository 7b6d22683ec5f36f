"""Build the latency table a job uses: profile it (or load it from the cache) and check it against whole models.

`build_latency_table` is the entry point: a `TableProfiler` (`op_profiler`) measures the torch
table in context, `check_against_models` rescales it to the machine's speed at the time of use
from a few whole models timed now (`model_timing`), and `calibrate_onnx` turns it into an
onnxruntime table by a fit on exported models.
"""

from __future__ import annotations

import random
import tempfile
import time
from pathlib import Path

import torch

from slimformer.search_space import Arch, SearchSpace
from slimformer.search_space.latency import (
    LatencySetting,
    LatencyTable,
    hardware_fingerprint,
    table_cache_path,
)
from slimformer.supernet.model_timing import (
    export_for_latency,
    measure_models_latency,
    measure_onnx_models_latency,
)
from slimformer.supernet.op_profiler import TableProfiler
from slimformer.supernet.subnet import SubNet, SubNetConfig
from slimformer.supernet.timing import Progress, run_rounds, summarize_ms


def calibration_set(space: SearchSpace, n: int, seed: int = 0) -> list[Arch]:
    """`n` seeded random archs, cycling through the hidden sizes so every size is represented."""
    rng = random.Random(f"calibration-{seed}")
    return [space.sample(rng, hidden=space.hidden_sizes[i % len(space.hidden_sizes)]) for i in range(n)]


def calibration_models(space: SearchSpace, n: int = 8, seed: int = 0) -> tuple[list[Arch], list[SubNet]]:
    """The `calibration_set` archs and seeded random-weight SubNets of them (eval mode).

    Whoever times the check archs again (finalize re-checks the table next to the finalists)
    gets the very models `check_against_models` and `calibrate_onnx` timed.
    """
    archs = calibration_set(space, n, seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        models = [SubNet(SubNetConfig.for_arch(a, space)).eval() for a in archs]
    return archs, models


def calibrate_onnx(
    table: LatencyTable,
    space: SearchSpace,
    setting: LatencySetting,
    n: int = 8,
    seed: int = 0,
    repeats: int = 20,
    stat: str = "median",
) -> LatencyTable:
    """Turn a torch table into an onnxruntime table by a linear fit on `n` whole ONNX models.

    The `n` calibration archs (`calibration_set`) are exported with the project's exporter and
    timed under onnxruntime; `table.calibrate` then fits scale and offset, and the table's setting
    becomes `setting` (runtime "onnxruntime"). Per-op ONNX tables were not built: onnxruntime
    fuses across op boundaries (MatMul+Add, LayerNorm, Gelu) and adds a per-session-call cost, so
    ops exported one by one would not time as they run inside a whole graph.

    Raises:
        ValueError: if n < 2 (scale and offset need two points).
    """
    if n < 2:
        raise ValueError(f"calibration archs: an onnxruntime table needs at least 2, got {n}")
    t0 = time.perf_counter()
    archs, models = calibration_models(space, n, seed)
    with tempfile.TemporaryDirectory(prefix="slimformer-latency-") as tmp:
        paths = [export_for_latency(model, Path(tmp) / f"m{i}") for i, model in enumerate(models)]
        measured = measure_onnx_models_latency(paths, setting, space.teacher.vocab_size, repeats=repeats, stat=stat)
    table.setting = setting
    table.calibrate(zip(archs, measured, strict=True))
    table.meta.update(
        base_runtime="torch",
        onnx_calibration={
            "archs": [a.to_dict() for a in archs],
            "measured_ms": [round(m, 4) for m in measured],
            "seconds": round(time.perf_counter() - t0, 2),
        },
    )
    return table


def check_against_models(
    table: LatencyTable,
    space: SearchSpace,
    setting: LatencySetting,
    n: int = 8,
    seed: int = 0,
    repeats: int = 20,
    stat: str = "median",
) -> LatencyTable:
    """Correct `table` for how fast this machine runs *now*, from `n` whole models measured now.

    Why: a table is cached per machine, but a shared VM's speed drifts by a few percent from one
    minute to the next (noisy neighbours, frequency); on the idle dev VM a table profiled a minute
    before the measurement of 40 archs under- or over-predicted all of them alike by up to 6%,
    while a scale fitted on 8 other archs measured alongside them brought the error to 1-3%.
    Torch: the scale alone is fitted (drift is a factor; the in-context entries already carry
    the overhead). Onnxruntime: `calibrate_onnx`, which fits scale and offset on exported models.

    Returns:
        `table`, corrected in place; `table.meta["checked"]` holds the archs' measured and
        predicted ms and the fitted scale.
    """
    if setting.runtime == "onnxruntime":
        return calibrate_onnx(table, space, setting, n, seed, repeats, stat)
    t0 = time.perf_counter()
    archs, models = calibration_models(space, n, seed)
    measured = measure_models_latency(models, setting, repeats=repeats, stat=stat)
    table.calibrate(zip(archs, measured, strict=True), fit_offset=False)
    table.meta["checked"] = {
        "archs": [a.hash for a in archs],
        "measured_ms": [round(m, 4) for m in measured],
        "predicted_ms": [round(table.predict(a), 4) for a in archs],
        "scale": round(table.scale, 4),
        "seconds": round(time.perf_counter() - t0, 2),
    }
    return table


def build_latency_table(
    space: SearchSpace,
    setting: LatencySetting,
    cache_dir: str | Path | None = None,
    repeats: int = 20,
    warmup: int = 3,
    copies: int = 3,
    seed: int = 0,
    calibration_archs: int = 8,
    stat: str = "median",
    progress: Progress | None = None,
) -> LatencyTable:
    """Measure (or load from cache) the latency table of `space` on this machine under `setting`.

    Runtime "torch": every (op, H) entry, embeddings[H], head[H] and the overhead are measured in
    context by a `TableProfiler`. Runtime "onnxruntime": the torch table is measured the same way,
    then `calibrate_onnx` fits its scale and offset on `calibration_archs` whole ONNX models.
    Every table handed out, fresh or from the cache, has been checked against
    `calibration_archs` whole models measured just now (`check_against_models`), so it predicts
    the machine's speed at the time of use.

    Args:
        space: the search space.
        setting: batch, sequence length, threads and runtime.
        cache_dir: if given, the table is loaded from / saved to `table_cache_path(...)` there; a
            cached table that lacks entries for `space` is measured again.
        repeats: recorded rounds over the profiling models.
        warmup: unrecorded rounds first.
        copies: slots per op per hidden size.
        seed: seeds the profiling and calibration archs and weights.
        calibration_archs: whole models every table is checked against (0: torch tables are not checked).
        stat: how timings are summarised (see `summarize_ms`); a cached table made with another
            statistic is measured again.
        progress: called as progress(fraction, message) while profiling.

    Returns:
        The LatencyTable; `table.meta["loaded_from"]` is set when it came from the cache.
    """
    path = None
    if cache_dir is not None:
        path = table_cache_path(cache_dir, hardware_fingerprint(), setting, torch.__version__, space)
        if path.exists():
            table = LatencyTable.load(path)
            if not table.missing(space) and table.meta.get("stat", "median") == stat:
                table.meta["loaded_from"] = str(path)
                if calibration_archs:
                    check_against_models(table, space, setting, calibration_archs, seed, repeats, stat)
                return table
    summarize_ms([1], stat)  # reject an unknown stat before minutes of measuring
    profiler = TableProfiler(space, setting, copies, seed)
    run_rounds([profiler], setting.threads, repeats, warmup, progress)
    table = profiler.table(stat)
    if setting.runtime == "onnxruntime" or calibration_archs:
        check_against_models(table, space, setting, calibration_archs, seed, repeats, stat)
    if path is not None:
        table.save(path)
    return table
