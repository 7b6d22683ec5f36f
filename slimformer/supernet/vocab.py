"""Vocabulary trimming: keep the word-embedding rows a task can use, and a tokenizer that agrees.

In MiniLM-L6 the word embeddings (30,522 x 384) hold 11.7M of 22.7M parameters, and nearly all
of the smallest student's; no architecture choice touches them. A student only ever looks up the
tokens its inputs produce, so the rows of tokens that never occur in the task's text can go.

What is kept (`kept_vocab`):
  - every token the teacher's tokenizer produces on the given texts (a job gives the task's
    training text and the distillation corpus: everything the student is trained on; dev is left
    out so that the exported model's dev figure shows the cost on unseen words);
  - the special and added tokens ([PAD], [UNK], [CLS], [SEP], [MASK], ...);
  - with `keep_characters` (the default), every single-character token of the teacher and its
    `##c` continuation form. WordPiece matches greedily longest-first, so a word whose teacher
    pieces were all kept tokenizes exactly as before, and a word whose piece was dropped falls
    back to shorter kept pieces, down to single characters, instead of becoming [UNK]. Only a
    word with a character the teacher never had becomes [UNK] (as it did for the teacher). For
    bert-base-uncased's vocabulary that costs about 2k rows.

New ids follow teacher id order (`old_ids[new] == old`), so [PAD] stays id 0. The trimmed
tokenizer is the teacher's tokenizer.json with the smaller WordPiece vocabulary and every id it
names (added tokens, the post-processor's [CLS]/[SEP]) renumbered, so `tokenizers` and
transformers read it like any other BERT tokenizer folder; the exported model needs nothing else.
"""

from __future__ import annotations

import functools
import json
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch only where a model is trimmed: the service reads `minimal_vocab_size` without it
    from slimformer.supernet.subnet import SubNet

WORD_EMBEDDINGS = "embeddings.word_embeddings.weight"
# The V x r lookup of a factorised student (supernet/factorised_embedding.py): its rows are the tokens.
FACTORISED_LOOKUP = "embeddings.word_embeddings.lookup.weight"
_BATCH = 1024


@dataclass(frozen=True)
class KeptVocab:
    """The teacher ids a trimmed student keeps, in new-id order (`old_ids[new_id] == teacher_id`)."""

    old_ids: tuple[int, ...]
    teacher_size: int

    @property
    def size(self) -> int:
        return len(self.old_ids)

    @property
    def fraction(self) -> float:
        return self.size / self.teacher_size

    def new_id(self, old_id: int) -> int | None:
        """The trimmed id of teacher id `old_id`; None if it was not kept."""
        return self._old_to_new.get(old_id)

    @property
    def _old_to_new(self) -> dict[int, int]:
        cached = self.__dict__.get("_map")
        if cached is None:
            cached = {old: new for new, old in enumerate(self.old_ids)}
            object.__setattr__(self, "_map", cached)
        return cached

    def summary(self) -> dict[str, Any]:
        return {"vocab_size": self.size, "teacher_vocab_size": self.teacher_size,
                "kept_fraction": round(self.fraction, 4)}

    def to_dict(self) -> dict[str, Any]:
        return {"old_ids": list(self.old_ids), "teacher_size": self.teacher_size}

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> KeptVocab:
        return cls(tuple(int(i) for i in doc["old_ids"]), int(doc["teacher_size"]))


def _backend(tokenizer: Any) -> Any:
    """A private copy of the fast tokenizer's `tokenizers.Tokenizer`, without truncation or padding."""
    from tokenizers import Tokenizer

    backend = getattr(tokenizer, "backend_tokenizer", tokenizer)
    copy = Tokenizer.from_str(backend.to_str())
    copy.no_truncation()
    copy.no_padding()
    return copy


def is_trimmable(tokenizer: Any) -> bool:
    """Whether the tokenizer is a WordPiece fast tokenizer (the only kind trimming rewrites)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return False
    return json.loads(backend.to_str()).get("model", {}).get("type") == "WordPiece"


def _token_ids(backend: Any, texts: Sequence[str]) -> Iterable[list[int]]:
    for i in range(0, len(texts), _BATCH):
        for enc in backend.encode_batch(list(texts[i : i + _BATCH]), add_special_tokens=False):
            yield enc.ids


def _character_ids(vocab: dict[str, int], prefix: str) -> set[int]:
    return {i for tok, i in vocab.items() if len(tok) == 1 or (tok.startswith(prefix) and len(tok) == len(prefix) + 1)}


def token_counts(tokenizer: Any, texts: Sequence[str]) -> dict[int, int]:
    """How often each teacher id occurs in `texts` (special tokens not added): the factorised
    embedding's SVD weighs each row by it (`factorised_embedding.occurrence_weights`)."""
    counts: dict[int, int] = {}
    for ids in _token_ids(_backend(tokenizer), texts):
        for i in ids:
            counts[i] = counts.get(i, 0) + 1
    return counts


def kept_vocab(tokenizer: Any, texts: Sequence[str], keep_characters: bool = True) -> KeptVocab:
    """The teacher ids to keep: those `texts` produce, the special tokens, and (optionally) characters.

    Args:
        tokenizer: the teacher's fast WordPiece tokenizer (transformers or `tokenizers`).
        texts: the text the student may see in training and selection.
        keep_characters: also keep every single-character token and its continuation form.

    Returns:
        The kept ids in teacher order.
    """
    backend = _backend(tokenizer)
    doc = json.loads(backend.to_str())
    vocab: dict[str, int] = backend.get_vocab(with_added_tokens=True)
    keep = {tok["id"] for tok in doc.get("added_tokens", [])}
    keep |= {vocab[t] for t in (doc["model"].get("unk_token"),) if t in vocab}
    if keep_characters:
        keep |= _character_ids(doc["model"]["vocab"], doc["model"].get("continuing_subword_prefix", "##"))
    for ids in _token_ids(backend, texts):
        keep.update(ids)
    return KeptVocab(tuple(sorted(keep)), backend.get_vocab_size(with_added_tokens=True))


def minimal_vocab_size(teacher_folder: Path, keep_characters: bool = True) -> int | None:
    """The fewest rows any trimmed vocabulary of this teacher keeps (specials, plus characters).

    What the service counts a job's cheapest student with before the task's text is tokenized:
    a lower bound, so no budget a trimmed student could meet is refused. None when the folder
    has no WordPiece tokenizer.json (no trimming then). Cached per file version: reading a 30k
    vocabulary takes a few hundred milliseconds, and every job submission asks.
    """
    path = Path(teacher_folder) / "tokenizer.json"
    try:
        stamp = path.stat().st_mtime_ns
    except OSError:
        return None
    return _minimal_vocab_size(str(path), stamp, keep_characters)


@functools.lru_cache(maxsize=64)
def _minimal_vocab_size(path: str, stamp: int, keep_characters: bool) -> int | None:
    from tokenizers import Tokenizer

    try:
        backend = Tokenizer.from_file(path)
    except Exception:  # unreadable: the job falls back to the whole vocabulary
        return None
    doc = json.loads(backend.to_str())
    if doc.get("model", {}).get("type") != "WordPiece":
        return None
    return kept_vocab(backend, [], keep_characters).size


def oov_rate(tokenizer: Any, kept: KeptVocab, texts: Sequence[str]) -> float:
    """Share of the teacher's tokens on `texts` (specials left out) that the kept vocabulary lacks.

    Those are the tokens the trimmed tokenizer spells with shorter pieces (or [UNK]); 0.0 for no tokens.
    """
    backend = _backend(tokenizer)
    total = missing = 0
    for ids in _token_ids(backend, texts):
        total += len(ids)
        missing += sum(kept.new_id(i) is None for i in ids)
    return missing / total if total else 0.0


# --- the trimmed tokenizer ---------------------------------------------------------------------


def _renumber_processor(proc: dict[str, Any] | None, new_ids: dict[str, int]) -> None:
    """Rewrite the special-token ids a post-processor holds (Template, Bert/Roberta, Sequence)."""
    if not proc:
        return
    kind = proc.get("type")
    if kind == "TemplateProcessing":
        for special in proc.get("special_tokens", {}).values():
            special["ids"] = [new_ids[t] for t in special["tokens"]]
    elif kind in ("BertProcessing", "RobertaProcessing"):
        for key in ("sep", "cls"):
            proc[key] = [proc[key][0], new_ids[proc[key][0]]]
    elif kind == "Sequence":
        for inner in proc.get("processors", []):
            _renumber_processor(inner, new_ids)


def trimmed_tokenizer_json(tokenizer: Any, kept: KeptVocab) -> str:
    """The teacher's tokenizer.json with only the kept vocabulary, every id renumbered."""
    doc = json.loads(_backend(tokenizer).to_str())
    old_vocab: dict[str, int] = doc["model"]["vocab"]
    by_old = {i: t for t, i in old_vocab.items()}
    for tok in doc.get("added_tokens", []):
        by_old.setdefault(tok["id"], tok["content"])
    new_ids = {by_old[old]: new for new, old in enumerate(kept.old_ids)}
    doc["model"]["vocab"] = new_ids
    for tok in doc.get("added_tokens", []):
        tok["id"] = new_ids[tok["content"]]
    _renumber_processor(doc.get("post_processor"), new_ids)
    doc["truncation"] = doc["padding"] = None
    return json.dumps(doc, ensure_ascii=False)


def trim_tokenizer(tokenizer: Any, kept: KeptVocab) -> Any:
    """A transformers tokenizer for the kept vocabulary, of the teacher's class and settings.

    Built as a folder (the teacher's saved files with tokenizer.json, vocab.txt and the added
    tokens' ids rewritten) and read back with AutoTokenizer, so what `save_pretrained` later
    writes is the same thing a user's `AutoTokenizer` or `tokenizers.Tokenizer` reads.
    """
    from transformers import AutoTokenizer

    text = trimmed_tokenizer_json(tokenizer, kept)
    new_ids: dict[str, int] = json.loads(text)["model"]["vocab"]
    old_to_token = {kept.old_ids[i]: t for t, i in new_ids.items()}
    with tempfile.TemporaryDirectory(prefix="slimformer-vocab-") as tmp:
        folder = Path(tmp)
        tokenizer.save_pretrained(str(folder))
        (folder / "tokenizer.json").write_text(text, encoding="utf-8")
        tokens = sorted(new_ids, key=new_ids.__getitem__)
        (folder / "vocab.txt").write_text("\n".join(tokens) + "\n", encoding="utf-8")
        config_file = folder / "tokenizer_config.json"
        if config_file.is_file():
            config = json.loads(config_file.read_text(encoding="utf-8"))
            decoder = config.get("added_tokens_decoder") or {}
            config["added_tokens_decoder"] = {
                str(new_ids[old_to_token.get(int(k), v.get("content"))]): v for k, v in decoder.items()
            }
            config_file.write_text(json.dumps(config, indent=2), encoding="utf-8")
        trimmed = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    trimmed.model_max_length = tokenizer.model_max_length
    return trimmed


# --- the trimmed model -------------------------------------------------------------------------


def trim_subnet(model: SubNet, kept: KeptVocab) -> SubNet:
    """A copy of `model` whose word embeddings hold only the kept rows, in new-id order.

    For a factorised student the rows are those of the V x r lookup; the r x H projection is shared.

    Raises:
        ValueError: the model embeds fewer tokens than the kept ids name, or its pad token was
            not kept.
    """
    import torch

    from slimformer.supernet.subnet import SubNet

    cfg = model.config
    if kept.old_ids[-1] >= cfg.vocab_size:  # a teacher may embed more rows than its tokenizer names, never fewer
        raise ValueError(f"model embeds {cfg.vocab_size} tokens; the kept ids reach {kept.old_ids[-1]}")
    pad = kept.new_id(cfg.pad_token_id)
    if pad is None:
        raise ValueError(f"pad token id {cfg.pad_token_id} is not in the kept vocabulary")
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    rows = FACTORISED_LOOKUP if FACTORISED_LOOKUP in state else WORD_EMBEDDINGS
    state[rows] = state[rows][torch.tensor(kept.old_ids)].contiguous()
    trimmed = SubNet(replace(cfg, vocab_size=kept.size, pad_token_id=pad))
    trimmed.load_state_dict(state, strict=True)
    return trimmed.train(model.training)
