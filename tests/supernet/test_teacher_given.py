"""The teacher as given: a folder with a sequence-classification head is the task teacher unchanged.

Its head's labels map onto the task's by name (or LABEL_i by index); its logits, reordered into the
task's label order, are the distillation target with no fine-tuning; the students' mean-pooling
head is fitted to them, so the largest path of the warm-started supernet is the teacher's encoder
and that head.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

import slimformer.supernet.teacher as teacher_mod
import slimformer.supernet.teacher_given as given_mod
from slimformer.contracts.teacher_labels import TeacherLabelsMismatch, is_given_classifier, label_order
from slimformer.data.types import encode_batch
from slimformer.errors import TeacherError
from slimformer.search_space.space import space_for_teacher
from slimformer.supernet.assemble import assemble_supernet, warm_start_state
from slimformer.supernet.extract import extract
from slimformer.supernet.init import hidden_permutation
from slimformer.supernet.teacher import TeacherSettings, fine_tune_teacher, mean_pool
from slimformer.supernet.teacher_given import GivenClassifier
from slimformer.supernet.tiny import FAMILIES, make_tiny_family_teacher

SETTINGS = TeacherSettings(max_length=32, batch_size=16)


def _config(labels: list[str] | None, n: int | None = None) -> dict:
    doc: dict = {"architectures": ["BertForSequenceClassification"], "num_labels": n or len(labels or [])}
    if labels is not None:
        doc["id2label"] = {str(i): name for i, name in enumerate(labels)}
    return doc


def test_head_labels_map_by_name_or_generic_index_and_anything_else_is_refused():
    task = ["negative", "positive"]
    assert label_order(_config(["negative", "positive"]), task) == [0, 1]
    assert label_order(_config(["POSITIVE", "Negative"]), task) == [1, 0]  # by name, whatever the case
    assert label_order(_config(["LABEL_0", "LABEL_1"]), task) == [0, 1]  # unnamed: by index
    assert label_order(_config(None, n=2), task) == [0, 1]
    assert label_order(_config(["LABEL_0", "LABEL_1"]), ["LABEL_1", "LABEL_0"]) == [0, 1]
    for labels, phrase in [(["neg", "pos"], "name the head's labels"), (["LABEL_1", "LABEL_0"], "name the head's"),
                           (["a", "b", "c"], "3 labels against 2"), (["negative", "negative"], "name the head's")]:
        with pytest.raises(TeacherLabelsMismatch, match=phrase) as err:
            label_order(_config(labels), task)
        assert str(labels) in str(err.value) and str(task) in str(err.value)
    assert is_given_classifier(_config(["a"])) and not is_given_classifier({"architectures": ["BertModel"]})
    assert not is_given_classifier({**_config(["a"]), "slimformer_head": "mean_pool"})  # our own cache entry


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    """Each family's classifier, its labels in the reverse of the task's order (the mapping must reorder)."""
    root = tmp_path_factory.mktemp("given")
    return {f: make_tiny_family_teacher(f, root / f, ["positive", "negative"]) for f in FAMILIES}


@pytest.fixture(scope="module")
def given_bert(folders, tiny_task, tmp_path_factory):
    folder = folders["bert"]
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}
    with pytest.MonkeyPatch.context() as mp:  # used as given: no fine-tuning of any kind
        mp.setattr(teacher_mod, "train_classifier", lambda *a, **k: pytest.fail("the given teacher was fine-tuned"))
        events: list[dict] = []
        cache = tmp_path_factory.mktemp("cache")
        teacher = fine_tune_teacher(folder, tiny_task, SETTINGS, cache, events.append)
    assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()} == before
    return teacher, cache, events


def test_a_bert_classifier_s_logits_are_used_unchanged(given_bert, folders, tiny_task):
    from transformers import BertForSequenceClassification

    teacher, _, events = given_bert
    assert isinstance(teacher.model, GivenClassifier)
    assert teacher.source == "given" and not teacher.fine_tuned and teacher.train_losses == []
    assert teacher.meta["fine_tuned"] is False and teacher.meta["label_order"] == [1, 0]
    assert [e["event"] for e in events] == ["evaluated"]
    own = BertForSequenceClassification.from_pretrained(folders["bert"], attn_implementation="eager").eval()
    batch = encode_batch(teacher.tokenizer, [ex.text for ex in tiny_task.dev], max_length=teacher.max_length)
    with torch.no_grad():
        expected = own(**batch).logits
        got = teacher.model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]).logits
    assert (got - expected[:, [1, 0]]).abs().max().item() < 1e-5  # the same numbers, in the task's order
    assert expected.std().item() > 1e-3
    correct = (got.argmax(-1) == torch.tensor([ex.label for ex in tiny_task.dev])).float().mean().item()
    assert teacher.dev_accuracy == pytest.approx(correct)
    assert teacher.meta["params"] == sum(p.numel() for p in own.parameters())


def test_the_figures_and_the_fitted_head_are_cached(given_bert, folders, tiny_task, monkeypatch):
    first, cache, _ = given_bert
    monkeypatch.setattr(given_mod, "fit_mean_pool_head", lambda *a, **k: pytest.fail("fitted again"))
    events: list[dict] = []
    again = fine_tune_teacher(folders["bert"], tiny_task, SETTINGS, cache, events.append)
    assert again.from_cache and [e["event"] for e in events] == ["cache_hit"]
    assert again.dev_accuracy == first.dev_accuracy and again.meta == first.meta
    assert torch.equal(again.model.classifier.weight, first.model.classifier.weight)


def test_labels_that_are_not_the_task_s_fail_the_teacher(tmp_path, tiny_task):
    folder = make_tiny_family_teacher("distilbert", tmp_path / "d", ["spam", "ham"])
    with pytest.raises(TeacherError, match=r"predicts \['spam', 'ham'\], but the task's labels are"):
        fine_tune_teacher(folder, tiny_task, SETTINGS, tmp_path / "cache")


@pytest.mark.parametrize("family", FAMILIES)
def test_the_largest_path_is_the_given_teacher_s_encoder_with_the_fitted_head(family, folders, tiny_task, tmp_path):
    teacher = fine_tune_teacher(folders[family], tiny_task, SETTINGS, tmp_path)
    fit = teacher.meta["student_head_fit"]
    assert fit["examples"] == len(tiny_task.train) and fit["r2"] > 0.9
    batch = encode_batch(teacher.tokenizer, [ex.text for ex in tiny_task.dev], max_length=teacher.max_length)
    args = (batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    with torch.no_grad():
        out = teacher.model(*args, output_hidden_states=True)
    states, mask = out.hidden_states, batch["attention_mask"]
    space = space_for_teacher(teacher.facts)
    basis = hidden_permutation(torch.cat(states), mask.repeat(len(states), 1))
    blocks = [warm_start_state(space, i, teacher.model.encoder, basis) for i in range(space.num_blocks)]
    student = extract(assemble_supernet(space, blocks, teacher.model.classifier), space.largest())
    with torch.no_grad():
        got = student(*args)["logits"]
        expected = teacher.model.classifier(mean_pool(states[-1], mask))
    assert (got - expected).abs().max().item() < 1e-3
    # The fitted head is close to the teacher's own (CLS-pooled) logits, not equal to them.
    assert (got - out.logits).abs().max().item() < 0.1 * max(1.0, out.logits.abs().max().item())
