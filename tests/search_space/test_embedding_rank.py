"""Factorised word embeddings as a search decision: the arch field, the space's ranks, exact costs.

Torch-free: the model side (SVD extraction, export, ONNX) is in tests/supernet/test_factorised_embedding.py.
"""

from __future__ import annotations

import random

import pytest

from slimformer.errors import ArchError, SpaceError
from slimformer.search.ctnas import mutate
from slimformer.search.study import arch_from_params, distributions, params_of
from slimformer.search_space import Arch, SearchSpace, TeacherFacts, count_params, estimate_memory
from slimformer.search_space.cost import count_flops, embedding_params
from slimformer.search_space.space import space_for_teacher

MIXED = {"hidden": 48, "blocks": [["conv:3", "id", "mha:2", "ffn:128"], ["conv:7", "id", "id", "id"],
                                  ["id", "mha:4", "ffn:128", "conv:3"]]}
# Pinned from before the field existed: an unfactorised arch's document and hash must not change.
MIXED_JSON = ('{"blocks":[["conv:3","id","mha:2","ffn:128"],["conv:7","id","id","id"],'
              '["id","mha:4","ffn:128","conv:3"]],"hidden":48}')
MIXED_HASH = "a56567d094cc"
TINY = space_for_teacher(TeacherFacts(hidden_size=64, num_layers=6, num_heads=4, intermediate_size=128,
                                      vocab_size=300, max_position=128))
MINILM = TeacherFacts(hidden_size=384, num_layers=6, num_heads=12, intermediate_size=1536, vocab_size=30522,
                      max_position=512)


def test_unfactorised_document_and_hash_are_unchanged():
    arch = Arch.from_dict(MIXED)
    assert arch.embedding_rank is None
    assert arch.to_json() == MIXED_JSON and arch.hash == MIXED_HASH
    assert "embedding_rank" not in arch.to_dict()
    assert Arch.from_dict({**MIXED, "embedding_rank": None}) == arch  # an explicit null reads the same


def test_rank_round_trips_and_changes_the_hash():
    arch = Arch.from_dict({**MIXED, "embedding_rank": 24})
    assert arch.embedding_rank == 24 and arch.to_dict()["embedding_rank"] == 24
    assert Arch.from_json(arch.to_json()) == arch
    assert arch.hash != MIXED_HASH and arch.with_rank(None).hash == MIXED_HASH
    assert arch.short() == "H48 r24 | conv:3 - mha:2 ffn:128 | conv:7 - - - | - mha:4 ffn:128 conv:3"
    assert Arch.from_dict(MIXED).short().startswith("H48 | conv:3")


@pytest.mark.parametrize("bad", [0, -8, 2.5, "32", True])
def test_bad_rank_values_are_arch_errors(bad):
    with pytest.raises(ArchError, match="embedding_rank"):
        Arch.from_dict({**MIXED, "embedding_rank": bad})


def test_space_allows_only_its_ranks_and_only_below_h():
    assert TINY.embedding_ranks == (8, 24)
    assert TINY.ranks_at(16) == (None, 8) and TINY.ranks_at(48) == (None, 8, 24)
    TINY.parse({**MIXED, "embedding_rank": 24})
    with pytest.raises(ArchError, match="not allowed; ranks are \\[8, 24\\]"):
        TINY.parse({**MIXED, "embedding_rank": 16})
    with pytest.raises(ArchError, match="must be below hidden 16"):
        TINY.parse({"hidden": 16, "blocks": MIXED["blocks"], "embedding_rank": 24})
    with pytest.raises(ArchError, match="does not factorise"):
        TINY.with_(embedding_ranks=()).parse({**MIXED, "embedding_rank": 8})
    with pytest.raises(SpaceError, match="embedding_ranks"):
        TINY.with_(embedding_ranks=(0, 8))
    assert space_for_teacher(MINILM).embedding_ranks == (32, 64, 128) == SearchSpace().embedding_ranks


def test_space_documents_without_ranks_stay_as_stored():
    old = {k: v for k, v in TINY.to_dict().items() if k != "embedding_ranks"}
    stored = SearchSpace.from_dict(old)
    assert stored.embedding_ranks == () and stored.to_dict() == old
    assert SearchSpace.from_dict(TINY.to_dict()) == TINY
    # Without ranks, sampling draws exactly what it always did; with them only the rank is added last.
    rng_a, rng_b = random.Random(3), random.Random(3)
    plain, ranked = stored.sample(rng_a), TINY.sample(rng_b)
    assert (plain.hidden, plain.blocks) == (ranked.hidden, ranked.blocks)


def test_sampling_draws_every_rank_and_the_plain_table():
    rng = random.Random(0)
    seen = {(a.hidden, a.embedding_rank) for a in (TINY.sample(rng) for _ in range(400))}
    assert seen == {(h, r) for h in TINY.hidden_sizes for r in TINY.ranks_at(h)}
    assert TINY.size() == 11 * len(TINY.slot_ops()) ** 12


def test_mutation_changes_the_rank_and_keeps_it_valid():
    rng = random.Random(1)
    arch = TINY.parse({**MIXED, "embedding_rank": 24})
    children = [mutate(arch, TINY, rng) for _ in range(300)]
    for child in children:
        TINY.validate(child)
    assert {c.embedding_rank for c in children if c.blocks == arch.blocks and c.hidden == arch.hidden} >= {None, 8}
    assert any(c.hidden == 16 and c.embedding_rank == 8 for c in children)  # 24 >= 16: the largest rank 16 takes
    assert TINY.fit_rank(24, 16) == 8 and TINY.fit_rank(24, 64) == 24 and TINY.fit_rank(8, 16) == 8


def test_optuna_params_cover_the_rank():
    assert distributions(TINY)["embedding_rank"].choices == (0, 8, 24)
    for arch in (TINY.parse(MIXED), TINY.parse({**MIXED, "embedding_rank": 8})):
        params = params_of(arch, TINY)
        assert set(params) == set(distributions(TINY)) and arch_from_params(TINY, params) == arch
    params = params_of(TINY.parse({"hidden": 16, "blocks": MIXED["blocks"]}), TINY)
    assert arch_from_params(TINY, {**params, "embedding_rank": 24}).embedding_rank == 8
    assert "embedding_rank" not in distributions(TINY.with_(embedding_ranks=()))


def test_teacher_and_layer_dropped_archs_keep_the_plain_table():
    archs = [TINY.teacher_arch(), TINY.largest(), *TINY.anchors(), *TINY.layer_dropped_archs(), *TINY.wide_variants()]
    assert archs and all(a.embedding_rank is None for a in archs)


def test_factorised_cost_formula():
    space = TINY.with_(student_vocab=200)
    arch = space.parse({**MIXED, "embedding_rank": 8})
    plain = arch.with_rank(None)
    assert count_params(plain, space) - count_params(arch, space) == 200 * 48 - (200 * 8 + 8 * 48)
    assert embedding_params(48, space, 8) == 200 * 8 + 8 * 48 + (128 + 2) * 48 + 2 * 48
    assert estimate_memory(plain, space).total - estimate_memory(arch, space).total == 4 * (200 * 40 - 8 * 48)
    assert count_flops(arch, space, seq_len=32) - count_flops(plain, space, seq_len=32) == 2 * 32 * 8 * 48


def test_smallest_uses_the_cheapest_rank():
    space = TINY.with_(student_vocab=200)
    smallest = space.smallest()
    assert smallest.hidden == 16 and smallest.embedding_rank == 8
    assert count_params(smallest, space) == min(
        count_params(Arch(16, smallest.blocks, r), space) for r in space.ranks_at(16))
    # A rank that would cost more than the plain table (tiny vocabularies) is not "smallest".
    few_rows = TINY.with_(student_vocab=10, embedding_ranks=(12,), hidden_sizes=(16, 64))
    assert few_rows.smallest().embedding_rank is None  # 10*12 + 12*16 > 10*16


def test_minilm_smallest_fits_a_1_5m_budget_with_a_16k_vocabulary():
    space = space_for_teacher(MINILM, student_vocab=16_000)
    smallest = space.smallest()
    assert smallest.embedding_rank == 32 and smallest.hidden == 128
    assert count_params(smallest, space) <= 1.5e6
    assert count_params(smallest.with_rank(None), space) > 2.0e6  # what the plain table costs: 16k x 128


def test_latency_table_prices_the_factorised_embeddings():
    from slimformer.search_space.latency import LatencySetting, LatencyTable, LatencyTableError

    table = LatencyTable(setting=LatencySetting(seq_len=32), overhead_ms=0.05)
    table.ops.update({(str(op), h): 0.1 for h in TINY.hidden_sizes for op in TINY.slot_ops() if op.kind != "id"})
    table.embeddings.update({h: 0.02 for h in TINY.hidden_sizes})
    table.head.update({h: 0.01 for h in TINY.hidden_sizes})
    plain = TINY.parse(MIXED)
    ranked = plain.with_rank(24)
    assert "embeddings r24 at H=48" in table.missing(TINY)
    with pytest.raises(LatencyTableError, match="embeddings r24 at H=48") as info:
        table.predict(ranked)
    assert info.value.entry == "embeddings r24 at H=48"
    table.factorised.update({(h, r): 0.03 + r / 1000 for h in TINY.hidden_sizes for r in TINY.ranks_at(h) if r})
    assert table.missing(TINY) == []
    assert table.predict(ranked) - table.predict(plain) == pytest.approx(0.03 + 0.024 - 0.02)
    again = LatencyTable.from_dict(table.to_dict())
    assert again.factorised == table.factorised and again.predict(ranked) == table.predict(ranked)
    # Tables written before factorised embeddings load, and name what they lack.
    old = table.to_dict()
    del old["factorised_embeddings"]
    loaded = LatencyTable.from_dict(old)
    assert loaded.missing(TINY.with_(embedding_ranks=())) == []
    gaps = [f"embeddings r{r} at H={h}" for h in TINY.hidden_sizes for r in TINY.ranks_at(h) if r]
    assert loaded.missing(TINY) == gaps
