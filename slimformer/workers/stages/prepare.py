"""Stage `prepare`: task data, the task teacher (fine-tuned or cached), its figures, and the search space."""

from __future__ import annotations

from typing import Any

import torch

from slimformer.search_space import TeacherFacts
from slimformer.search_space.space import space_for_teacher
from slimformer.supernet.timing import measure_module
from slimformer.workers.context import RunContext, read_json, write_json

VOCAB_FILE = "vocab.json"


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
    write_json(ctx.path("space.json"), space.to_dict())
    summary = {
        "task": {"name": task.name, "labels": task.labels, "train": len(task.train), "dev": len(task.dev),
                 "test": len(task.test), "fingerprint": task.fingerprint()},
        "teacher": {
            "name": ctx.spec.teacher, "dev_accuracy": teacher.dev_accuracy, "test_accuracy": teacher.test_accuracy,
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


def job_vocab(ctx: RunContext) -> dict[str, Any] | None:
    """The job's trimmed vocabulary (run_dir/vocab.json, computed once); None when not trimming.

    Kept: the tokens of the task's train and dev text and of the distillation texts, the specials
    and every single character (supernet/vocab.py says why). The OOV rate is measured on the test
    rows candidates are evaluated on: the share of their teacher tokens the student spells otherwise.
    """
    from slimformer.data import distillation_texts
    from slimformer.supernet.vocab import is_trimmable, kept_vocab, oov_rate

    path = ctx.path(VOCAB_FILE)
    if path.exists():
        doc = read_json(path)
        return doc if doc.get("kept") else None
    tokenizer = ctx.teacher.tokenizer
    if not ctx.spec.trim_vocab or not is_trimmable(tokenizer):
        write_json(path, {"kept": None})
        return None
    texts = [ex.text for ex in ctx.task.train + ctx.task.dev]
    texts += distillation_texts(ctx.task, ctx.spec.corpus, limit=ctx.plan.distill_texts, seed=ctx.spec.seed)
    kept = kept_vocab(tokenizer, texts)
    oov = oov_rate(tokenizer, kept, [ex.text for ex in ctx.eval_task.test])
    doc = {**kept.summary(), "oov_rate_test": round(oov, 5), "kept": {"size": kept.size, **kept.to_dict()}}
    write_json(path, doc)
    ctx.reporter.event(f"vocabulary trimmed to {kept.size:,} of {kept.teacher_size:,} tokens "
                       f"(test OOV rate {doc['oov_rate_test']:.2%})")
    return doc


def job_kept_vocab(ctx: RunContext):
    """The KeptVocab of the job (see `job_vocab`), or None when the student keeps the whole vocabulary."""
    from slimformer.supernet.vocab import KeptVocab

    doc = job_vocab(ctx)
    return KeptVocab.from_dict(doc["kept"]) if doc else None
