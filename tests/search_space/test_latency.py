"""Latency lookup tables: storage, prediction, cache keys, and prediction vs real measurement."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from slimformer.search_space import Arch, Op, TeacherFacts, space_for_teacher
from slimformer.search_space.latency import (
    LatencySetting,
    LatencyTable,
    LatencyTableError,
    hardware_fingerprint,
    predict_latency,
    table_cache_path,
)
from slimformer.supernet import latency_build, model_timing, op_profiler, timing
from slimformer.supernet.subnet import SubNet, SubNetConfig

TINY = TeacherFacts(hidden_size=64, num_layers=6, num_heads=4, intermediate_size=128, vocab_size=300, max_position=128)
SEQ = 32


@pytest.fixture(scope="module")
def space():
    return space_for_teacher(TINY)


def arch_of(hidden: int, *ops: str) -> Arch:
    """A 3 x 4 arch whose slots are `ops` in order, padded with identity."""
    flat = [Op.parse(o) for o in ops] + [Op("id")] * (12 - len(ops))
    return Arch(hidden, tuple(tuple(flat[b * 4 : (b + 1) * 4]) for b in range(3)))


def hand_table() -> LatencyTable:
    table = LatencyTable(setting=LatencySetting(seq_len=SEQ), torch_version="2.x-test", overhead_ms=0.05)
    table.ops.update({("mha:2", 64): 0.3, ("ffn:128", 64): 0.2, ("conv:3", 64): 0.1, ("mha:2", 32): 0.15})
    table.embeddings.update({64: 0.04, 32: 0.03})
    table.head.update({64: 0.01, 32: 0.01})
    return table


# --- the torch-free table ------------------------------------------------------------------------


def test_latency_module_does_not_import_torch():
    code = "import sys, slimformer.search_space.latency; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_predict_sums_the_parts():
    table = hand_table()
    arch = arch_of(64, "mha:2", "ffn:128", "id", "conv:3", "mha:2")
    expected = 0.05 + 0.04 + (0.3 + 0.2 + 0.0 + 0.1 + 0.3) + 0.01
    assert predict_latency(arch, table) == pytest.approx(expected)
    table.ops[("id", 64)] = 0.002  # a measured identity entry is used when present
    assert predict_latency(arch, table) == pytest.approx(expected + 8 * 0.002)


def test_the_same_ops_in_another_order_predict_the_very_same_float():
    # A plain left-to-right sum of these differs in the last bit between the two orders; a run's
    # calibration scale then ordered such twins differently from another run's (a resumed job's
    # candidates came out in another order than the uninterrupted job's).
    table = hand_table()
    table.ops.update({("mha:2", 64): 0.1, ("ffn:128", 64): 0.2, ("conv:3", 64): 0.3})
    one, other = arch_of(64, "mha:2", "ffn:128", "conv:3"), arch_of(64, "conv:3", "ffn:128", "mha:2")
    assert (0.05 + 0.04 + 0.1 + 0.2 + 0.3) != (0.05 + 0.04 + 0.3 + 0.2 + 0.1)  # why a plain sum is not enough
    for scale, offset in ((1.0, 0.0), (1.37, 0.21), (0.93, -0.05)):
        table.scale, table.offset_ms = scale, offset
        assert predict_latency(one, table) == predict_latency(other, table)


def test_missing_entry_raises_and_names_it():
    table = hand_table()
    with pytest.raises(LatencyTableError, match=r"conv:3 at H=32") as info:
        predict_latency(arch_of(32, "mha:2", "conv:3"), table)
    assert info.value.entry == "conv:3 at H=32"
    with pytest.raises(LatencyTableError, match=r"embeddings at H=48"):
        predict_latency(arch_of(48, "mha:2"), table)
    assert "ffn:128 at H=32" in table.missing(space_for_teacher(TINY))


def test_json_round_trip(tmp_path):
    table = hand_table()
    table.calibrate([(arch_of(64, "mha:2"), 1.0), (arch_of(64, "mha:2", "ffn:128"), 1.5)])
    path = table.save(tmp_path / "t.json")
    loaded = LatencyTable.load(path)
    assert loaded.to_dict() == table.to_dict()
    assert loaded.setting == table.setting and loaded.hardware == hardware_fingerprint()
    arch = arch_of(64, "mha:2", "ffn:128", "conv:3")
    assert predict_latency(arch, loaded) == pytest.approx(predict_latency(arch, table))
    assert json.loads(path.read_text())["ops"]["64"]["mha:2"] == 0.3
    (tmp_path / "bad.json").write_text('{"format": "something else"}')
    with pytest.raises(LatencyTableError, match="not a slimformer latency table"):
        LatencyTable.load(tmp_path / "bad.json")


def test_calibrate_fits_scale_and_offset():
    table = hand_table()
    archs = [arch_of(64, *(["mha:2"] * k)) for k in (1, 3, 6, 9)]
    measured = [2.0 * table.raw_predict(a) + 0.5 for a in archs]
    scale, offset = table.calibrate(zip(archs, measured, strict=True))
    assert (scale, offset) == (pytest.approx(2.0), pytest.approx(0.5))
    assert predict_latency(archs[1], table) == pytest.approx(measured[1])
    with pytest.raises(ValueError, match="at least one"):
        table.calibrate([])


def test_setting_validates():
    with pytest.raises(ValueError, match="runtime"):
        LatencySetting(runtime="tensorrt")
    with pytest.raises(ValueError, match="seq_len"):
        LatencySetting(seq_len=0)


def test_cache_key_follows_hardware_shape_threads_and_torch(tmp_path, space):
    fp = hardware_fingerprint()
    base = table_cache_path(tmp_path, fp, LatencySetting(seq_len=SEQ), "2.13.0", space)
    assert base == table_cache_path(tmp_path, dict(fp), LatencySetting(seq_len=SEQ), "2.13.0", space)
    others = [
        table_cache_path(tmp_path, fp, LatencySetting(seq_len=64), "2.13.0", space),
        table_cache_path(tmp_path, fp, LatencySetting(seq_len=SEQ, batch=8), "2.13.0", space),
        table_cache_path(tmp_path, fp, LatencySetting(seq_len=SEQ, threads=2), "2.13.0", space),
        table_cache_path(tmp_path, fp, LatencySetting(seq_len=SEQ, runtime="onnxruntime"), "2.13.0", space),
        table_cache_path(tmp_path, fp, LatencySetting(seq_len=SEQ), "2.14.0", space),
        table_cache_path(tmp_path, {**fp, "cores": 64}, LatencySetting(seq_len=SEQ), "2.13.0", space),
        table_cache_path(tmp_path, fp, LatencySetting(seq_len=SEQ), "2.13.0", space.with_(conv_kernels=(3,))),
    ]
    assert len({base, *others}) == len(others) + 1
    assert base.parent == tmp_path and base.suffix == ".json"


# --- measuring -----------------------------------------------------------------------------------


def test_measure_module_restores_threads():
    before = torch.get_num_threads()
    ms = timing.measure_module(lambda: torch.ones(64, 64) @ torch.ones(64, 64), repeats=5, warmup=1, threads=1)
    assert ms > 0 and torch.get_num_threads() == before


def test_build_table_covers_space_and_second_call_loads_cache(tmp_path, space, monkeypatch):
    setting = LatencySetting(seq_len=SEQ)
    table = latency_build.build_latency_table(space, setting, cache_dir=tmp_path, repeats=2, warmup=1, copies=1)
    assert table.missing(space) == []
    assert all(ms > 0 for ms in table.ops.values()) and table.torch_version == torch.__version__
    # The embedding layer is timed per (H, rank) too: every factorised variant of the space has an entry.
    assert set(table.factorised) == {(h, r) for h in space.hidden_sizes for r in space.ranks_at(h) if r}
    assert all(ms > 0 for ms in table.factorised.values())
    assert table.meta["clock"] == "thread_cpu"
    path = table_cache_path(tmp_path, hardware_fingerprint(), setting, torch.__version__, space)
    assert path.exists()

    def no_measuring(*args, **kwargs):
        raise AssertionError("measured again instead of loading the cached table")

    monkeypatch.setattr(latency_build, "TableProfiler", no_measuring)
    again = latency_build.build_latency_table(space, setting, cache_dir=tmp_path, repeats=2, warmup=1, copies=1)
    assert again.meta.pop("loaded_from") == str(path)
    assert again.meta.pop("checked")["scale"] == round(again.scale, 4) > 0  # checked against whole models now
    measured_parts = ("ops", "embeddings", "factorised", "head", "overhead_ms")
    assert [getattr(again, p) for p in measured_parts] == [getattr(table, p) for p in measured_parts]
    with pytest.raises(AssertionError, match="measured again"):  # another shape is another table
        latency_build.build_latency_table(space, LatencySetting(seq_len=16), cache_dir=tmp_path)


def _prediction_error(space, seed: int) -> tuple[float, float, float]:
    """(relative error, predicted ms, measured ms) of the largest tiny arch, co-measured with its table.

    Seq 128 makes the largest arch take several ms (at seq 32 it is ~1 ms and timer overhead and
    dispatch dominate). The table and four copies of the arch are measured in the same
    interleaved rounds, so load from other processes shifts both alike, and the copies average
    out where each one's weights happen to sit in memory.
    """
    setting = LatencySetting(seq_len=128)
    arch = space.largest()
    torch.manual_seed(seed)
    profiler = op_profiler.TableProfiler(space, setting, copies=3, seed=seed)
    timer = model_timing.ModelTimer([SubNet(SubNetConfig.for_arch(arch, space)) for _ in range(4)], setting, seed=seed)
    timing.run_rounds([profiler, timer], threads=1, repeats=20, warmup=2)
    predicted = predict_latency(arch, profiler.table())
    measured = sum(timer.latencies()) / 4
    return abs(predicted - measured) / measured, predicted, measured


def test_prediction_within_10_percent_of_measurement(space):
    # On a shared 2-core machine a burst of load during one ~10 s attempt can still push a single
    # comparison past 10% (measured: about one attempt in six under load average 5-9), so up to
    # three independent attempts are made. A wrong predictor (ops timed in isolation, no overhead)
    # is 20-40% off and fails all three.
    attempts = []
    for seed in range(3):
        err, predicted, measured = _prediction_error(space, seed)
        attempts.append((round(err, 3), round(predicted, 3), round(measured, 3)))
        if err < 0.10:
            break
    assert attempts[-1][0] < 0.10, f"(error, predicted ms, measured ms) per attempt: {attempts}"
    assert attempts[-1][2] >= 1.0  # long enough that the clock's resolution is irrelevant


def _doubled_table_checked(space, setting):
    profiler = op_profiler.TableProfiler(space, setting, copies=1)
    timing.run_rounds([profiler], threads=1, repeats=4, warmup=1)
    slow = LatencyTable.from_dict(profiler.table().to_dict())
    slow.ops = {k: 2 * v for k, v in slow.ops.items()}
    slow.embeddings = {h: 2 * v for h, v in slow.embeddings.items()}
    slow.head = {h: 2 * v for h, v in slow.head.items()}
    slow.overhead_ms *= 2
    latency_build.check_against_models(slow, space, setting, n=4, repeats=6)
    return slow


def test_check_against_models_corrects_a_table_from_a_slower_machine(space):
    # A table whose every entry is doubled is what a machine (or a moment) twice as slow would
    # have cached; checking it against whole models measured now must scale it back. The table and
    # the models are timed a few seconds apart, so a burst of load between them (a background
    # daemon on the stop-22 machine burst to 83% of a core now and then) can move the scale: 0.83
    # once in two full suites there. Up to three independent attempts: a check that does not
    # rescale leaves 1.0 every time and fails all three.
    setting = LatencySetting(seq_len=128)
    for _ in range(3):
        slow = _doubled_table_checked(space, setting)
        if 0.3 < slow.scale < 0.75:
            break
    assert 0.3 < slow.scale < 0.75, slow.meta["checked"]
    checked = slow.meta["checked"]
    errors = [abs(p - m) / m for p, m in zip(checked["predicted_ms"], checked["measured_ms"], strict=True)]
    assert max(errors) < 0.4, checked


def test_onnx_latency_is_measured(tmp_path, space):
    setting = LatencySetting(seq_len=SEQ)
    model = SubNet(SubNetConfig.for_arch(space.smallest(), space))
    path = model_timing.export_for_latency(model, tmp_path)
    ms = model_timing.measure_onnx_latency(path, setting, vocab_size=TINY.vocab_size, repeats=5, warmup=1)
    assert 0 < ms < 1000


def test_a_run_keeps_the_latency_table_it_first_used(tmp_path, space, monkeypatch):
    """Every table handed out is re-checked (its scale refitted) against whole models timed just then; a run
    resumed in a fresh process must still predict with the scale its search used, so the run keeps its table."""
    from slimformer.contracts.spec import JobSpec
    from slimformer.workers.context import RunContext, write_json

    scales = iter([1.0, 2.0, 3.0])

    def build(space, setting, cache_dir=None, **kwargs):
        table = hand_table()
        table.scale = next(scales)
        return table

    monkeypatch.setattr(latency_build, "build_latency_table", build)
    run_dir = tmp_path / "run"
    write_json(run_dir / "space.json", space.to_dict())
    spec = JobSpec(preset="tiny", latency={"seq_len": SEQ})
    arch = arch_of(64, "mha:2", "ffn:128", "conv:3")
    first = RunContext(spec, run_dir, cache_dir=tmp_path / "cache")
    predicted = first.predicted_latency(arch)
    assert first.latency_table().scale == 1.0
    resumed = RunContext(spec, run_dir, cache_dir=tmp_path / "cache")  # a restarted worker's context
    assert resumed.predicted_latency(arch) == predicted and resumed.latency_table().scale == 1.0
    other_run = RunContext(spec, tmp_path / "other", cache_dir=tmp_path / "cache")
    write_json(other_run.path("space.json"), space.to_dict())
    assert other_run.latency_table().scale == 2.0  # another run checks the table again
