"""Compaction benchmark: what vocabulary trimming, factorised embeddings and int8 do to MiniLM-L6 students.

Writes bench/results/compact.json:

    smallest_params / smallest_memory_mb   {"before", "after"}: the space's cheapest student with the
                                           teacher's whole, unfactorised vocabulary table, and with the
                                           job's trimmed table factorised at the space's smallest rank
    vocab                                  kept tokens, kept fraction; oov_rate: test tokens outside it
    front[]                                from a finished job's run folder (--run-dir), one entry per
                                           (finalist, variant) point: params, memory_mb, latency_ms,
                                           test_accuracy, variant, vocab_size, embedding_rank (None: full),
                                           params_untrimmed_full_rank (the same model with the teacher's
                                           whole vocabulary and a V x H table); with --twins 64,128 also
                                           the "without factorisation" comparison, measured in the same
                                           run: each plain cut the job fine-tuned (full-rank word table)
                                           with its word table factorised at each rank and distilled from
                                           the fine-tuned cut, the finalists' recipe (origin
                                           "compact_twin"; what a job's `embedding_twins` makes). With
                                           --twin-source shared: fine-tuned again from the task-tuned
                                           shared weights instead, factorised there
    targets                                issue 9's three targets with the figures that decide them

The vocabulary part tokenizes the task and corpus only (about a minute on 2 cores); the front needs a
job that already ran with this code (a quick-preset job: 2,949 s quiet, stop 18), so it is
read, never run, here. Since stop 30 a job trims only where size counts (`JobSpec.trims_vocab`): the
job this reads needs a params_m or memory_mb budget, or the memory objective. Twins are fine-tuned
into the same run folder (candidates/<hash>), so a second call finds them trained and only re-reads them.

    accuracy_probe                         (--probe) test accuracy of a frozen-encoder probe with the
                                           teacher's and the trimmed tokenizer

    .venv/bin/python bench/compact.py [--run-dir runs/some-job] [--twins 64,128] [--probe]
                                      [--twin-source shared|finalist] [--out bench/results/compact.json]
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

    from slimformer.data import load_task
    from slimformer.service.validation import builtin_teacher_folder
    from slimformer.supernet.vocab import kept_vocab, oov_rate
    from slimformer.workers.plan import plan_for
    from slimformer.workers.vocab import vocab_texts

    plan = plan_for(spec)
    task = load_task(spec.dataset, seed=spec.seed)
    tokenizer = AutoTokenizer.from_pretrained(str(builtin_teacher_folder(spec.teacher)), local_files_only=True)
    kept = kept_vocab(tokenizer, vocab_texts(task, spec.corpus, plan.distill_texts, spec.seed))
    test = task.subset(dev=plan.eval_examples, test=plan.eval_examples).test
    return {**kept.summary(), "oov_rate_test": oov_rate(tokenizer, kept, [ex.text for ex in test])}


def accuracy_probe(spec, max_train: int = 3000) -> dict:
    """How much trimming moves a MiniLM classifier's test predictions, without fine-tuning MiniLM.

    A logistic regression on the frozen teacher's mean-pooled embeddings (trained on up to
    `max_train` train rows) is evaluated on the test rows twice: tokenized by the teacher, and by
    the trimmed tokenizer with its ids mapped back to the teacher's rows (the same numbers as a
    gathered embedding table). Only words spelled differently can change a prediction. A frozen
    encoder is a stand-in for a fine-tuned student; the job's own figure is a finalist's
    `test_accuracy` against its `test_accuracy_full_vocab`.
    """
    import numpy as np
    import torch
    from sklearn.linear_model import LogisticRegression
    from transformers import AutoModel, AutoTokenizer

    from slimformer.data import load_task
    from slimformer.service.validation import builtin_teacher_folder
    from slimformer.supernet.vocab import kept_vocab, trim_tokenizer
    from slimformer.workers.plan import plan_for
    from slimformer.workers.vocab import vocab_texts

    torch.set_num_threads(1)
    folder = str(builtin_teacher_folder(spec.teacher))
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    encoder = AutoModel.from_pretrained(folder, local_files_only=True).eval()
    task = load_task(spec.dataset, seed=spec.seed)
    kept = kept_vocab(tokenizer, vocab_texts(task, spec.corpus, plan_for(spec).distill_texts, spec.seed))
    trimmed = trim_tokenizer(tokenizer, kept)
    old_ids = torch.tensor(kept.old_ids)

    def embed(rows, tok, remap):
        out = []
        for i in range(0, len(rows), 64):
            batch = tok([r.text for r in rows[i : i + 64]], padding=True, truncation=True, max_length=64,
                        return_tensors="pt")
            ids = old_ids[batch["input_ids"]] if remap else batch["input_ids"]
            with torch.inference_mode():
                hidden = encoder(input_ids=ids, attention_mask=batch["attention_mask"]).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).float()
            out.append(((hidden * mask).sum(1) / mask.sum(1)).numpy())
        return np.concatenate(out)

    train = task.train[:max_train]
    clf = LogisticRegression(max_iter=2000).fit(embed(train, tokenizer, False), [r.label for r in train])
    labels = np.array([r.label for r in task.test])
    full = clf.predict(embed(task.test, tokenizer, False))
    cut = clf.predict(embed(task.test, trimmed, True))
    return {"test_rows": len(labels), "accuracy_full_vocab": float((full == labels).mean()),
            "accuracy_trimmed": float((cut == labels).mean()), "predictions_changed": float((full != cut).mean()),
            "probe": f"logistic regression on frozen {spec.teacher} mean-pooled embeddings, {len(train)} train rows"}


def smallest(space, shape) -> dict:
    from slimformer.search_space import count_params, estimate_memory

    arch = space.smallest()
    return {"params": count_params(arch, space),
            "memory_mb": round(estimate_memory(arch, space, shape.batch, shape.seq_len).total_mb, 3)}


def compact_twins(run_dir: Path, ranks: list[int], only: list[str] | None = None,
                  source: str = "finalist") -> list[dict]:
    """Train, export and measure each plain cut (or, with `only`, named finalists) again factorised.

    The job's plain cuts (origin "layer_dropped") have the teacher's V x H table (trimmed); the same
    layers at rank r are what factorisation alone buys at that depth. `source` "finalist" (what a
    job's `embedding_twins` does, workers/embedding_twins.py): the fine-tuned cut's own table
    factorised and the twin distilled from the cut. "shared": fine-tuned by the job's finalist code
    (`train_finalists`) from the task-tuned shared weights, whose word table is factorised by its
    truncated SVD the way every factorised candidate starts. Both are exported and measured by
    `export_and_measure`. Written to `compact_twins.json` in the run folder beside finalists.json.
    """
    from dataclasses import replace

    from slimformer.contracts.spec import JobSpec
    from slimformer.search_space import Arch
    from slimformer.workers.context import RunContext, write_json
    from slimformer.workers.embedding_twins import train_twins
    from slimformer.workers.progress import ConsoleReporter
    from slimformer.workers.ray_runtime import init_ray, shutdown_ray
    from slimformer.workers.stages.finalize import export_and_measure, train_finalists

    spec = JobSpec.model_validate(json.loads((run_dir / "spec.json").read_text()))
    init_ray(num_cpus=os.cpu_count())  # one fine-tune per core, as the job's finalize stage runs them
    ctx = RunContext(spec, run_dir, ConsoleReporter(), use_ray=True)
    full_rank = [r for r in json.loads((run_dir / "finalists.json").read_text())
                 if Arch.from_dict(r["arch"]).embedding_rank is None]
    originals = [r for r in full_rank if r.get("origin") == "layer_dropped"]
    if only:  # cuts by their words ("teacher's first 2 layers"); "search picks": the search's own
        originals = [r for r in full_rank if r.get("reference") in only
                     or ("search picks" in only and r.get("origin") != "layer_dropped")]
    archs, origins = [], []
    for original in originals:
        for rank in ranks:
            arch = ctx.space.parse(replace(Arch.from_dict(original["arch"]), embedding_rank=rank).to_dict())
            archs.append(arch)
            origins.append({"origin": "compact_twin", "reference": f"{original.get('reference', original['hash'])}, "
                            f"word table at rank {rank}", "twin_of": original["hash"], "twin_source": source})
    try:
        if source == "finalist":
            trained = train_twins(ctx, [(o["twin_of"], a.embedding_rank) for o, a in zip(origins, archs, strict=True)])
        else:
            trained = train_finalists(ctx, archs)
    finally:
        shutdown_ray()
    records = export_and_measure(ctx, archs, trained, origins)
    write_json(run_dir / "compact_twins.json", records)
    return records


def front(run_dir: Path, plain_space) -> list[dict]:
    """Every (finalist, variant) point of a finished run, with the front's flags.

    `plain_space` (the teacher's whole vocabulary, no factorisation) counts what each model would
    weigh without trimming and factorisation: the same blocks, a V x H word table.
    """
    from dataclasses import replace

    from slimformer.search.pareto import pareto_front
    from slimformer.search_space import Arch, count_params

    records = json.loads((run_dir / "finalists.json").read_text())
    twins = run_dir / "compact_twins.json"
    records += json.loads(twins.read_text()) if twins.exists() else []
    out = []
    for r in records:
        arch = Arch.from_dict(r["arch"])
        plain = count_params(replace(arch, embedding_rank=None), plain_space)
        for name, v in r.get("variants", {"fp32": r}).items():
            # Both variants on onnxruntime, the engine that runs both, whatever the job's runtime was.
            onnx_ms = r["latency_onnx_ms"] if name == "fp32" else v["latency_ms"]
            out.append({"hash": r["hash"], "variant": name, "params": v["params"], "memory_mb": v["memory_mb"],
                        "latency_ms": onnx_ms, "runtime": "onnxruntime", "test_accuracy": v["test_accuracy"],
                        "vocab_size": r.get("vocab_size"), "embedding_rank": arch.embedding_rank,
                        "test_accuracy_full_vocab": r.get("test_accuracy_full_vocab") if name == "fp32" else None,
                        "origin": r.get("origin"), "reference": r.get("reference"),
                        **({"twin_source": r["twin_source"]} if r.get("twin_source") else {}),
                        "params_untrimmed_full_rank": plain,
                        "on_job_front": name in r.get("pareto_variants", ["fp32"] if r.get("pareto") else [])})
    on_front = set(pareto_front([(-q["test_accuracy"], q["latency_ms"]) for q in out]))
    for i, q in enumerate(out):
        q["pareto"] = i in on_front  # the measured onnxruntime front over every variant
    return out


def params_fronts(points: list[dict]) -> dict:
    """The (test accuracy, parameters) fronts with and without trimming and factorisation, and their ratio.

    Without: the fp32 finalists whose word table is full rank (the plain cuts and unfactorised
    picks), each counted with the teacher's whole vocabulary (`params_untrimmed_full_rank`) and scored
    with its accuracy before trimming (`test_accuracy_full_vocab`: the fine-tuned model as it was,
    tokenized by the teacher). With: every fp32 point as handed over (trimmed, factorised where the
    arch or twin says so). For each point of the plain front, the smallest handed-over point within
    0.5 point of its accuracy; the ratio of their parameter counts is what trimming and
    factorisation save at equal accuracy.
    """
    from slimformer.search.pareto import pareto_front

    fp32 = [p for p in points if p["variant"] == "fp32"]
    plain = [{"hash": p["hash"], "params": p["params_untrimmed_full_rank"], "origin": p["origin"],
              "test_accuracy": p.get("test_accuracy_full_vocab") or p["test_accuracy"]}
             for p in fp32 if p["embedding_rank"] is None]
    plain = [plain[i] for i in sorted(pareto_front([(-q["test_accuracy"], q["params"]) for q in plain]))]
    pairs = []
    for q in sorted(plain, key=lambda q: q["params"]):
        near = [p for p in fp32 if p["test_accuracy"] >= q["test_accuracy"] - 0.005]
        best = min(near, key=lambda p: p["params"])
        pairs.append({"plain": q, "compact": {k: best[k] for k in ("hash", "params", "test_accuracy", "embedding_rank",
                                                                   "vocab_size", "origin")},
                      "params_ratio": round(best["params"] / q["params"], 3)})
    return {"pairs": pairs, "max_ratio": max((p["params_ratio"] for p in pairs), default=None)}


def targets(result: dict) -> dict:
    """Issue 9's targets, each with the figures that decide it (None where this run cannot tell)."""
    from slimformer.search.pareto import pareto_front

    points = result["front"]
    fp32 = [p for p in points if p["variant"] == "fp32"]
    by_hash = {p["hash"]: {q["variant"]: q for q in points if q["hash"] == p["hash"]} for p in fp32}
    wins = [h for h, v in by_hash.items() if "int8" in v and v["int8"]["latency_ms"] < v["fp32"]["latency_ms"]
            and v["int8"]["test_accuracy"] >= v["fp32"]["test_accuracy"] - 0.01]
    # An int8 point off the front is fine where another int8 point beats it (the front there is made of
    # int8 models); the target fails where an fp32 model beats a winning int8, i.e. where the int8
    # variant was not worth offering after all.
    int8_front = set(pareto_front([(-q["test_accuracy"], q["latency_ms"]) for q in points if q["variant"] == "int8"]))
    int8_points = [q for q in points if q["variant"] == "int8"]
    int8_front_hashes = {int8_points[i]["hash"] for i in int8_front}
    beaten_by_fp32 = [h for h in wins if not by_hash[h]["int8"].get("pareto") and h in int8_front_hashes]
    compact = params_fronts(points)
    return {
        "smallest_at_most_1.5M_params": {"value": result["smallest_params"]["after"],
                                         "met": result["smallest_params"]["after"] <= 1_500_000},
        "half_params_at_equal_accuracy": {**compact, "met": compact["max_ratio"] <= 0.5 if compact["pairs"] else None},
        "int8_on_front_where_faster_within_1_point": {
            "int8_wins": wins, "on_front": [h for h in wins if by_hash[h]["int8"].get("pareto")],
            "beaten_only_by_another_int8": [h for h in wins if not by_hash[h]["int8"].get("pareto")
                                            and h not in beaten_by_fp32],
            "beaten_by_an_fp32_model": beaten_by_fp32,
            "met": not beaten_by_fp32 if points else None},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", type=Path, help="a finished job's run folder (for the measured front)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "compact.json")
    parser.add_argument("--probe", action="store_true", help="also run the frozen-encoder accuracy probe (minutes)")
    parser.add_argument("--twins", default="", help="ranks, e.g. 64,128: fine-tune each plain cut again factorised")
    parser.add_argument("--twin-cuts", default="", help="only these finalists, ';'-separated: \"teacher's first 2 "
                        "layers\", or \"search picks\" for every full-rank pick of the search")
    parser.add_argument("--twin-source", choices=("shared", "finalist"), default="finalist",
                        help="shared: fine-tune each twin from the task-tuned shared weights (a finalist's "
                        "recipe); finalist: factorise the fine-tuned cut itself and distil the twin from it")
    args = parser.parse_args()

    from slimformer.contracts.spec import JobSpec
    from slimformer.search_space import TeacherFacts
    from slimformer.search_space.space import space_for_teacher
    from slimformer.service.validation import builtin_teacher_folder

    spec = JobSpec.model_validate(json.loads((args.run_dir / "spec.json").read_text())) if args.run_dir else JobSpec()
    config = json.loads((builtin_teacher_folder(spec.teacher) / "config.json").read_text())
    facts = TeacherFacts.from_hf_config(argparse.Namespace(**config), num_labels=2)
    vocab = vocabulary(spec)
    full = space_for_teacher(facts, embedding_ranks=())  # the teacher's table: whole and V x H
    trimmed = space_for_teacher(facts, student_vocab=vocab["vocab_size"])
    before, after = smallest(full, spec.latency), smallest(trimmed, spec.latency)
    if args.twins and args.run_dir:
        only = [c.strip() for c in args.twin_cuts.split(";") if c.strip()] or None
        compact_twins(args.run_dir, [int(r) for r in args.twins.split(",")], only, args.twin_source)
    result = {
        "teacher": spec.teacher, "dataset": spec.dataset, "corpus": spec.corpus,
        "smallest_params": {"before": before["params"], "after": after["params"]},
        "smallest_memory_mb": {"before": before["memory_mb"], "after": after["memory_mb"]},
        "vocab": {k: v for k, v in vocab.items() if k != "oov_rate_test"},
        "oov_rate": round(vocab["oov_rate_test"], 5),
        "front": front(args.run_dir, full) if args.run_dir else [],
        "command": " ".join(["python", "bench/compact.py", *sys.argv[1:]]),  # how to measure it again
    }
    kept = json.loads(args.out.read_text()) if args.out.exists() else {}
    if args.probe:
        result["accuracy_probe"] = accuracy_probe(spec)
    elif "accuracy_probe" in kept:  # measured before, with the same trimming: kept, not run again
        result["accuracy_probe"] = kept["accuracy_probe"]
    result["targets"] = targets(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "front"}, indent=2))


if __name__ == "__main__":
    main()
