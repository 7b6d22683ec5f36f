"""Pooled-state distillation: its targets are the teacher's, its projection starts exact, and it trains.

On the tiny teacher: the largest warm-started path, mapped through the supernet's last output bridge,
gives the teacher's pooled states exactly (so the loss starts at zero where the student is the
teacher); and a one-layer cut fine-tuned with the loss ends nearer the teacher's pooled states than
the same fine-tune without it.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from slimformer.search_space import TeacherFacts
from slimformer.search_space.space import space_for_teacher
from slimformer.supernet.assemble import assemble_supernet, warm_start_state
from slimformer.supernet.extract import extract
from slimformer.supernet.finetune import FinetuneSettings, finetune_subnet, subnet_bridges
from slimformer.supernet.functional import mean_pool
from slimformer.supernet.init import hidden_permutation
from slimformer.supernet.pooled_kd import pooled_loss, pooled_projection, teacher_outputs
from slimformer.supernet.task_score import predict_logits

MAX_LENGTH = 32


@pytest.fixture(scope="module")
def warm(teacher, tiny_task):
    """(space, supernet) warm-started from the task teacher: its teacher-layer paths are the teacher's layers."""
    model, tokenizer = teacher.model, teacher.tokenizer
    facts = TeacherFacts.from_hf_config(model.bert.config, num_labels=len(tiny_task.labels))
    batch = tokenizer([e.text for e in tiny_task.train[:16]], padding=True, return_tensors="pt")
    with torch.no_grad():
        states = model(**batch, output_hidden_states=True).hidden_states
    basis = hidden_permutation(torch.cat(states), batch["attention_mask"].repeat(len(states), 1))
    space = space_for_teacher(facts)
    blocks = [warm_start_state(space, i, model.bert, basis) for i in range(space.num_blocks)]
    return space, assemble_supernet(space, blocks, model.classifier)


def test_teacher_outputs_are_its_logits_and_its_mean_pooled_last_state(teacher, tiny_task):
    texts = [e.text for e in tiny_task.dev[:12]]
    logits, pooled = teacher_outputs(teacher.model, teacher.tokenizer, texts, MAX_LENGTH, batch_size=5)
    assert torch.allclose(logits, predict_logits(teacher.model, teacher.tokenizer, texts, MAX_LENGTH), atol=1e-5)
    batch = teacher.tokenizer(texts[:1], truncation=True, max_length=MAX_LENGTH, return_tensors="pt")
    with torch.no_grad():
        last = teacher.model(**batch, output_hidden_states=True).hidden_states[-1]
    assert torch.allclose(pooled[0], mean_pool(last, batch["attention_mask"])[0], atol=1e-5)
    assert pooled.shape == (12, teacher.model.classifier.in_features)


def test_the_largest_path_through_the_last_bridge_gives_the_teachers_pooled_states(teacher, tiny_task, warm):
    space, supernet = warm
    student = extract(supernet, space.largest(), tiny_task.labels)
    texts = [e.text for e in tiny_task.dev[:8]]
    _, target = teacher_outputs(teacher.model, teacher.tokenizer, texts, MAX_LENGTH)
    batch = teacher.tokenizer(texts, padding=True, truncation=True, max_length=MAX_LENGTH, return_tensors="pt")
    projection = pooled_projection(space.max_hidden, target.shape[-1], subnet_bridges(supernet, space.max_hidden)[-1])
    with torch.no_grad():
        out = student(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"], output_hidden_states=True)
        exact = pooled_loss(out, batch["attention_mask"], projection, target).item()
        unmapped = pooled_loss(out, batch["attention_mask"], torch.nn.Identity(), target).item()
    assert exact < 1e-6
    assert unmapped > 0.1  # the student's basis is a permutation of the teacher's: the bridge is needed


def test_a_cut_distilled_on_pooled_states_ends_nearer_the_teachers_than_without(teacher, tiny_task, warm):
    space, supernet = warm
    arch = space.layers_arch([0])
    bridges = subnet_bridges(supernet, arch.hidden)
    train = tiny_task.train
    logits, pooled = teacher_outputs(teacher.model, teacher.tokenizer, [e.text for e in train], MAX_LENGTH)
    base = FinetuneSettings(epochs=3, lr=1e-3, batch_size=16, max_length=MAX_LENGTH, patience=0, seed=0)
    batch = teacher.tokenizer([e.text for e in train], padding=True, truncation=True, max_length=MAX_LENGTH,
                              return_tensors="pt")
    inputs = (batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])

    def distance(weight: float) -> float:
        student = extract(supernet, arch, tiny_task.labels)
        finetune_subnet(student, teacher.model, teacher.tokenizer, train, [], [], replace(base, pooled_weight=weight),
                        bridges=bridges, teacher_logits=logits, teacher_pooled=pooled)
        projection = pooled_projection(arch.hidden, pooled.shape[-1], bridges[-1])
        with torch.no_grad():
            out = student(*inputs, output_hidden_states=True)
            return pooled_loss(out, batch["attention_mask"], projection, pooled).item()

    untrained = extract(supernet, arch, tiny_task.labels)
    with torch.no_grad():
        out = untrained(*inputs, output_hidden_states=True)
        start = pooled_loss(out, batch["attention_mask"], pooled_projection(arch.hidden, pooled.shape[-1], bridges[-1]),
                            pooled).item()
    with_loss, without = distance(1.0), distance(0.0)
    assert with_loss < without and with_loss < start
    assert start > 0.01  # a one-layer cut starts away from the teacher's last state
