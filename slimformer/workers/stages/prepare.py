"""Stage `prepare`: task data, the task teacher (fine-tuned, cached or as given), its figures, and the search space."""

from __future__ import annotations

from typing import Any

import torch

from slimformer.search_space import TeacherFacts
from slimformer.search_space.space import space_for_teacher
from slimformer.supernet.timing import measure_module
from slimformer.workers.context import RunContext, write_json
from slimformer.workers.vocab import check_size_budgets, job_vocab


def teacher_latency_ms(ctx: RunContext) -> float:
    s = ctx.latency_setting
    ids = torch.randint(0, ctx.teacher.facts.vocab_size, (s.batch, s.seq_len))
    mask = torch.ones_like(ids)
    model = ctx.teacher.model.eval()
    with torch.inference_mode():
        return measure_module(lambda: model(ids, mask), repeats=20, warmup=3, threads=s.threads)


def stage_prepare(ctx: RunContext) -> dict[str, Any]:
    task, teacher = ctx.task, ctx.teacher
    ctx.reporter.progress("prepare", 0.8, f"teacher dev acc {teacher.dev_accuracy:.3f}")
    facts: TeacherFacts = teacher.facts
    vocab = job_vocab(ctx)
    space = space_for_teacher(facts, student_vocab=vocab["kept"]["size"] if vocab else None)
    check_size_budgets(ctx, space)
    write_json(ctx.path("space.json"), space.to_dict())
    summary = {
        "task": {"name": task.name, "labels": task.labels, "train": len(task.train), "dev": len(task.dev),
                 "test": len(task.test), "fingerprint": task.fingerprint()},
        "teacher": {
            "name": ctx.teacher_name or ctx.spec.teacher,  # never the server folder of an upload
            # "given": the folder's own classifier, its logits the target unchanged; else fine-tuned here.
            "source": teacher.source, "fine_tuned": teacher.fine_tuned,
            "dev_accuracy": teacher.dev_accuracy, "test_accuracy": teacher.test_accuracy,
            "params": sum(p.numel() for p in teacher.model.parameters()), "latency_ms": teacher_latency_ms(ctx),
            "from_cache": teacher.from_cache, "cache_path": str(teacher.cache_path),
            "max_length": teacher.max_length, "train_seconds": teacher.meta.get("seconds"),
            "epochs_run": teacher.meta.get("epochs_run"), "dev_history": teacher.meta.get("dev_history"),
        },
        "vocab": {k: v for k, v in vocab.items() if k != "kept"} if vocab else None,
        "space": {"size": space.size(), "hidden_sizes": list(space.hidden_sizes), "blocks": space.num_blocks,
                  "slots_per_block": space.slots_per_block},
    }
    write_json(ctx.path("teacher.json"), summary)
    return summary

