"""The teacher's training loop: early stopping on dev with the best state kept; max_length from the data."""

from __future__ import annotations

import pytest
import torch

from slimformer.data.types import Example
from slimformer.supernet.teacher import TeacherClassifier, evaluate_accuracy, load_teacher
from slimformer.supernet.teacher_train import TeacherSettings, pick_max_length, train_classifier


def test_max_length_follows_the_data(tiny_teacher_dir):
    _, tokenizer, _ = load_teacher(tiny_teacher_dir)
    short = ["the film was good"] * 50
    long = [" ".join(["the movie was really very good and the staff were nice"] * 8)] * 50
    assert pick_max_length(tokenizer, short) == 16  # 6 tokens, raised to the floor
    picked = pick_max_length(tokenizer, long)
    assert picked == 8 * -(-len(tokenizer(long[0])["input_ids"]) // 8) and picked > 64
    assert pick_max_length(tokenizer, long * 10 + [" ".join(["word"] * 2000)]) <= 256
    assert TeacherSettings(max_length=None).resolved(tokenizer, short).max_length == 16
    assert TeacherSettings(max_length=40).resolved(tokenizer, long).max_length == 40


def test_measuring_long_texts_does_not_warn_about_running_them(tiny_teacher_dir, capfd, caplog):
    # Counting a long document's tokens is not running them through the model: a user's log should
    # not say "will result in indexing errors" for a job that truncates every input.
    _, tokenizer, _ = load_teacher(tiny_teacher_dir)
    tokenizer.model_max_length = 512  # the real teacher's limit; the tiny one's is unbounded
    assert pick_max_length(tokenizer, [" ".join(["word"] * 2000)]) == 256
    assert "indexing errors" not in capfd.readouterr().err + caplog.text


def test_training_stops_when_dev_stops_improving_and_keeps_the_best_state(tiny_teacher_dir, tiny_task):
    encoder, tokenizer, _ = load_teacher(tiny_teacher_dir)
    torch.manual_seed(0)
    model = TeacherClassifier(encoder, tiny_task.num_labels)
    # Dev labels flipped: the better the model learns the task, the worse its dev accuracy gets,
    # so dev peaks early and training must stop there and hand back that early state.
    flipped = [Example(e.text, 1 - e.label) for e in tiny_task.dev]
    settings = TeacherSettings(epochs=8, patience=2, lr=2e-3, batch_size=16, max_length=32, seed=0)
    events = []
    losses, history, selected = train_classifier(model, tokenizer, tiny_task.train, flipped, settings, events.append)
    assert selected == history  # accuracy picks the state unless the job's metric is macro-F1
    assert len(losses) == len(history) < 8  # stopped early
    best = max(history)
    assert history.index(best) == len(history) - 1 - settings.patience  # the last `patience` epochs were worse
    assert evaluate_accuracy(model, tokenizer, flipped, max_length=32) == best  # the best state was restored
    assert [e["dev_accuracy"] for e in events if e["event"] == "epoch"] == history


def test_a_small_training_split_gets_more_epochs_up_to_the_floor_s_cap():
    from slimformer.supernet.teacher_train import MAX_FLOOR_EPOCHS

    base = TeacherSettings(epochs=3, patience=1, batch_size=32, min_steps=600)
    # 10,202 reviews already run 957 steps in 3 epochs: nothing changes, the cache key included.
    assert base.with_step_floor(10_202) == base
    assert base.key_dict() == TeacherSettings(epochs=3, patience=1, batch_size=32).key_dict()
    # 1,010 documents: 32 steps an epoch, so 19 epochs would be needed; capped, with patience for a noisy dev.
    small = base.with_step_floor(1_010)
    assert (small.epochs, small.patience) == (MAX_FLOOR_EPOCHS, 2)
    assert base.with_step_floor(4_000).epochs == 5  # 125 steps an epoch
    assert TeacherSettings(epochs=3, batch_size=32).with_step_floor(1_010).epochs == 3  # no floor asked for
    assert TeacherSettings(epochs=1, patience=0, min_steps=600).with_step_floor(100).patience == 0
    # The floor acts once: resolving resolved settings changes nothing.
    assert small.with_step_floor(1_010) == small


def test_a_macro_f1_job_s_teacher_stops_and_keeps_its_state_by_dev_macro_f1(tiny_teacher_dir, tiny_task,
                                                                            monkeypatch):
    from slimformer.supernet import teacher_train

    encoder, tokenizer, _ = load_teacher(tiny_teacher_dir)
    torch.manual_seed(0)
    model = TeacherClassifier(encoder, tiny_task.num_labels)
    # Dev figures scripted so that the two metrics peak at different epochs (accuracy at 2, macro-F1
    # at 3, as when a model gains a rare class at some cost to the common one); the real figures are
    # computed too, so the loop runs as it does in a job.
    scripted = iter([(0.50, 0.40), (0.90, 0.45), (0.60, 0.80), (0.55, 0.30), (0.50, 0.20), (0.4, 0.1)])
    real = teacher_train.dev_figures

    def figures(*args):
        real(*args)
        accuracy, macro_f1 = next(scripted)
        return {"accuracy": accuracy, "macro_f1": macro_f1}

    monkeypatch.setattr(teacher_train, "dev_figures", figures)
    states = []

    def snapshot(event):  # the model's weights at each epoch's end, to find the one handed back
        if event["event"] == "epoch":
            states.append({k: v.detach().clone() for k, v in model.state_dict().items()})

    settings = TeacherSettings(epochs=6, patience=2, lr=2e-3, batch_size=16, max_length=32, seed=0, select="macro_f1")
    losses, accuracies, macro_f1 = train_classifier(model, tokenizer, tiny_task.train, tiny_task.dev, settings,
                                                    snapshot)
    # By accuracy it would stop after epoch 4 and keep epoch 2; by macro-F1 it runs 5 and keeps epoch 3.
    assert accuracies == [0.50, 0.90, 0.60, 0.55, 0.50] and macro_f1 == [0.40, 0.45, 0.80, 0.30, 0.20]
    assert len(losses) == 5
    kept = model.state_dict()
    assert all(torch.equal(kept[k], states[2][k]) for k in kept)
    assert not all(torch.equal(kept[k], states[1][k]) for k in kept)


def test_the_selection_metric_keys_the_cache_only_when_it_is_not_accuracy():
    accuracy = TeacherSettings(epochs=3)
    assert "select" not in accuracy.key_dict()  # teachers cached before it existed keep their key
    assert TeacherSettings(epochs=3, select="macro_f1").key_dict()["select"] == "macro_f1"
    with pytest.raises(ValueError, match="select"):
        TeacherSettings(select="f1")
