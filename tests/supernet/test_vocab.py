"""Vocabulary trimming: kept ids, the trimmed tokenizer, the trimmed model and its exact cost.

The tiny teacher's vocabulary (382 tokens) stands in for a real one; one test reads the real
MiniLM tokenizer (no model weights), which takes about a second.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import slimformer
from slimformer.search_space import count_params, estimate_memory
from slimformer.supernet.export import export_folder
from slimformer.supernet.extract import extract
from slimformer.supernet.model import Supernet
from slimformer.supernet.vocab import (
    KeptVocab,
    kept_vocab,
    minimal_vocab_size,
    oov_rate,
    trim_subnet,
    trim_tokenizer,
)

LABELS = ["negative", "positive"]
TRAIN = ["the movie was good", "this film is really bad", "what a wonderful hotel", "the food was boring!"]
# Words of the training text only, so the trimmed and the full pipeline must agree exactly.
KNOWN = ["the film was good", "what a bad movie", "this hotel is really wonderful", "boring food!", ""]
MIXED = {"hidden": 48, "blocks": [["conv:3", "id", "mha:2", "ffn:128"], ["conv:7", "id", "id", "id"],
                                  ["id", "mha:4", "ffn:128", "conv:3"]]}


@pytest.fixture(scope="module")
def kept(tokenizer) -> KeptVocab:
    return kept_vocab(tokenizer, TRAIN)


@pytest.fixture(scope="module")
def trimmed(tokenizer, kept):
    return trim_tokenizer(tokenizer, kept)


@pytest.fixture(scope="module")
def model(space):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        supernet = Supernet(space).eval()
    student = extract(supernet, space.parse(MIXED), labels=LABELS)
    with torch.no_grad():
        student.classifier.weight.mul_(20.0)  # random logits are nearly tied; these are not
    return student


# --- kept ids and the tokenizer ------------------------------------------------------------------


def test_kept_vocab_holds_text_tokens_specials_and_characters(tokenizer, kept):
    vocab = tokenizer.get_vocab()
    for word in ("movie", "wonderful", "boring", "!", "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "q", "##q"):
        assert kept.new_id(vocab[word]) is not None, word
    for word in ("excellent", "phone", "##ness"):  # in the teacher's vocabulary, never in the text
        assert kept.new_id(vocab[word]) is None, word
    assert list(kept.old_ids) == sorted(kept.old_ids) and kept.new_id(0) == 0  # [PAD] stays id 0
    assert kept.size < kept.teacher_size and kept.fraction == kept.size / len(tokenizer)
    assert KeptVocab.from_dict(json.loads(json.dumps(kept.to_dict()))) == kept


def test_trimmed_ids_agree_with_the_teachers_for_every_kept_token(tokenizer, kept, trimmed):
    teacher_vocab, vocab = tokenizer.get_vocab(), trimmed.get_vocab()
    assert len(vocab) == kept.size
    for token, new in vocab.items():
        assert kept.old_ids[new] == teacher_vocab[token], token
    for name in ("pad", "unk", "cls", "sep", "mask"):
        assert kept.old_ids[getattr(trimmed, f"{name}_token_id")] == getattr(tokenizer, f"{name}_token_id")
    # Text made of kept tokens encodes to the same ids, once mapped back, pairs and specials included.
    for text in KNOWN:
        assert [kept.old_ids[i] for i in trimmed(text, "a good film")["input_ids"]] == \
            tokenizer(text, "a good film")["input_ids"]


def test_dropped_tokens_fall_back_to_pieces_or_unk(tokenizer, trimmed):
    # "excellent" was dropped: with the characters kept it is spelled letter by letter ...
    assert trimmed.tokenize("excellent") == ["e", "##x", "##c", "##e", "##l", "##l", "##e", "##n", "##t"]
    # ... without them, a dropped word with no kept pieces is [UNK].
    bare = trim_tokenizer(tokenizer, kept_vocab(tokenizer, TRAIN, keep_characters=False))
    assert bare.convert_ids_to_tokens(bare("the excellent movie")["input_ids"]) == \
        ["[CLS]", "the", "[UNK]", "movie", "[SEP]"]
    assert bare.unk_token_id == 1 and len(bare) < len(trimmed)


def test_oov_rate_counts_teacher_tokens_outside_the_kept_vocabulary(tokenizer, kept):
    assert oov_rate(tokenizer, kept, KNOWN) == 0.0
    assert oov_rate(tokenizer, kept, ["the excellent movie"]) == pytest.approx(1 / 3)
    assert oov_rate(tokenizer, kept, []) == 0.0


def test_minimal_vocab_size_is_what_empty_text_keeps(tiny_teacher_dir, tokenizer, tmp_path):
    assert minimal_vocab_size(tiny_teacher_dir) == kept_vocab(tokenizer, []).size < kept_vocab(tokenizer, TRAIN).size
    assert minimal_vocab_size(tmp_path) is None  # no tokenizer.json: no trimming to count on


def test_real_minilm_tokenizer_ids_agree_for_kept_tokens():
    from slimformer.service.validation import builtin_teacher_folder

    folder = builtin_teacher_folder("minilm-l6")
    if folder is None:
        pytest.skip("the built-in MiniLM teacher is not installed")
    from transformers import AutoTokenizer

    teacher = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    texts = ["A gripping, beautifully shot thriller.", "Überraschend gut; the plot's twists work!"]
    kept = kept_vocab(teacher, texts)
    trimmed = trim_tokenizer(teacher, kept)
    assert 1900 < kept.size < 2200 and len(trimmed) == kept.size  # ~2k specials and characters
    for text in texts + ["the thriller's plot"]:
        ids = teacher(text)["input_ids"]
        if all(kept.new_id(i) is not None for i in ids):
            assert [kept.old_ids[i] for i in trimmed(text)["input_ids"]] == ids
    assert "[UNK]" not in trimmed.tokenize("unheard-of zebras")  # spelled in pieces instead


# --- the trimmed model ---------------------------------------------------------------------------


def test_trimmed_model_computes_what_the_full_one_does_on_kept_text(model, tokenizer, kept, trimmed):
    small = trim_subnet(model, kept).eval()
    assert small.config.vocab_size == kept.size and small.num_params() < model.num_params()
    full_in = tokenizer(KNOWN, padding=True, return_tensors="pt")
    small_in = trimmed(KNOWN, padding=True, return_tensors="pt")
    with torch.no_grad():
        a = model(**{k: full_in[k] for k in ("input_ids", "attention_mask", "token_type_ids")})["logits"]
        b = small(**{k: small_in[k] for k in ("input_ids", "attention_mask", "token_type_ids")})["logits"]
    assert torch.allclose(a, b, atol=1e-5)
    with pytest.raises(ValueError, match="kept ids reach"):
        trim_subnet(small, kept)


def test_trimmed_model_exports_and_serves_raw_strings(model, tokenizer, kept, trimmed, tmp_path):
    small = trim_subnet(model, kept)
    out = export_folder(small, trimmed, tmp_path / "model")  # raises if ONNX differs from torch by > 1e-4
    assert out["onnx_max_abs_diff"] <= 1e-4
    folder = Path(out["folder"])
    assert json.loads((folder / "config.json").read_text())["vocab_size"] == kept.size
    full = export_folder(model, tokenizer, tmp_path / "full")
    expected = slimformer.load(full["folder"]).logits(KNOWN)
    for backend in ("torch", "onnx"):
        np.testing.assert_allclose(slimformer.load(folder, backend=backend).logits(KNOWN), expected, atol=1e-4)
    # Plain tokenizers + onnxruntime, no slimformer and no torch, read the trimmed folder too.
    code = f"""
import sys, json, numpy as np, onnxruntime as ort
sys.modules["slimformer"] = None
from tokenizers import Tokenizer
tok = Tokenizer.from_file({str(folder / "tokenizer.json")!r})
tok.enable_padding(pad_id=0)
enc = tok.encode_batch({KNOWN!r})
feed = {{k: np.array([getattr(e, a) for e in enc], dtype=np.int64) for k, a in
        (("input_ids", "ids"), ("attention_mask", "attention_mask"), ("token_type_ids", "type_ids"))}}
sess = ort.InferenceSession({str(folder / "model.onnx")!r}, providers=["CPUExecutionProvider"])
print(json.dumps(sess.run(["logits"], feed)[0].tolist()))
assert "torch" not in sys.modules
"""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    np.testing.assert_allclose(np.array(json.loads(run.stdout)), expected, atol=1e-4)


def test_parameter_counts_are_exact_with_the_trimmed_vocabulary(space, model, kept):
    trimmed_space = space.with_(student_vocab=kept.size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        supernet = Supernet(space).eval()
    archs = [space.parse(MIXED), space.smallest(), space.largest()] + [space.sample(seed) for seed in range(3)]
    for arch in archs:
        small = trim_subnet(extract(supernet, arch), kept)
        assert count_params(arch, trimmed_space) == small.num_params(), arch.short()
        saved = (space.teacher.vocab_size - kept.size) * (arch.embedding_rank or arch.hidden)  # rows of V x r or V x H
        assert count_params(arch, space) - count_params(arch, trimmed_space) == saved
    smallest = space.smallest()
    assert estimate_memory(smallest, trimmed_space).total < estimate_memory(smallest, space).total


def test_trimmed_space_keeps_its_latency_key_and_round_trips(space, kept):
    from slimformer.search_space import SearchSpace
    from slimformer.search_space.latency import space_key

    trimmed_space = space.with_(student_vocab=kept.size)
    assert space_key(trimmed_space) == space_key(space)  # lookups cost the same in a smaller table
    assert SearchSpace.from_dict(trimmed_space.to_dict()) == trimmed_space
    assert "student_vocab" not in space.to_dict()  # untrimmed documents are as they were


def test_infeasible_budget_answer_shrinks_with_trimming(space, tiny_teacher_dir):
    from slimformer.contracts.spec import LatencyShape
    from slimformer.service.validation import smallest_costs

    full = smallest_costs(space.teacher, LatencyShape())
    trimmed = smallest_costs(space.teacher, LatencyShape(), student_vocab=minimal_vocab_size(tiny_teacher_dir))
    assert trimmed["params_m"] < full["params_m"] and trimmed["memory_mb"] < full["memory_mb"]
