"""Write a model folder's README.md: architecture, parameters, metrics, files and how to load it.

The card is the folder's self-description for people: it shows the arch as a block x slot table
and carries a snippet that runs `model.onnx` with plain onnxruntime, tokenizers and numpy (no
slimformer, no torch). `export` writes it once with the weights and again once the ONNX files and
their sizes are known.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CARD_FILE = "README.md"


def json_default(value: Any) -> Any:
    # Metrics often arrive as numpy or torch scalars; store their Python value.
    return value.item() if hasattr(value, "item") else str(value)


_ONNX_SNIPPET = """```python
import json
import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

folder = "path/to/this/folder"
config = json.load(open(f"{folder}/config.json"))
tok = Tokenizer.from_file(f"{folder}/tokenizer.json")
tok.enable_truncation(config["tokenizer"]["max_length"])
tok.enable_padding(pad_id=config["pad_token_id"])
enc = tok.encode_batch(["a first text", "another one"])
feed = {
    "input_ids": np.array([e.ids for e in enc], dtype=np.int64),
    "attention_mask": np.array([e.attention_mask for e in enc], dtype=np.int64),
    "token_type_ids": np.array([e.type_ids for e in enc], dtype=np.int64),
}
sess = ort.InferenceSession(f"{folder}/model.onnx", providers=["CPUExecutionProvider"])
logits = sess.run(["logits"], feed)[0]
print([config["labels"][i] for i in logits.argmax(-1)])
```"""


def _format_number(value: Any) -> str:
    value = value.item() if hasattr(value, "item") else value
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _vocab_lines(vocab: dict[str, Any] | None) -> list[str]:
    """The trimmed vocabulary: how much of the teacher's was kept, and how often test text missed it."""
    if not vocab:
        return []
    line = (f"Vocabulary: {vocab['vocab_size']:,} of the teacher's {vocab['teacher_vocab_size']:,} tokens kept "
            f"({100 * vocab['kept_fraction']:.1f}%): those of the training text and distillation corpus, the "
            "special tokens and every single character, so rarer words split into pieces.")
    if vocab.get("oov_rate_test") is not None:
        line += f" On the test rows {100 * vocab['oov_rate_test']:.2f}% of the teacher's tokens fall outside it."
    return ["## Vocabulary", "", line, ""]


def _variant_lines(metrics: dict[str, Any]) -> list[str]:
    """fp32 and int8 side by side, and which one to use."""
    variants = metrics.get("variants")
    if not variants:
        return []
    lines = ["## Variants", "", "| variant | download format | dev accuracy | test accuracy | latency ms | memory MB |",
             "|---|---|---|---|---|---|"]
    for name, v in variants.items():
        cells = [v.get(k) for k in ("dev_accuracy", "test_accuracy", "latency_ms", "memory_mb")]
        lines.append(f"| {name} | {v.get('format', '')} | " + " | ".join(
            "" if c is None else _format_number(c) for c in cells) + " |")
    if metrics.get("recommended_variant"):
        lines += ["", f"Recommended: **{metrics['recommended_variant']}** ({metrics.get('recommended_reason', '')})."]
    return lines + [""]


def _origin_line(metrics: dict[str, Any]) -> str:
    """What the model is: the search's own find, or a plain cut of the teacher the job kept to compare."""
    if metrics.get("origin") == "layer_dropped":
        return (f"A compressed BERT-style text classifier: the {metrics.get('reference', 'layer-dropped teacher')}, "
                "fine-tuned with distillation. slimformer keeps it on the front as the plain cut every found model "
                "must beat.")
    if metrics.get("origin") == "embedding_twin":
        what = metrics.get("reference", "a finalist with a factorised word table")
        return (f"A compressed BERT-style text classifier: {what}. Another finalist of the same job, fine-tuned with "
                "distillation, with its word table replaced by two smaller factors and distilled from it again: "
                "fewer parameters at close to its accuracy.")
    return "A compressed BERT-style text classifier found by slimformer's architecture search."


def write_card(
    folder: Path, config: dict[str, Any], metrics: dict[str, Any] | None, sizes: dict[str, int] | None = None
) -> Path:
    """Write README.md: architecture, parameters, metrics, files and how to load the model.

    Args:
        folder: the model folder.
        config: its config.json document.
        metrics: optional metrics; nested values are shown as JSON.
        sizes: optional {file name: bytes} for a files table.

    Returns:
        The README path.
    """
    from slimformer.search_space import Arch

    arch = Arch.from_dict(config["arch"])
    lines = [
        f"# slimformer student `{config['arch_hash']}`",
        "",
        _origin_line(metrics or {}),
        "",
        f"- parameters: {config['num_params']:,}",
        f"- hidden size: {arch.hidden}, non-identity sub-layers: {arch.depth()}",
        *([f"- word embeddings: factorised, rank {arch.embedding_rank} (vocabulary x {arch.embedding_rank}"
            f" lookup times {arch.embedding_rank} x {arch.hidden} projection)"] if arch.embedding_rank else []),
        f"- labels: {', '.join(config['labels'])}",
        f"- max tokens per text: {config['tokenizer']['max_length']}",
        "",
        "## Architecture",
        "",
        "| block | " + " | ".join(f"slot {s}" for s in range(len(arch.blocks[0]))) + " |",
        "|---" * (len(arch.blocks[0]) + 1) + "|",
    ]
    lines += [f"| {b} | " + " | ".join(str(op) for op in block) + " |" for b, block in enumerate(arch.blocks)]
    lines += ["", "```json", json.dumps(config["arch"]), "```", ""]
    lines += _vocab_lines((metrics or {}).get("vocab")) + _variant_lines(metrics or {})
    shown_apart = ("vocab", "variants", "recommended_variant", "recommended_reason", "origin", "reference")
    metrics = {k: v for k, v in (metrics or {}).items() if k not in shown_apart}
    if metrics:
        lines += ["## Metrics", "", "| metric | value |", "|---|---|"]
        for key, value in metrics.items():
            nested = isinstance(value, dict | list)
            shown = json.dumps(value, default=json_default) if nested else _format_number(value)
            lines.append(f"| {key} | {shown} |")
        lines.append("")
    if sizes:
        lines += ["## Files", "", "| file | bytes |", "|---|---|"]
        lines += [f"| {name} | {size:,} |" for name, size in sizes.items()]
        lines.append("")
    lines += [
        "## Use with slimformer",
        "",
        "```python",
        "import slimformer",
        'clf = slimformer.load("path/to/this/folder")            # torch',
        'clf = slimformer.load("path/to/this/folder", backend="onnx")  # onnxruntime only',
        'clf.predict(["a first text", "another one"])            # label names',
        "```",
        "",
        "## Use with plain onnxruntime",
        "",
        "`model.onnx` (and the smaller, slightly less exact `model.int8.onnx`) take int64 `input_ids`,",
        "`attention_mask` and `token_type_ids` of shape [batch, sequence] and return `logits`",
        "[batch, labels]. Only onnxruntime, tokenizers and numpy are needed:",
        "",
        _ONNX_SNIPPET,
        "",
    ]
    path = Path(folder) / CARD_FILE
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


COMPARISON_HEADING = "## Compared with"


def comparison_lines(rows: list[dict[str, Any]], note: str = "", metric: str = "accuracy") -> list[str]:
    """A "Compared with" section: one row per model (name, params, latency_ms, dev/test accuracy, and
    dev/test macro-F1 when `metric` is "macro_f1", the metric the job optimised)."""

    def cell(row: dict[str, Any], key: str, fmt: str) -> str:
        value = row.get(key)
        return "-" if value is None else fmt.format(value)

    scores = ["dev_accuracy", "test_accuracy"] + (["dev_macro_f1", "test_macro_f1"] if metric == "macro_f1" else [])
    titles = [key.replace("_", " ").replace("macro f1", "macro-F1") for key in scores]
    lines = [COMPARISON_HEADING, ""]
    if note:
        lines += [note, ""]
    lines += ["| model | parameters | latency ms | " + " | ".join(titles) + " |", "|---" * (3 + len(scores)) + "|"]
    for row in rows:
        figures = " | ".join(cell(row, key, "{:.4f}") for key in scores)
        lines.append(f"| {row['name']} | {cell(row, 'params', '{:,}')} | {cell(row, 'latency_ms', '{:.3f}')} | "
                     f"{figures} |")
    return [*lines, ""]


def add_comparison(folder: Path, rows: list[dict[str, Any]], note: str = "", metric: str = "accuracy") -> Path:
    """Put a "Compared with" section into the folder's README.md, replacing any earlier one.

    The section goes before the files table (or the usage notes); the file is rewritten in place,
    so hard links to it (a download format's folder) see the new text too.
    """
    path = Path(folder) / CARD_FILE
    lines = path.read_text(encoding="utf-8").split("\n")
    if COMPARISON_HEADING in lines:  # drop the old section: up to the next heading
        start = lines.index(COMPARISON_HEADING)
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        del lines[start:end]
    at = next((i for i, line in enumerate(lines) if line in ("## Files", "## Use with slimformer")), len(lines))
    lines[at:at] = comparison_lines(rows, note, metric)
    with open(path, "w", encoding="utf-8") as f:  # in place (same inode), unlike a rename
        f.write("\n".join(lines))
    return path
