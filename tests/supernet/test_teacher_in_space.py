"""The space contains the teacher and its layer-dropped variants, and the warm start makes them exact.

Weight inheritance permutes hidden dimensions, heads and FFN neurons by importance; a permutation
commutes with LayerNorm, so before any supernet training the largest path *is* the task teacher.
"""

from __future__ import annotations

import copy

import pytest
import torch

from slimformer.search_space import TeacherFacts
from slimformer.search_space.space import space_for_teacher
from slimformer.supernet.assemble import assemble_supernet, warm_start_state
from slimformer.supernet.extract import extract
from slimformer.supernet.init import hidden_permutation
from slimformer.supernet.teacher import TeacherClassifier, load_teacher


def test_the_minilm_space_holds_the_teacher_its_truncations_and_every_other_layer():
    space = space_for_teacher(TeacherFacts())  # MiniLM-L6: 6 layers, 12 heads, FFN 1536, H 384
    teacher = space.teacher_arch()
    assert teacher == space.largest()
    assert [str(op) for op in teacher.ops()] == ["mha:12", "ffn:1536"] * 6 and teacher.hidden == 384
    for k in range(1, 6):
        arch = space.truncated_arch(k)
        assert arch.depth() == 2 * k and space.validate(arch) is arch
    assert space.every_other_arch().depth() == 6
    assert 12 in space.heads and 1536 in space.ffn_sizes and 384 in space.hidden_sizes


@pytest.fixture(scope="module")
def task_teacher(tiny_teacher_dir):
    encoder, tokenizer, facts = load_teacher(tiny_teacher_dir)
    torch.manual_seed(0)
    model = TeacherClassifier(encoder, num_labels=3).eval()
    with torch.no_grad():  # a head with real signal, and LayerNorms away from 1/0 so a lost LN shows
        model.classifier.weight.normal_(0, 0.5)
        for layer in model.bert.encoder.layer:
            for ln in (layer.attention.output.LayerNorm, layer.output.LayerNorm):
                ln.weight.add_(torch.randn_like(ln.weight) * 0.2)
                ln.bias.add_(torch.randn_like(ln.bias) * 0.2)
    facts = TeacherFacts.from_hf_config(encoder.config, num_labels=3)
    texts = ["the movie was great", "what a boring film and a dull story", "my friend said the food was bad"]
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    return model, facts, batch


def _warm_supernet(model, facts, batch):
    space = space_for_teacher(facts)
    with torch.no_grad():
        states = model(**batch, output_hidden_states=True).hidden_states
    basis = hidden_permutation(torch.cat(states), batch["attention_mask"].repeat(len(states), 1))
    assert torch.equal(basis.sum(0), torch.ones(facts.hidden_size))  # a permutation, not a rotation
    assert not torch.equal(basis, torch.eye(facts.hidden_size))  # ... that does reorder something
    blocks = [warm_start_state(space, i, model.bert, basis) for i in range(space.num_blocks)]
    return space, assemble_supernet(space, blocks, model.classifier)


def _logits(model, batch):
    with torch.no_grad():
        return model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])["logits"]


def test_the_largest_extracted_path_reproduces_the_task_teacher(task_teacher):
    model, facts, batch = task_teacher
    space, supernet = _warm_supernet(model, facts, batch)
    student = extract(supernet, space.largest())
    expected = _logits(model, batch)
    assert (_logits(student, batch) - expected).abs().max().item() < 1e-3
    assert expected.std().item() > 0.1  # the comparison is not between two near-constant outputs


def test_every_truncation_and_every_other_layer_is_the_teacher_with_those_layers(task_teacher):
    model, facts, batch = task_teacher
    space, supernet = _warm_supernet(model, facts, batch)
    for layers in [[0], [0, 1], [0, 1, 2], [0, 1, 2, 3, 4], [0, 2, 4], [1, 3, 5]]:
        cut = copy.deepcopy(model)
        cut.bert.encoder.layer = torch.nn.ModuleList(model.bert.encoder.layer[i] for i in layers)
        student = extract(supernet, space.layers_arch(layers))
        gap = (_logits(student, batch) - _logits(cut, batch)).abs().max().item()
        assert gap < 1e-3, (layers, gap)
