"""Time whole SubNets: torch models (`ModelTimer`) and exported ONNX models under onnxruntime (`OnnxTimer`).

Both are Steppers for `timing.run_rounds`: each round visits every model once, in a fresh random
order, with one untimed forward that settles the caches on that model before the timed ones
(see "Order" in `timing`). What a job's finalists, the table checks and the benchmarks report
as a model's latency is measured here.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

import torch

from slimformer.search_space.latency import LatencySetting
from slimformer.supernet.subnet import SubNet, SubNetConfig
from slimformer.supernet.timing import clock_for, run_rounds, summarize_ms, visit_order


def random_inputs(cfg: SubNetConfig, setting: LatencySetting, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """(input_ids, attention_mask, token_type_ids) of shape [batch, seq_len]: random ids, no padding.

    Raises:
        ValueError: if seq_len exceeds the model's position table.
    """
    if setting.seq_len > cfg.max_position:
        raise ValueError(f"seq_len: {setting.seq_len} exceeds the model's {cfg.max_position} positions")
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, cfg.vocab_size, (setting.batch, setting.seq_len), generator=g)
    return ids, torch.ones_like(ids), torch.zeros_like(ids)


class ModelTimer:
    """Times whole torch SubNets, one visit per round: one untimed forward, then `timed` timed ones.

    Models are visited in a seeded random order each round.

    Attributes:
        samples: per model, the recorded forward times in ns.
    """

    def __init__(self, models: Sequence[SubNet], setting: LatencySetting, timed: int = 2, seed: int = 0):
        if setting.runtime != "torch":
            raise ValueError(f"ModelTimer times torch models; setting.runtime is {setting.runtime!r}")
        self.models = [m.eval() for m in models]
        self.inputs = [random_inputs(m.config, setting) for m in self.models]
        self.clock, self.clock_name = clock_for(setting.threads)
        self.timed = timed
        self.rng = random.Random(seed)
        self.samples: list[list[int]] = [[] for _ in self.models]

    def step(self, record: bool) -> None:
        for i in visit_order(len(self.models), self.rng):
            model, args = self.models[i], self.inputs[i]
            model(*args)  # settle the caches on this model
            for _ in range(self.timed):
                start = self.clock()
                model(*args)
                if record:
                    self.samples[i].append(self.clock() - start)

    def latencies(self, stat: str = "median") -> list[float]:
        """Median (or `stat`, see `summarize_ms`) ms per model, in order."""
        return [summarize_ms(s, stat) for s in self.samples]


def measure_models_latency(
    models: Sequence[SubNet], setting: LatencySetting, repeats: int = 30, warmup: int = 3, stat: str = "median"
) -> list[float]:
    """Median forward latency (ms) of each torch SubNet, measured in interleaved rounds.

    Args:
        models: SubNets (put in eval mode here).
        setting: shape and threads (runtime must be "torch").
        repeats: rounds; each records two forwards per model.
        warmup: unrecorded rounds first.
        stat: how each model's timings are summarised (see `summarize_ms`).

    Returns:
        One median (or `stat`) per model, in order.

    Raises:
        ValueError: if setting.runtime is not "torch" or seq_len exceeds a model's positions.
    """
    timer = ModelTimer(models, setting)
    run_rounds([timer], setting.threads, repeats, warmup)
    return timer.latencies(stat)


def measure_model_latency(
    model: SubNet, setting: LatencySetting, repeats: int = 30, warmup: int = 3, stat: str = "median"
) -> float:
    """Median forward latency of one torch SubNet in ms (see `measure_models_latency`)."""
    return measure_models_latency([model], setting, repeats, warmup, stat)[0]


class OnnxTimer:
    """Times ONNX models under onnxruntime, one visit per round like `ModelTimer`.

    Sessions use `setting.threads` intra-op threads, one inter-op thread, sequential execution
    and all graph optimisations. Inputs are random ids below `vocab_size`, a full mask and zero
    token types (whichever of those the graph takes).
    """

    def __init__(
        self, onnx_paths: Sequence[str | Path], setting: LatencySetting, vocab_size: int, timed: int = 2
    ):
        import numpy as np
        import onnxruntime as ort

        self.sessions = []
        self.feeds = []
        rng = np.random.default_rng(0)
        shape = (setting.batch, setting.seq_len)
        for path in onnx_paths:
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = setting.threads
            opts.inter_op_num_threads = 1
            opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            opts.log_severity_level = 3
            sess = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
            feed = {}
            for inp in sess.get_inputs():
                if inp.name == "input_ids":
                    feed[inp.name] = rng.integers(0, vocab_size, size=shape, dtype=np.int64)
                elif inp.name == "attention_mask":
                    feed[inp.name] = np.ones(shape, dtype=np.int64)
                else:
                    feed[inp.name] = np.zeros(shape, dtype=np.int64)
            self.sessions.append(sess)
            self.feeds.append(feed)
        # With one intra-op thread onnxruntime runs the graph on the calling thread, as torch does.
        self.clock, self.clock_name = clock_for(setting.threads)
        self.timed = timed
        self.rng = random.Random(0)
        self.samples: list[list[int]] = [[] for _ in self.sessions]

    def step(self, record: bool) -> None:
        for i in visit_order(len(self.sessions), self.rng):
            sess, feed = self.sessions[i], self.feeds[i]
            sess.run(None, feed)  # settle the caches on this model
            for _ in range(self.timed):
                start = self.clock()
                sess.run(None, feed)
                if record:
                    self.samples[i].append(self.clock() - start)

    def latencies(self, stat: str = "median") -> list[float]:
        """Median (or `stat`, see `summarize_ms`) ms per model, in order."""
        return [summarize_ms(s, stat) for s in self.samples]


def measure_onnx_models_latency(
    onnx_paths: Sequence[str | Path],
    setting: LatencySetting,
    vocab_size: int = 100,
    repeats: int = 30,
    warmup: int = 3,
    stat: str = "median",
) -> list[float]:
    """Median onnxruntime latency (ms) of each ONNX model, in interleaved rounds (see `OnnxTimer`).

    Args:
        onnx_paths: ONNX files taking input_ids / attention_mask / token_type_ids.
        setting: shape and threads (the runtime field is not checked).
        vocab_size: upper bound for the random ids.
        repeats, warmup: recorded and unrecorded rounds.
        stat: how each model's timings are summarised (see `summarize_ms`).

    Returns:
        One median (or `stat`) per file, in order.
    """
    timer = OnnxTimer(onnx_paths, setting, vocab_size)
    run_rounds([timer], setting.threads, repeats, warmup)
    return timer.latencies(stat)


def measure_onnx_latency(
    onnx_path: str | Path,
    setting: LatencySetting,
    vocab_size: int = 100,
    repeats: int = 30,
    warmup: int = 3,
    stat: str = "median",
) -> float:
    """Median onnxruntime latency of one ONNX model in ms (see `measure_onnx_models_latency`)."""
    return measure_onnx_models_latency([onnx_path], setting, vocab_size, repeats, warmup, stat)[0]


def export_for_latency(model: SubNet, folder: Path) -> Path:
    """Export `model` to `folder/model.onnx` with the project's exporter (`supernet.onnx_export`)."""
    from slimformer.supernet.onnx_export import export_onnx

    return export_onnx(model, folder)
