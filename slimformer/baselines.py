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


def frozen_embedding_logistic_regression(encoder: Any, tokenizer: Any, train: Sequence[Example],
                                         dev: Sequence[Example], test: Sequence[Example], max_length: int,
                                         seed: int = 0) -> BaselineResult:
    """The pre-trained encoder, frozen, mean-pooled, + logistic regression (C picked on dev)."""
    import torch
    from sklearn.linear_model import LogisticRegression

    from slimformer.data.types import batch_order, encode_batch
    from slimformer.supernet.teacher_model import mean_pool

    encoder.eval()

    @torch.no_grad()
    def embed(examples: Sequence[Example]):
        out = []
        for idx in batch_order(len(examples), 64):
            batch = encode_batch(tokenizer, [examples[i].text for i in idx], max_length=max_length)
            hidden = encoder(**batch).last_hidden_state
            out.append(mean_pool(hidden, batch["attention_mask"]))
        return torch.cat(out).numpy()

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
