"""The job's trimmed vocabulary, shared by the prepare stage (costs) and finalize (export).

Stages never import each other; both read it from here, and it is computed once into run_dir/vocab.json.
"""

from __future__ import annotations

from typing import Any

from slimformer.errors import InfeasibleBudgetError
from slimformer.search_space import SearchSpace, count_params, estimate_memory
from slimformer.supernet.vocab import KeptVocab
from slimformer.workers.context import RunContext, read_json, write_json

VOCAB_FILE = "vocab.json"


def vocab_texts(task: Any, corpus: str | None, distill_texts: int, seed: int) -> list[str]:
    """The text a trimmed vocabulary is kept from: the task's training split and the distillation
    texts (the corpus where there is one), as the prepare stage and bench/compact.py both take it."""
    from slimformer.data import distillation_texts

    return [ex.text for ex in task.train] + distillation_texts(task, corpus, limit=distill_texts, seed=seed)


def job_vocab(ctx: RunContext) -> dict[str, Any] | None:
    """The job's trimmed vocabulary (run_dir/vocab.json, computed once); None when not trimming.

    Trimmed only where the job counts size (`JobSpec.trims_vocab`). Kept: the tokens of the task's
    training text and of the distillation texts, the specials and every single character
    (supernet/vocab.py says why). Not the dev text's: dev is held-out text like a user's, so the
    exported model's dev figure shows what trimming costs on words the training text lacks. The OOV
    rate is measured on the test rows candidates are evaluated on: the share of their teacher tokens
    the student spells otherwise.
    """
    from slimformer.supernet.vocab import is_trimmable, kept_vocab, oov_rate

    path = ctx.path(VOCAB_FILE)
    if path.exists():
        doc = read_json(path)
        return doc if doc.get("kept") else None
    tokenizer = ctx.teacher.tokenizer
    # A tokenizer naming more tokens than the teacher embeds is not one trimming can index: keep all.
    if not ctx.spec.trims_vocab or not is_trimmable(tokenizer) or len(tokenizer) > ctx.teacher.facts.vocab_size:
        write_json(path, {"kept": None})
        if ctx.spec.trim_vocab and not ctx.spec.trims_vocab:
            ctx.reporter.event("vocabulary kept whole: no params_m or memory_mb budget and no memory objective, "
                               "so trimming would cost accuracy and buy nothing the job asks for")
        return None
    kept = kept_vocab(tokenizer, vocab_texts(ctx.task, ctx.spec.corpus, ctx.plan.distill_texts, ctx.spec.seed))
    oov = oov_rate(tokenizer, kept, [ex.text for ex in ctx.eval_task.test])
    doc = {**kept.summary(), "oov_rate_test": round(oov, 5), "kept": {"size": kept.size, **kept.to_dict()}}
    write_json(path, doc)
    ctx.reporter.event(f"vocabulary trimmed to {kept.size:,} of {kept.teacher_size:,} tokens "
                       f"(test OOV rate {doc['oov_rate_test']:.2%})")
    return doc


def job_kept_vocab(ctx: RunContext) -> KeptVocab | None:
    """The KeptVocab of the job (see `job_vocab`), or None when the student keeps the whole vocabulary."""
    doc = job_vocab(ctx)
    return KeptVocab.from_dict(doc["kept"]) if doc else None


def check_size_budgets(ctx: RunContext, space: SearchSpace) -> None:
    """Refuse a parameter or memory budget the job's cheapest student cannot meet, before any training.

    The service counted the cheapest student with the fewest rows any trimmed vocabulary keeps;
    the job's own vocabulary is larger, so a budget between the two is found out here, in the
    prepare stage, instead of after hours of distillation in the search stage.

    Raises:
        InfeasibleBudgetError: naming each such budget and the smallest achievable value.
    """
    s, arch = ctx.latency_setting, space.smallest()
    smallest = {"params_m": count_params(arch, space) / 1e6,
                "memory_mb": estimate_memory(arch, space, s.batch, s.seq_len).total_mb}
    limits = ctx.spec.budgets.model_dump(exclude_none=True)
    bad = [axis for axis in smallest if axis in limits and limits[axis] < smallest[axis]]
    if bad:
        parts = [f"{a} budget {limits[a]:.6g} is below the smallest achievable {smallest[a]:.6g}" for a in bad]
        vocab = f"{space.student_vocab:,} kept tokens" if space.student_vocab else "the teacher's whole vocabulary"
        raise InfeasibleBudgetError("; ".join(parts) + f" (with {vocab})", smallest=smallest)
