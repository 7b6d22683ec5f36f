"""Encoder families: each one's weights, renamed into the BERT layout, compute the same encoder; what
cannot be mapped (relative positions, other activations, ELECTRA's factorised embeddings) is refused
with a message that says why, by the folder check the CLI, the worker and the upload share."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from slimformer.contracts.encoder_families import SUPPORTED_MODEL_TYPES, encoder_problem
from slimformer.errors import TeacherError
from slimformer.supernet.teacher_folder import check_teacher_folder, load_bert, load_tokenizer
from slimformer.supernet.tiny import FAMILIES, make_tiny_family_teacher

TEXTS = ["the movie was great", "what a boring film and a dull story", "bad"]  # padded: lengths differ


@pytest.fixture(scope="module")
def family_dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("families")
    return {f: make_tiny_family_teacher(f, root / f, ["negative", "positive"]) for f in FAMILIES}


def test_the_supported_families_are_the_four_encoders():
    assert SUPPORTED_MODEL_TYPES == FAMILIES == ("bert", "roberta", "distilbert", "electra")


@pytest.mark.parametrize("family", FAMILIES)
def test_renamed_weights_compute_the_family_s_own_encoder(family, family_dirs):
    from transformers import AutoModel

    folder = family_dirs[family]
    check_teacher_folder(folder)
    batch = load_tokenizer(folder)(TEXTS, padding=True, return_tensors="pt")
    own = AutoModel.from_pretrained(folder, attn_implementation="eager").eval()
    inputs = {k: v for k, v in batch.items() if family != "distilbert" or k != "token_type_ids"}
    bert = load_bert(folder, add_pooling_layer=False)
    assert type(bert).__name__ == "BertModel"
    with torch.no_grad():
        expected = own(**inputs, output_hidden_states=True).hidden_states
        got = bert(**batch, output_hidden_states=True).hidden_states
    real = batch["attention_mask"].bool()  # RoBERTa's padding rows differ by design; they are masked
    assert len(got) == len(expected) == 3
    for e, g in zip(expected, got, strict=True):
        assert (e - g)[real].abs().max().item() < 1e-5
    assert expected[-1][real].std().item() > 0.5  # not two near-constant outputs


@pytest.mark.parametrize(("family", "change", "phrase"), [
    ("bert", {"position_embedding_type": "relative_key"}, "relative position embeddings"),
    ("roberta", {"position_embedding_type": "relative_key_query"}, "relative position embeddings"),
    ("bert", {"hidden_act": "relu"}, "hidden_act 'relu' is not supported"),
    ("electra", {"hidden_act": "gelu_new"}, "hidden_act 'gelu_new' is not supported"),
    ("distilbert", {"activation": "relu"}, "activation 'relu' is not supported"),
    ("electra", {"embedding_size": 16}, "embedding_size 16 != hidden_size 32"),
    ("bert", {"model_type": "gpt2"}, "model_type 'gpt2' is not supported"),
])
def test_what_cannot_be_mapped_is_refused_with_the_reason(family, change, phrase, family_dirs, tmp_path):
    folder = tmp_path / family
    folder.mkdir()
    for file in family_dirs[family].iterdir():
        (folder / file.name).write_bytes(file.read_bytes())
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **change}))
    with pytest.raises(TeacherError) as err:
        check_teacher_folder(folder)
    assert phrase in str(err.value) and str(folder) in str(err.value)
    assert encoder_problem({**config, **change}) in str(err.value)  # the service's words are the same
    assert encoder_problem(config) is None


def test_an_encoder_without_a_head_of_another_family_is_fine_tuned_in_the_bert_layout(
    family_dirs, tiny_task, tmp_path
):
    from transformers import AutoModel

    from slimformer.supernet.teacher import TeacherClassifier, TeacherSettings, fine_tune_teacher

    folder = tmp_path / "distilbert-encoder"
    AutoModel.from_pretrained(family_dirs["distilbert"]).save_pretrained(folder)  # DistilBertModel, no head
    for file in family_dirs["distilbert"].glob("*"):
        if file.name.startswith(("tokenizer", "vocab", "special")):
            (folder / file.name).write_bytes(file.read_bytes())
    settings = TeacherSettings(epochs=1, max_length=32, batch_size=16)
    tuned = fine_tune_teacher(folder, tiny_task, settings, tmp_path / "cache")
    assert isinstance(tuned.model, TeacherClassifier) and tuned.fine_tuned and tuned.source == "fine_tuned"
    assert type(tuned.model.encoder).__name__ == "BertModel" and tuned.facts.type_vocab_size == 1
    again = fine_tune_teacher(folder, tiny_task, settings, tmp_path / "cache")
    assert again.from_cache and again.dev_accuracy == tuned.dev_accuracy
