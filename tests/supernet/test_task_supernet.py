"""The task-aware stage on the tiny task: sandwich fine-tuning and shared-weight scoring."""

from __future__ import annotations

import pytest
import torch

from slimformer.search_space.space import space_for_teacher
from slimformer.supernet.assemble import assemble_supernet, warm_start_state
from slimformer.supernet.init import hidden_permutation
from slimformer.supernet.task_score import SharedWeightScorer, predict_logits
from slimformer.supernet.task_tune import (
    TaskTuneSettings,
    sample_layered,
    sandwich_paths,
    shallowest_path,
    train_task_supernet,
)
from slimformer.supernet.teacher import TeacherSettings, fine_tune_teacher, teacher_hidden_states

MAX_LENGTH = 32


@pytest.fixture(scope="module")
def tuned_teacher(tiny_teacher_dir, tiny_task, tmp_path_factory):
    settings = TeacherSettings(epochs=6, patience=0, lr=2e-3, batch_size=16, max_length=MAX_LENGTH, seed=0)
    return fine_tune_teacher(tiny_teacher_dir, tiny_task, settings, tmp_path_factory.mktemp("teachers"))


def _warm_supernet(teacher, task):
    torch.manual_seed(0)  # the ops the teacher has no weights for (convolutions) start random
    space = space_for_teacher(teacher.facts)
    batch = teacher.tokenizer([e.text for e in task.train[:32]], padding=True, return_tensors="pt")
    states = teacher_hidden_states(teacher.model, batch)
    basis = hidden_permutation(torch.cat(states), batch["attention_mask"].repeat(len(states), 1))
    blocks = [warm_start_state(space, i, teacher.model.bert, basis) for i in range(space.num_blocks)]
    return space, assemble_supernet(space, blocks, teacher.model.classifier)


def _scorer(teacher, task):
    dev_logits = predict_logits(teacher.model, teacher.tokenizer, [e.text for e in task.dev], MAX_LENGTH)
    return SharedWeightScorer(teacher.tokenizer, task.dev, dev_logits, MAX_LENGTH)


def test_sandwich_paths_are_largest_smallest_and_random_at_the_region_width(tuned_teacher):
    space = space_for_teacher(tuned_teacher.facts)
    import random

    h = space.hidden_sizes[0]
    paths = sandwich_paths(space, random.Random(0), hidden=h, random_paths=2)
    assert paths[0].blocks == space.largest().blocks and paths[1] == shallowest_path(space, h)
    assert len(paths) == 4 and {p.hidden for p in paths} == {h}
    # The smallest useful path: one teacher layer at the narrowest widths, not the layer-free arch.
    assert [str(op) for op in paths[1].ops() if op.kind != "id"] == [f"mha:{min(space.heads)}",
                                                                      f"ffn:{min(space.ffn_sizes)}"]
    rng = random.Random(1)
    layered = [sample_layered(space, rng, h) for _ in range(50)]
    for arch in layered:  # teacher layers kept or dropped as MHA/FFN pairs
        for block in arch.blocks:
            pairs = [(block[i].kind, block[i + 1].kind) for i in range(0, len(block), 2)]
            assert all(p in {("mha", "ffn"), ("id", "id")} for p in pairs) and arch.depth() >= 2
    assert len({a.hash for a in layered}) > 40


def test_sandwich_fine_tuning_lowers_the_smallest_paths_dev_loss(tuned_teacher, tiny_task, tmp_path):
    space, supernet = _warm_supernet(tuned_teacher, tiny_task)
    scorer = _scorer(tuned_teacher, tiny_task)
    smallest = shallowest_path(space, space.hidden_sizes[0])
    before = scorer.score(supernet, smallest)
    train_logits = predict_logits(tuned_teacher.model, tuned_teacher.tokenizer, [e.text for e in tiny_task.train],
                                  MAX_LENGTH)
    settings = TaskTuneSettings(steps=40, batch_size=16, lr=2e-3, max_length=MAX_LENGTH, checkpoint_every=10)
    result = train_task_supernet(supernet, tuned_teacher.tokenizer, tiny_task.train, train_logits, settings,
                                 checkpoint=tmp_path / "task.pt")
    after = scorer.score(supernet, smallest)
    assert after.kl < 0.9 * before.kl, (before, after)
    assert result.loss_end["smallest"] < result.loss_start["smallest"]
    assert (tmp_path / "task.pt").exists()  # checkpointed along the way


def test_a_resumed_run_ends_where_an_uninterrupted_one_does(tuned_teacher, tiny_task, tmp_path):
    train_logits = predict_logits(tuned_teacher.model, tuned_teacher.tokenizer, [e.text for e in tiny_task.train],
                                  MAX_LENGTH)
    settings = TaskTuneSettings(steps=8, batch_size=16, lr=2e-3, max_length=MAX_LENGTH, checkpoint_every=4)
    _, straight = _warm_supernet(tuned_teacher, tiny_task)
    train_task_supernet(straight, tuned_teacher.tokenizer, tiny_task.train, train_logits, settings)

    _, interrupted = _warm_supernet(tuned_teacher, tiny_task)

    def crash_after_five(step, total, loss):
        if step == 5:
            raise KeyboardInterrupt("killed")

    with pytest.raises(KeyboardInterrupt):
        train_task_supernet(interrupted, tuned_teacher.tokenizer, tiny_task.train, train_logits, settings,
                            checkpoint=tmp_path / "t.pt", progress=crash_after_five)
    _, resumed = _warm_supernet(tuned_teacher, tiny_task)
    result = train_task_supernet(resumed, tuned_teacher.tokenizer, tiny_task.train, train_logits, settings,
                                 checkpoint=tmp_path / "t.pt")
    assert result.resumed_from == 4
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.allclose(a, b, atol=1e-5), (name, (a - b).abs().max())


def test_the_scorer_ranks_the_teacher_shape_above_a_crippled_one(tuned_teacher, tiny_task):
    space, supernet = _warm_supernet(tuned_teacher, tiny_task)
    scorer = _scorer(tuned_teacher, tiny_task)
    good = scorer.score(supernet, space.teacher_arch())
    # Narrowest H and the randomly initialised separable convolutions in every slot: never trained.
    bad = scorer.score(supernet, space.parse({"hidden": space.hidden_sizes[0],
                                              "blocks": [["conv:7"] * space.slots_per_block] * space.num_blocks}))
    assert good.kl < 1e-4 and good.accuracy >= tuned_teacher.dev_accuracy - 1e-9  # it is the teacher
    assert bad.kl > 10 * max(good.kl, 1e-3) and good.value("error") < bad.value("error")


def test_the_scorer_measures_macro_f1_on_the_same_predictions(tuned_teacher, tiny_task, tmp_path):
    """Macro-F1 (the score on an imbalanced task: 1 - macro-F1) comes from the very predictions accuracy does,
    and a cached score from before it was measured is scored again rather than read without it."""
    import json
    import sqlite3

    from slimformer.metrics import classification_metrics
    from slimformer.search.task_evaluator import TaskAwareEvaluator

    space, supernet = _warm_supernet(tuned_teacher, tiny_task)
    scorer = _scorer(tuned_teacher, tiny_task)
    arch = space.parse({**space.teacher_arch().to_dict(), "hidden": space.hidden_sizes[1]})
    score = scorer.score(supernet, arch)
    supernet.set_active(arch)
    predicted = predict_logits(supernet, tuned_teacher.tokenizer, [e.text for e in tiny_task.dev],
                               MAX_LENGTH).argmax(-1).tolist()
    expected = classification_metrics(predicted, [e.label for e in tiny_task.dev], 2)
    assert score.accuracy == pytest.approx(expected["accuracy"])
    assert score.macro_f1 == pytest.approx(expected["macro_f1"])
    assert score.value("f1_error") == pytest.approx(1 - expected["macro_f1"])

    cache = tmp_path / "scores.sqlite"
    with TaskAwareEvaluator(space, lambda a: supernet, scorer, metric="kl", cache_path=cache, cache_tag="w"):
        pass  # creates the table
    old = {"accuracy": score.accuracy, "kl": score.kl}  # what an older version stored
    with sqlite3.connect(cache) as db:
        db.execute("INSERT INTO task_score VALUES (?, ?, ?)", ("w", arch.hash, json.dumps(old)))
    with TaskAwareEvaluator(space, lambda a: supernet, scorer, metric="kl", cache_path=cache, cache_tag="w") as kl:
        assert kl(arch) == pytest.approx(score.kl) and kl.evaluations == 0  # read from the cache
    with TaskAwareEvaluator(space, lambda a: supernet, scorer, metric="f1_error", cache_path=cache,
                            cache_tag="w") as f1:
        assert f1(arch) == pytest.approx(1 - expected["macro_f1"]) and f1.evaluations == 1  # scored again


def test_predict_logits_keeps_the_texts_order_though_it_batches_by_length(tuned_teacher, tiny_task):
    # predict_logits batches texts of similar length together; each row must still be its own text's.
    texts = [e.text for e in tiny_task.dev][:24]
    texts = texts + [texts[0] + " " + texts[1] + " " + texts[2]]  # one clearly longer text, placed last
    batched = predict_logits(tuned_teacher.model, tuned_teacher.tokenizer, texts, MAX_LENGTH, batch_size=8)
    one_by_one = torch.cat([predict_logits(tuned_teacher.model, tuned_teacher.tokenizer, [t], MAX_LENGTH)
                            for t in texts])
    assert torch.allclose(batched, one_by_one, atol=1e-4)


def test_a_short_fit_scores_an_arch_after_a_few_steps_of_its_recipe(tuned_teacher, tiny_task):
    """A shallow path fitted for a few steps of the finalists' recipe is closer to the teacher than its
    shared weights were, the supernet is left as it was, and the same call gives the same score."""
    from slimformer.supernet.finetune import FinetuneSettings
    from slimformer.supernet.short_fit import short_fit_score, short_fit_settings

    space, supernet = _warm_supernet(tuned_teacher, tiny_task)
    scorer = _scorer(tuned_teacher, tiny_task)
    arch = space.truncated_arch(1)
    before = {k: v.clone() for k, v in supernet.state_dict().items()}
    shared = scorer.score(supernet, arch)
    recipe = FinetuneSettings(lr=1e-3, batch_size=8, max_length=MAX_LENGTH, seed=0)
    fitted = short_fit_score(supernet, arch, tiny_task.labels, tuned_teacher, tiny_task.train, scorer, recipe, steps=6)
    assert fitted.kl < shared.kl
    assert all(torch.equal(before[k], v) for k, v in supernet.state_dict().items())
    again = short_fit_score(supernet, arch, tiny_task.labels, tuned_teacher, tiny_task.train, scorer, recipe, steps=6)
    assert again.kl == pytest.approx(fitted.kl, abs=1e-6)
    assert short_fit_settings(recipe, 6).max_train_examples == 48
    with pytest.raises(ValueError, match="steps"):
        short_fit_settings(recipe, 0)
