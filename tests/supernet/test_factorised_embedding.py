"""Factorised word embeddings in the model: SVD extraction and its cache, the supernet's shared-weight
forward, exact parameter counts, vocabulary trimming, safetensors, ONNX and loading back.

Tiny random models (the tiny teacher's 382-token vocabulary, hidden <= 64), seconds on CPU.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from slimformer.search_space import count_params
from slimformer.supernet.export import WEIGHTS_FILE, export_folder
from slimformer.supernet.extract import extract
from slimformer.supernet.factorised_embedding import FactorisedEmbedding, SvdBasis
from slimformer.supernet.load import load_subnet
from slimformer.supernet.model import Supernet
from slimformer.supernet.onnx_export import check_batch
from slimformer.supernet.vocab import kept_vocab, trim_subnet, trim_tokenizer

LABELS = ["negative", "positive"]
TRAIN = ["the movie was good", "this film is really bad", "what a wonderful hotel", "the food was boring!"]
KNOWN = ["the film was good", "what a bad movie", "this hotel is really wonderful", "boring food!", ""]
MIXED = {"hidden": 48, "blocks": [["conv:3", "id", "mha:2", "ffn:128"], ["conv:7", "id", "id", "id"],
                                  ["id", "mha:4", "ffn:128", "conv:3"]]}


@pytest.fixture(scope="module")
def kept(tokenizer):
    return kept_vocab(tokenizer, TRAIN)


def make_supernet(space, seed: int = 0) -> Supernet:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return Supernet(space).eval()


def best_rank_r(e: torch.Tensor, r: int) -> torch.Tensor:
    u, s, vt = torch.linalg.svd(e.double(), full_matrices=False)
    return (u[:, :r] * s[:r]) @ vt[:r]


def test_svd_factors_are_the_best_rank_r_approximation_and_cached():
    torch.manual_seed(0)
    table = torch.randn(300, 64)
    svd = SvdBasis()
    a, b = svd.factors(table, 48, 8)
    assert a.shape == (300, 8) and b.shape == (8, 48)
    torch.testing.assert_close((a @ b).double(), best_rank_r(table[:, :48], 8), atol=1e-5, rtol=0)
    svd.factors(table, 48, 24)  # another rank at the same H: the same SVD
    assert svd.computed == 1
    svd.factors(table, 32, 8)
    assert svd.computed == 2
    table.add_(1.0)  # an optimiser step changes the table in place: the basis is recomputed
    a2, b2 = svd.factors(table, 48, 8)
    assert svd.computed == 3
    torch.testing.assert_close((a2 @ b2).double(), best_rank_r(table[:, :48], 8), atol=1e-5, rtol=0)


def test_svd_over_kept_rows_is_the_trimmed_tables_truncation():
    torch.manual_seed(1)
    table = torch.randn(300, 64)
    rows = torch.tensor(sorted(torch.randperm(300)[:120].tolist()))
    a, b = SvdBasis().factors(table, 48, 8, rows)
    assert a.shape == (300, 8)  # every row, so trimming after extraction keeps the same rows
    torch.testing.assert_close((a[rows] @ b).double(), best_rank_r(table[rows, :48], 8), atol=1e-5, rtol=0)


def test_weighted_svd_favours_the_rows_text_uses_most():
    # Rows weighted by occurrence: the heavy rows are reconstructed better than by the plain SVD,
    # and the weighted error is the least any rank-r basis gives (the SVD of diag(w) E).
    from slimformer.supernet.factorised_embedding import occurrence_weights

    torch.manual_seed(3)
    table = torch.randn(400, 64)
    counts = torch.zeros(400)
    counts[:6] = 500.0  # a few frequent tokens (fewer than the rank), many rare ones
    weights = occurrence_weights(counts)
    svd = SvdBasis()
    a_plain, b_plain = svd.factors(table, 48, 8)
    a_w, b_w = svd.factors(table, 48, 8, weights=weights)
    assert svd.computed == 2  # the weights are part of the cache key

    def err(a, b, rows):
        return float(((table[rows, :48] - a[rows] @ b) ** 2).sum())

    heavy, rare = slice(0, 6), slice(6, 400)
    assert err(a_w, b_w, heavy) < 0.5 * err(a_plain, b_plain, heavy)
    assert err(a_w, b_w, rare) > err(a_plain, b_plain, rare)  # the rare rows pay for it
    w2 = (weights**2).float()[:, None]
    weighted = float((w2 * (table[:, :48] - a_w @ b_w) ** 2).sum())
    assert weighted <= float((w2 * (table[:, :48] - a_plain @ b_plain) ** 2).sum())
    with pytest.raises(ValueError, match="svd weights: shape"):
        svd.factors(table, 48, 8, rows=torch.arange(10), weights=weights)


def test_supernet_forward_of_a_factorised_arch_is_the_extracted_students(space):
    supernet = make_supernet(space)
    arch = space.parse({**MIXED, "embedding_rank": 8})
    student = extract(supernet, arch, LABELS)
    assert isinstance(student.embeddings.word_embeddings, FactorisedEmbedding)
    batch = check_batch(student.config, 3, 11, seed=2)
    with torch.no_grad():
        supernet.set_active(arch)
        shared = supernet(**batch)["logits"]
        supernet.set_active(arch.with_rank(None))
        plain = supernet(**batch)["logits"]
        torch.testing.assert_close(student(**batch)["logits"], shared, atol=1e-5, rtol=0)
    # The scorer sees the reconstruction error: rank 8 of a 48-wide random table is far from it.
    assert (shared - plain).abs().max() > 1e-4
    full = extract(supernet, arch.with_rank(24), LABELS)  # a second rank at H=48 reuses the SVD
    assert supernet.embeddings.svd.computed == 1 and full.embeddings.word_embeddings.rank == 24


def test_parameter_counts_are_exact_with_a_rank_in_torch_and_safetensors(space, tokenizer, kept, tmp_path):
    from safetensors.torch import load_file

    supernet = make_supernet(space, 1)
    supernet.embeddings.svd_rows = torch.tensor(kept.old_ids)
    trimmed_space = space.with_(student_vocab=kept.size)
    archs = [space.parse({**MIXED, "embedding_rank": r}) for r in (8, 24)] + [space.smallest()]
    archs += [a for a in (space.sample(seed) for seed in range(12)) if a.embedding_rank is not None][:3]
    trimmed_tok = trim_tokenizer(tokenizer, kept)
    for i, arch in enumerate(archs):
        assert arch.embedding_rank is not None
        full = extract(supernet, arch, LABELS)
        assert count_params(arch, space) == full.num_params(), arch.short()
        small = trim_subnet(full, kept)
        assert count_params(arch, trimmed_space) == small.num_params(), arch.short()
        out = export_folder(small, trimmed_tok, tmp_path / f"m{i}", onnx=False)
        stored = load_file(str(Path(out["folder"]) / WEIGHTS_FILE))
        assert sum(t.numel() for t in stored.values()) == count_params(arch, trimmed_space)
        r, h = arch.embedding_rank, arch.hidden
        assert stored["embeddings.word_embeddings.lookup.weight"].shape == (kept.size, r)
        assert stored["embeddings.word_embeddings.projection"].shape == (r, h)
        assert "embeddings.word_embeddings.weight" not in stored
    # Trimmed after extraction, the lookup is the SVD truncation of the trimmed table itself.
    arch = archs[0]
    small = trim_subnet(extract(supernet, arch, LABELS), kept)
    e = supernet.embeddings.word_embeddings.detach()[torch.tensor(kept.old_ids), : arch.hidden]
    w = small.embeddings.word_embeddings
    torch.testing.assert_close((w.lookup.weight @ w.projection).double(), best_rank_r(e, 8), atol=1e-5, rtol=0)


def test_trimmed_factorised_model_exports_to_onnx_and_loads_back(space, tokenizer, kept, tmp_path):
    import onnx

    supernet = make_supernet(space, 2)
    supernet.embeddings.svd_rows = torch.tensor(kept.old_ids)
    arch = space.parse({**MIXED, "embedding_rank": 8})
    model = extract(supernet, arch, LABELS)
    with torch.no_grad():
        model.classifier.weight.mul_(20.0)  # random logits are nearly tied; these are not
    small, trimmed = trim_subnet(model, kept).eval(), trim_tokenizer(tokenizer, kept)
    out = export_folder(small, trimmed, tmp_path / "model")  # raises if ONNX differs from torch by > 1e-4
    assert out["onnx_max_abs_diff"] <= 1e-4
    folder = Path(out["folder"])
    config = json.loads((folder / "config.json").read_text())
    assert config["arch"]["embedding_rank"] == 8 and config["num_params"] == small.num_params()
    graph = onnx.load(str(folder / "model.onnx")).graph
    shapes = {tuple(init.dims) for init in graph.initializer}
    assert (kept.size, 8) in shapes and (kept.size, 48) not in shapes  # gather(A) @ B, no V x H table
    assert "factorised, rank 8" in (folder / "README.md").read_text()

    loaded, tok, _ = load_subnet(folder)
    assert isinstance(loaded.embeddings.word_embeddings, FactorisedEmbedding)
    batch = check_batch(small.config, 4, 13, seed=5)
    with torch.no_grad():
        torch.testing.assert_close(loaded(**batch)["logits"], small(**batch)["logits"], atol=0, rtol=0)
    import slimformer

    expected = slimformer.load(folder, backend="torch").logits(KNOWN)
    np.testing.assert_allclose(slimformer.load(folder, backend="onnx").logits(KNOWN), expected, atol=1e-4)
    # The trimmed student computes what the untrimmed one does on text of the kept vocabulary.
    full_in = tokenizer(KNOWN, padding=True, return_tensors="pt")
    with torch.no_grad():
        want = model(**{k: full_in[k] for k in ("input_ids", "attention_mask", "token_type_ids")})["logits"]
    np.testing.assert_allclose(expected, want.numpy(), atol=1e-4)


def test_fine_tuning_trains_both_factors(space, tokenizer, tiny_task):
    import copy

    from slimformer.supernet.finetune import FinetuneSettings, finetune_subnet

    student = extract(make_supernet(space, 3), space.parse({**MIXED, "embedding_rank": 8}), LABELS)
    before = {k: v.clone() for k, v in student.state_dict().items() if k.startswith("embeddings.word_embeddings.")}
    assert set(before) == {"embeddings.word_embeddings.lookup.weight", "embeddings.word_embeddings.projection"}
    settings = FinetuneSettings(epochs=1, lr=1e-3, batch_size=16, max_length=32, patience=0, evals_per_epoch=1,
                                kd_weight=0.0)
    finetune_subnet(student, copy.deepcopy(student), tokenizer, tiny_task.train, tiny_task.dev[:8],
                    tiny_task.dev[:2], settings)
    after = student.state_dict()
    for name, old in before.items():
        assert not torch.equal(after[name], old), name
