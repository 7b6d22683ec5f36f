"""Teacher hidden states on disk: computed once, read by every block's training.

Block-wise distillation needs, for block b, the teacher's hidden state entering the block and the
one leaving it. Running the teacher at every step of every block (and every few-shot region)
would cost more than training the blocks, so the states are computed once at a fixed padded
length, stored as float16 safetensors (one file per block boundary) and shared by path, which
also lets Ray tasks on other processes or nodes read them.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from slimformer.search_space import SearchSpace


@dataclass
class TeacherStates:
    """Token inputs and teacher states at each block boundary (boundary k = before block k)."""

    input_ids: torch.Tensor  # [N, L] int64
    attention_mask: torch.Tensor  # [N, L] int64
    token_type_ids: torch.Tensor  # [N, L] int64
    boundaries: list[torch.Tensor]  # num_blocks + 1 tensors of [N, L, D] float16
    num_val: int  # the last num_val rows are held out for validation losses

    @property
    def num_train(self) -> int:
        return self.input_ids.shape[0] - self.num_val

    def rows(self, idx: torch.Tensor, block: int) -> dict[str, torch.Tensor]:
        """A batch for `block`: inputs, mask and float32 teacher states in and out."""
        return {
            "input_ids": self.input_ids[idx],
            "attention_mask": self.attention_mask[idx],
            "token_type_ids": self.token_type_ids[idx],
            "teacher_in": self.boundaries[block][idx].float(),
            "teacher_out": self.boundaries[block + 1][idx].float(),
        }

    def val_indices(self) -> torch.Tensor:
        n = self.input_ids.shape[0]
        return torch.arange(n - self.num_val, n)


def compute_teacher_states(
    teacher_forward: Callable[[dict[str, torch.Tensor]], Sequence[torch.Tensor]],
    tokenizer,
    texts: Sequence[str],
    space: SearchSpace,
    out_dir: Path,
    max_length: int = 128,
    batch_size: int = 32,
    val_fraction: float = 0.1,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Run the teacher over `texts` and store its states at block boundaries in `out_dir`.

    Args:
        teacher_forward: batch (input_ids, attention_mask, token_type_ids) -> all hidden states
            (embedding output, then one per teacher layer), as Hugging Face returns them.
        texts: distillation texts; their order decides which rows are held out (the last ones).
        space: gives the block grouping (layers_per_block).
        out_dir: folder to write; written atomically (a partial run leaves no folder).

    Returns:
        `out_dir`. If it already holds a complete store, nothing is recomputed.
    """
    out_dir = Path(out_dir)
    if (out_dir / "meta.json").exists():
        return out_dir
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    step = space.layers_per_block
    cols: dict[str, list[torch.Tensor]] = {"input_ids": [], "attention_mask": [], "token_type_ids": []}
    bounds: list[list[torch.Tensor]] = [[] for _ in range(space.num_blocks + 1)]
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            enc = tokenizer(
                list(texts[start : start + batch_size]), padding="max_length", truncation=True,
                max_length=max_length, return_tensors="pt",
            )
            batch = {
                "input_ids": enc["input_ids"],
                "attention_mask": enc["attention_mask"],
                "token_type_ids": enc.get("token_type_ids", torch.zeros_like(enc["input_ids"])),
            }
            hidden = teacher_forward(batch)
            for key in cols:
                cols[key].append(batch[key])
            for k in range(space.num_blocks + 1):
                bounds[k].append(hidden[k * step].to(torch.float16))
            if progress:
                progress(min(start + batch_size, len(texts)), len(texts))
    tensors = {key: torch.cat(v) for key, v in cols.items()}
    save_file(tensors, str(tmp / "inputs.safetensors"))
    for k, parts in enumerate(bounds):
        save_file({"hidden": torch.cat(parts).contiguous()}, str(tmp / f"boundary_{k}.safetensors"))
    num_val = max(1, int(len(texts) * val_fraction))
    meta = {"n": len(texts), "num_val": num_val, "max_length": max_length, "num_blocks": space.num_blocks}
    (tmp / "meta.json").write_text(json.dumps(meta))
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(tmp, out_dir)
    return out_dir


def load_teacher_states(path: Path, blocks: Sequence[int] | None = None) -> TeacherStates:
    """Load a store written by compute_teacher_states; only the boundaries `blocks` need, if given."""
    path = Path(path)
    meta = json.loads((path / "meta.json").read_text())
    inputs = load_file(str(path / "inputs.safetensors"))
    needed = set(range(meta["num_blocks"] + 1))
    if blocks is not None:
        needed = {k for b in blocks for k in (b, b + 1)}
    empty = torch.empty(0, dtype=torch.float16)
    boundaries = [
        load_file(str(path / f"boundary_{k}.safetensors"))["hidden"] if k in needed else empty
        for k in range(meta["num_blocks"] + 1)
    ]
    return TeacherStates(
        inputs["input_ids"], inputs["attention_mask"], inputs["token_type_ids"], boundaries, meta["num_val"]
    )
