"""Compaction benchmark: what vocabulary trimming and int8 do to MiniLM-L6 students on Rotten Tomatoes.

Writes bench/results/compact.json:

    smallest_params / smallest_memory_mb   {"before", "after"}: the space's cheapest student with the
                                           teacher's whole vocabulary and with the job's trimmed one
    vocab                                  kept tokens, kept fraction; oov_rate: test tokens outside it
    front[]                                from a finished job's run folder (--run-dir), one entry per
                                           (finalist, variant) point: params, memory_mb, latency_ms,
                                           test_accuracy, variant, vocab_size, embedding_rank (None: full)

The vocabulary part tokenizes the task and corpus only (about a minute on 2 cores); the front needs a
job that already ran with this code (`slimformer run` at the quick preset takes ~20 minutes), so it is
read, never run, here.

    .venv/bin/python bench/compact.py [--run-dir runs/some-job] [--out bench/results/compact.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def vocabulary(spec) -> dict:
    """The kept vocabulary of `spec`'s task and corpus, as the prepare stage computes it."""
    from transformers import AutoTokenizer

    from slimformer.data import distillation_texts, load_task
    from slimformer.service.validation import builtin_teacher_folder
    from slimformer.supernet.vocab import kept_vocab, oov_rate
    from slimformer.workers.plan import plan_for

    plan = plan_for(spec)
    task = load_task(spec.dataset, seed=spec.seed)
    tokenizer = AutoTokenizer.from_pretrained(str(builtin_teacher_folder(spec.teacher)), local_files_only=True)
    texts = [ex.text for ex in task.train + task.dev]
    texts += distillation_texts(task, spec.corpus, limit=plan.distill_texts, seed=spec.seed)
    kept = kept_vocab(tokenizer, texts)
    test = task.subset(dev=plan.eval_examples, test=plan.eval_examples).test
    return {**kept.summary(), "oov_rate_test": oov_rate(tokenizer, kept, [ex.text for ex in test])}


def smallest(space, shape) -> dict:
    from slimformer.search_space import count_params, estimate_memory

    arch = space.smallest()
    return {"params": count_params(arch, space),
            "memory_mb": round(estimate_memory(arch, space, shape.batch, shape.seq_len).total_mb, 3)}


def front(run_dir: Path) -> list[dict]:
    """Every (finalist, variant) point of a finished run, with the front's flags."""
    records = json.loads((run_dir / "finalists.json").read_text())
    out = []
    for r in records:
        for name, v in r.get("variants", {"fp32": r}).items():
            out.append({"hash": r["hash"], "variant": name, "params": v["params"], "memory_mb": v["memory_mb"],
                        "latency_ms": v["latency_ms"], "test_accuracy": v["test_accuracy"],
                        "vocab_size": r.get("vocab_size"), "embedding_rank": None,
                        "pareto": name in r.get("pareto_variants", ["fp32"] if r.get("pareto") else [])})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", type=Path, help="a finished job's run folder (for the measured front)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "compact.json")
    args = parser.parse_args()

    from slimformer.contracts.spec import JobSpec
    from slimformer.search_space import TeacherFacts
    from slimformer.search_space.space import space_for_teacher
    from slimformer.service.validation import builtin_teacher_folder

    spec = JobSpec.model_validate(json.loads((args.run_dir / "spec.json").read_text())) if args.run_dir else JobSpec()
    config = json.loads((builtin_teacher_folder(spec.teacher) / "config.json").read_text())
    facts = TeacherFacts.from_hf_config(argparse.Namespace(**config), num_labels=2)
    vocab = vocabulary(spec)
    full, trimmed = space_for_teacher(facts), space_for_teacher(facts, student_vocab=vocab["vocab_size"])
    before, after = smallest(full, spec.latency), smallest(trimmed, spec.latency)
    result = {
        "teacher": spec.teacher, "dataset": spec.dataset, "corpus": spec.corpus,
        "smallest_params": {"before": before["params"], "after": after["params"]},
        "smallest_memory_mb": {"before": before["memory_mb"], "after": after["memory_mb"]},
        "vocab": {k: v for k, v in vocab.items() if k != "oov_rate_test"},
        "oov_rate": round(vocab["oov_rate_test"], 5),
        "front": front(args.run_dir) if args.run_dir else [],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "front"}, indent=2))


if __name__ == "__main__":
    main()
