"""Shared test fixtures: a tiny random BERT teacher on disk and a tiny two-class task.

Everything is offline and small so the whole suite runs on two CPU cores.
"""

from __future__ import annotations

import os

# Before transformers is imported anywhere: never reach for the hub, and no tokenizer thread pools
# fighting pytest for the two cores.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Code that falls back to the default home (~/.slimformer: teacher and latency caches, runs) must
# not write into the user's real one from a test: every test process and its children get a fresh
# home of their own. Tests that need a particular home still set SLIMFORMER_HOME themselves.
import atexit  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402

os.environ["SLIMFORMER_HOME"] = tempfile.mkdtemp(prefix="slimformer-test-home-")
atexit.register(shutil.rmtree, os.environ["SLIMFORMER_HOME"], ignore_errors=True)

import random  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

from slimformer.data.types import Example, TaskData  # noqa: E402

# One intra-op thread by default: test tensors are tiny, and on a shared 2-core machine two
# spinning OpenMP threads made a tiny training step ~50x slower than one thread (measured:
# 2 s vs 40 ms). SLIMFORMER_TEST_THREADS=2 restores two threads on an idle machine.
torch.set_num_threads(int(os.environ.get("SLIMFORMER_TEST_THREADS", "1")))

POSITIVE_WORDS = ["good", "great", "fine", "nice", "excellent", "wonderful", "lovely", "pleasant"]
NEGATIVE_WORDS = ["bad", "awful", "poor", "terrible", "horrible", "boring", "dull", "ugly"]
SUBJECTS = [
    "movie", "film", "book", "story", "show", "song", "game", "food", "meal", "place", "hotel", "room",
]
TEMPLATES = [
    "the {s} was {w}",
    "this {s} is really {w}",
    "i think the {s} was very {w}",
    "overall the {s} is {w} and the staff were {w2}",
    "my friend said the {s} was quite {w}",
    "what a {w} {s}",
]


def make_tiny_task(n: int = 120, seed: int = 0) -> TaskData:
    """A two-class sentiment task whose every word is in the tiny teacher's vocabulary.

    Args:
        n: Number of examples; split 2/3 train, 1/6 dev, 1/6 test (80/20/20 for 120).
        seed: Shuffles words, templates and order.

    Returns:
        TaskData with labels ["negative", "positive"], balanced classes.
    """
    rng = random.Random(seed)
    examples = []
    for i in range(n):
        label = i % 2
        words = POSITIVE_WORDS if label else NEGATIVE_WORDS
        text = rng.choice(TEMPLATES).format(s=rng.choice(SUBJECTS), w=rng.choice(words), w2=rng.choice(words))
        examples.append(Example(text, label))
    rng.shuffle(examples)
    n_train, n_dev = n * 2 // 3, n // 6
    return TaskData(
        name="tiny-sentiment",
        labels=["negative", "positive"],
        train=examples[:n_train],
        dev=examples[n_train : n_train + n_dev],
        test=examples[n_train + n_dev :],
        source={"kind": "synthetic", "seed": seed},
    )


@pytest.fixture(scope="session")
def tiny_teacher_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random 6-layer, hidden-64 BERT folder with a tiny WordPiece tokenizer. Treat as read-only."""
    from slimformer.supernet.tiny import make_tiny_teacher

    return make_tiny_teacher(tmp_path_factory.mktemp("tiny-teacher"))


def write_task_csv(task: TaskData, path: Path) -> Path:
    """All of `task`'s examples as a `text,label` CSV with label names (what a user would upload)."""
    import csv

    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        for split in (task.train, task.dev, task.test):
            for ex in split:
                writer.writerow([ex.text, task.labels[ex.label]])
    return path


@pytest.fixture(scope="session")
def task_csv(tmp_path_factory: pytest.TempPathFactory, tiny_task: TaskData) -> Path:
    """The tiny task as an uploadable CSV file. Treat as read-only."""
    return write_task_csv(tiny_task, tmp_path_factory.mktemp("data") / "tiny.csv")


@pytest.fixture(scope="session")
def tiny_task() -> TaskData:
    """120 synthetic sentences, two classes, split 80/20/20."""
    return make_tiny_task()


@pytest.fixture(scope="session")
def local_ray(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One local Ray of 2 CPUs for every test in this process that runs Ray tasks; its SLIMFORMER_HOME.

    Started once: Ray started again in a process after `ray.shutdown()` timed out here waiting for its
    GCS server (two of three such tests failed that way in one pytest run).
    """
    from slimformer.workers.ray_runtime import init_ray, shutdown_ray

    home = tmp_path_factory.mktemp("ray-owner-home")
    with pytest.MonkeyPatch.context() as patch:  # Ray's processes keep the environment of ray.init
        patch.setenv("SLIMFORMER_HOME", str(home))
        patch.setenv("HOME", str(home))
        init_ray(num_cpus=2)
    yield home
    shutdown_ray()
