"""The simple alternatives a user has without slimformer, measured on the same split.

- TF-IDF + logistic regression (scikit-learn): seconds on a CPU, often strong on long documents.
- Frozen embeddings + logistic regression: the teacher's encoder, untouched, mean-pooled, with a
  linear classifier on top; what "just use the pre-trained model as a feature extractor" gives.

Both report test accuracy and a per-example latency measured like the students' (median of
repeated single-example predictions).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from slimformer.data.types import Example


@dataclass
class BaselineResult:
    name: str
    dev_accuracy: float
    test_accuracy: float
    latency_ms: float  # one example, median of repeats
    fit_seconds: float


def _median_ms(fn, repeats: int = 30, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def _accuracy(predicted: Sequence[int], examples: Sequence[Example]) -> float:
    return sum(int(p) == e.label for p, e in zip(predicted, examples, strict=True)) / max(1, len(examples))


def tfidf_logistic_regression(train: Sequence[Example], dev: Sequence[Example], test: Sequence[Example],
                              seed: int = 0) -> BaselineResult:
    """Word 1-2-gram TF-IDF (sublinear tf) + logistic regression; C picked on dev from a small grid."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    started = time.perf_counter()
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True, max_features=200_000)
    x_train = vectorizer.fit_transform([e.text for e in train])
    x_dev = vectorizer.transform([e.text for e in dev])
    y_train = [e.label for e in train]
    best = None
    for c in (0.5, 1.0, 2.0, 4.0, 8.0):
        model = LogisticRegression(C=c, max_iter=2000, random_state=seed).fit(x_train, y_train)
        score = _accuracy(model.predict(x_dev), dev) if dev else 0.0
        if best is None or score > best[0]:
            best = (score, model)
    dev_accuracy, model = best
    fit_seconds = time.perf_counter() - started
    test_accuracy = _accuracy(model.predict(vectorizer.transform([e.text for e in test])), test)
    sample = (test or train)[0].text
    latency = _median_ms(lambda: model.predict(vectorizer.transform([sample])))
    return BaselineResult("tfidf_lr", dev_accuracy, test_accuracy, latency, fit_seconds)


# Caps that keep the job's baseline to seconds on any data set: the vocabulary and the training rows
# it is fitted on (a random sample of them beyond the cap). Past these, a linear model gains little.
MAX_FEATURES = 100_000
MAX_TRAIN_TEXTS = 50_000
# A user tuning a linear model tries a few strengths. 16 and 32 (weaker regularisation) were added when,
# on the news-topics task (1,010 long documents, many features each), unweighted dev accuracy was still
# rising at 8 (0.778, 0.786, 0.802 at 8, 16, 32).
C_GRID = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0)


@dataclass
class FittedBaseline:
    """The job's TF-IDF + logistic regression reference point (`fit_tfidf_logistic_regression`)."""

    name: str
    dev_accuracy: float
    test_accuracy: float
    latency_ms: float  # one example, median of `repeats` predictions at `threads`
    fit_seconds: float
    train_examples: int  # rows fitted on (after the cap)
    features: int
    c: float  # the regularisation picked on dev
    threads: int
    dev_predictions: list[int]
    test_predictions: list[int]
    # "balanced" where per-class weights won on dev (tried on macro-F1 jobs only), else None.
    class_weight: str | None = None
    picked_by: str = "accuracy"  # the dev metric C and the class weights were picked on


def fit_tfidf_logistic_regression(train: Sequence[Example], dev: Sequence[Example], test: Sequence[Example],
                                  seed: int = 0, threads: int = 1, repeats: int = 30,
                                  max_features: int = MAX_FEATURES,
                                  max_train: int = MAX_TRAIN_TEXTS, metric: str = "accuracy") -> FittedBaseline:
    """TF-IDF + logistic regression fitted for a job: capped, and timed at the job's thread count.

    Like `tfidf_logistic_regression` (word 1-2-grams, sublinear tf), but bounded so a huge data set
    still takes seconds, with its predictions kept so any metric can be computed on the same rows,
    and its latency measured like a student's: the median of `repeats` single-example predictions
    with the BLAS/OpenMP pools limited to `threads`.

    C is picked on dev by the job's `metric`, as the students are. On a macro-F1 job balanced class
    weights are tried too: that is what anyone fitting a linear model to imbalanced labels does, and
    a reference point must be the alternative a user would really have. On the 6-topic news task
    (bench/unseen_tasks.py; smallest class 3%) unweighted C=8 picked on accuracy scored test macro-F1
    0.61; balanced weights picked on macro-F1 scored 0.75.

    Raises:
        ValueError: no training rows, or a training split with a single class.
    """
    import random
    from itertools import product

    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    from slimformer.metrics import classification_metrics

    train = list(train)
    if not train:
        raise ValueError("no training examples")
    if len(train) > max_train:
        train = random.Random(seed).sample(train, max_train)
    started = time.perf_counter()
    with threadpool_limits(limits=threads):
        # min_df=2 drops typos and one-off names; on a few hundred rows it would drop most words.
        vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=2 if len(train) >= 1000 else 1, sublinear_tf=True,
                                     max_features=max_features)
        x_train = vectorizer.fit_transform([e.text for e in train])
        y_train = [e.label for e in train]
        x_dev = vectorizer.transform([e.text for e in dev]) if dev else None
        best = None
        weights = (None, "balanced") if metric == "macro_f1" else (None,)
        gold_dev = [e.label for e in dev]
        num_labels = max(y_train + gold_dev) + 1
        for weight, c in product(weights, C_GRID):
            model = LogisticRegression(C=c, max_iter=2000, random_state=seed, class_weight=weight).fit(x_train,
                                                                                                       y_train)
            score = classification_metrics(model.predict(x_dev), gold_dev, num_labels)[metric] if dev else 0.0
            if best is None or score > best[0]:
                best = (score, c, weight, model)
            if not dev:
                break  # nothing to pick C on: the first one
        _, c, weight, model = best
        fit_seconds = time.perf_counter() - started
        dev_predictions = [int(p) for p in model.predict(x_dev)] if dev else []
        dev_accuracy = _accuracy(dev_predictions, dev) if dev else 0.0
        test_predictions = [int(p) for p in model.predict(vectorizer.transform([e.text for e in test]))] if test else []
        sample = (list(test) or list(dev) or train)[0].text
        latency = _median_ms(lambda: model.predict(vectorizer.transform([sample])), repeats=repeats)
    test_accuracy = _accuracy(test_predictions, test)
    return FittedBaseline("tfidf_lr", dev_accuracy, test_accuracy, latency, fit_seconds, len(train),
                          len(vectorizer.vocabulary_), c, threads, dev_predictions, test_predictions, weight, metric)


def frozen_embedding_logistic_regression(encoder: Any, tokenizer: Any, train: Sequence[Example],
                                         dev: Sequence[Example], test: Sequence[Example], max_length: int,
                                         seed: int = 0) -> BaselineResult:
    """The pre-trained encoder, frozen, mean-pooled, + logistic regression (C picked on dev)."""
    import torch
    from sklearn.linear_model import LogisticRegression

    from slimformer.data.types import batch_order, encode_batch, token_lengths
    from slimformer.supernet.teacher_model import mean_pool

    encoder.eval()

    @torch.no_grad()
    def embed(examples: Sequence[Example]):
        out = torch.empty(0)
        # Batches of similar length pad less; each row is written back to its example's place.
        lengths = token_lengths(tokenizer, [ex.text for ex in examples], max_length)
        for idx in batch_order(len(examples), 64, lengths=lengths):
            batch = encode_batch(tokenizer, [examples[i].text for i in idx], max_length=max_length)
            pooled = mean_pool(encoder(**batch).last_hidden_state, batch["attention_mask"])
            if not out.numel():
                out = torch.empty(len(examples), pooled.shape[-1])
            out[idx] = pooled
        return out.numpy()

    started = time.perf_counter()
    x_train, x_dev = embed(train), embed(dev)
    best = None
    for c in (0.25, 1.0, 4.0, 16.0):
        model = LogisticRegression(C=c, max_iter=3000, random_state=seed).fit(x_train, [e.label for e in train])
        score = _accuracy(model.predict(x_dev), dev) if dev else 0.0
        if best is None or score > best[0]:
            best = (score, model)
    dev_accuracy, model = best
    fit_seconds = time.perf_counter() - started
    test_accuracy = _accuracy(model.predict(embed(test)), test)
    sample = [(test or train)[0]]
    latency = _median_ms(lambda: model.predict(embed(sample)), repeats=15)
    return BaselineResult("frozen_lr", dev_accuracy, test_accuracy, latency, fit_seconds)
