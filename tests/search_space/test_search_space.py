"""Arch documents, the space's validation, sampling, encoding and cost counts (torch-free parts)."""

from __future__ import annotations

import random
import subprocess
import sys

import pytest

from slimformer.errors import ArchError, SpaceError
from slimformer.search_space import Arch, Op, SearchSpace, TeacherFacts, count_flops, count_params, estimate_memory
from slimformer.search_space.space import space_for_teacher

MINILM = space_for_teacher(TeacherFacts())


def test_default_space_for_minilm_reaches_the_teacher():
    assert MINILM.hidden_sizes == (128, 192, 256, 384)
    assert MINILM.num_blocks == 3 and MINILM.layers_per_block == 2 and MINILM.slots_per_block == 4
    assert MINILM.heads == (2, 4, 6, 8, 12) and MINILM.head_size == 32  # up to the teacher's 12 heads
    assert MINILM.ffn_sizes == (256, 512, 768, 1024, 1536)
    assert MINILM.conv_kernels == (3, 5, 7) and MINILM.allow_identity


def test_json_round_trip_and_canonical_hash():
    rng = random.Random(1)
    for _ in range(50):
        arch = MINILM.sample(rng)
        again = MINILM.parse(arch.to_json())
        assert again == arch and again.hash == arch.hash


def test_hash_ignores_formatting_but_not_content():
    doc = {"hidden": 256, "blocks": [["mha:4", "ffn:512", "id", "conv:3"]] * 3}
    spaced = '{ "blocks" : [["mha:4", "ffn:512", "id", "conv:3"], ["mha:4", "ffn:512", "id", "conv:3"],' \
             ' ["mha:4", "ffn:512", "id", "conv:3"]], "hidden" : 256 }'
    assert Arch.from_dict(doc).hash == Arch.from_json(spaced).hash
    other = dict(doc, hidden=192)
    assert Arch.from_dict(other).hash != Arch.from_dict(doc).hash


@pytest.mark.parametrize(
    "doc, field",
    [
        ({"hidden": 100, "blocks": [["id"] * 4] * 3}, "hidden"),
        ({"hidden": 128, "blocks": [["id"] * 4] * 2}, "blocks"),
        ({"hidden": 128, "blocks": [["id"] * 4, ["id"] * 3, ["id"] * 4]}, "blocks[1]"),
        ({"hidden": 128, "blocks": [["id"] * 4, ["id", "mha:5", "id", "id"], ["id"] * 4]}, "blocks[1][1]"),
        ({"hidden": 128, "blocks": [["id"] * 4, ["id"] * 4, ["id", "id", "ffn:300", "id"]]}, "blocks[2][2]"),
        ({"hidden": 128, "blocks": [["id"] * 4, ["id"] * 4, ["id", "id", "id", "pool:3"]]}, "blocks[2][3]"),
        ({"hidden": 128, "blocks": [["conv:4"] + ["id"] * 3] * 3}, "blocks[0][0]"),
        ({"hidden": "128", "blocks": [["id"] * 4] * 3}, "hidden"),
        ({"hidden": 128, "blocks": [["id"] * 4] * 3, "depth": 3}, "depth"),
    ],
)
def test_validation_errors_name_the_field(doc, field):
    with pytest.raises(ArchError) as err:
        MINILM.parse(doc)
    assert str(err.value).startswith(field) or field in str(err.value)


def test_identity_can_be_forbidden():
    space = MINILM.with_(allow_identity=False)
    with pytest.raises(ArchError, match="identity"):
        space.parse({"hidden": 128, "blocks": [["id"] * 4] * 3})


def test_anchors_are_teacher_shaped_at_every_hidden_size():
    anchors = MINILM.anchors()
    largest = MINILM.largest()
    assert anchors[0] == largest and len({a.hash for a in anchors}) == len(anchors) == 2 * len(MINILM.hidden_sizes)
    full, half = anchors[: len(anchors) // 2], anchors[len(anchors) // 2 :]
    assert {a.hidden for a in full} == {a.hidden for a in half} == set(MINILM.hidden_sizes)
    assert all(a.blocks == largest.blocks for a in full)
    for a in half:
        for block in a.blocks:
            assert block[:2] == largest.blocks[0][:2] and all(op.kind == "id" for op in block[2:])
    assert all(a.blocks == largest.blocks for a in MINILM.with_(allow_identity=False).anchors())


def test_width_scaled_anchors_keep_the_teachers_head_size():
    # DynaBERT's width multiplier: heads and FFN scale with H, each head keeps the teacher's 32 dims.
    scaled = MINILM.width_scaled_anchors()
    shapes = {(a.hidden, a.depth()): {str(op) for op in a.ops() if op.kind != "id"} for a in scaled}
    sizes = {256: {"mha:8", "ffn:1024"}, 192: {"mha:6", "ffn:768"}, 128: {"mha:4", "ffn:512"}}
    assert shapes == {(h, depth): ops for h, ops in sizes.items() for depth in (12, 6)}
    assert not set(scaled) & set(MINILM.anchors())
    # The half-depth one at H256 is the teacher's every other layer at that width, as the space builds it.
    assert MINILM.layers_arch((0, 2, 4), hidden=256, heads=8, inner=1024) in scaled
    # Sizes are the nearest the space has: with the teacher's head count alone, only the FFN scales.
    only_12 = MINILM.with_(heads=(12,)).width_scaled_anchors()
    assert {frozenset(str(op) for op in a.ops() if op.kind != "id") for a in only_12 if a.hidden == 128} == {
        frozenset({"mha:12", "ffn:512"})}
    # A space without identity has no half-depth anchors to scale.
    assert all(a.depth() == 12 for a in MINILM.with_(allow_identity=False).width_scaled_anchors())
    # Nothing narrower than the teacher, nothing to scale.
    assert MINILM.with_(hidden_sizes=(384,)).width_scaled_anchors() == []


def test_seeded_sampling_is_reproducible_and_varied():
    first = [MINILM.sample(random.Random(7)) for _ in range(3)]
    assert first[0] == first[1] == first[2]
    rng = random.Random(7)
    many = {MINILM.sample(rng).hash for _ in range(200)}
    assert len(many) > 190


def test_encoding_has_fixed_length_and_is_one_hot():
    rng = random.Random(3)
    n = MINILM.encoding_size()
    for _ in range(20):
        vec = MINILM.encode(MINILM.sample(rng))
        assert len(vec) == n
        assert sum(vec) == 1 + MINILM.num_blocks * MINILM.slots_per_block + 1  # H, the slots, the embedding rank


def test_costs_grow_with_the_architecture():
    small, large = MINILM.smallest(), MINILM.largest()
    rng = random.Random(0)
    for _ in range(100):
        arch = MINILM.sample(rng)
        assert count_params(small, MINILM) <= count_params(arch, MINILM) <= count_params(large, MINILM) * 1.5
        assert count_flops(small, MINILM) <= count_flops(arch, MINILM)
        assert estimate_memory(small, MINILM).total <= estimate_memory(arch, MINILM).total
    # The largest student (H=384, 8 of 12 heads) is below the 22.7M teacher (+ 770 classifier params).
    assert 15e6 < count_params(large, MINILM) < 22.7e6


def test_memory_counts_weights_at_dtype_and_activations_at_shape():
    arch = MINILM.largest()
    fp32 = estimate_memory(arch, MINILM, dtype="float32")
    int8 = estimate_memory(arch, MINILM, dtype="int8")
    assert fp32.weights == 4 * int8.weights == 4 * count_params(arch, MINILM)
    long = estimate_memory(arch, MINILM, seq_len=256)
    assert long.activations > fp32.activations and long.weights == fp32.weights


def test_inconsistent_space_is_rejected():
    with pytest.raises(SpaceError, match="hidden_sizes"):
        SearchSpace(hidden_sizes=(512,))
    with pytest.raises(SpaceError, match="num_blocks"):
        SearchSpace(num_blocks=4)
    with pytest.raises(SpaceError, match="conv_kernels"):
        SearchSpace(conv_kernels=(2,))


def test_space_round_trips_through_its_dict():
    assert SearchSpace.from_dict(MINILM.to_dict()) == MINILM


def test_op_strings():
    assert str(Op.parse("mha:4")) == "mha:4" and Op.parse("id") == Op("id", 0)
    for bad in ("mha", "mha:x", "mha:0", "ffn:-1", 3):
        with pytest.raises(ArchError):
            Op.parse(bad)


def test_search_space_does_not_import_torch():
    code = "import sys, slimformer.search_space as s; s.count_params; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_wide_variants_are_full_width_and_new():
    """The search's extra seeds: spread-out layer subsets and slimmer full-depth models, all at full H."""
    variants = MINILM.wide_variants()
    dropped = set(MINILM.layer_dropped_archs())
    assert variants and not dropped & set(variants)
    assert all(a.hidden == MINILM.teacher.hidden_size for a in variants)
    # Spread-out subsets keep the teacher's last layer (what a first-k truncation loses).
    assert MINILM.layers_arch([0, 5]) in variants and MINILM.layers_arch([0, 2, 5]) in variants
    # Slim full-depth: every layer kept, fewer heads and a narrower FFN than the teacher's.
    slim = MINILM.layers_arch(range(6), heads=6, inner=768)
    assert slim in variants
    assert count_params(slim, MINILM) < count_params(MINILM.teacher_arch(), MINILM)
    seeds = MINILM.seed_archs()
    assert len(seeds) == len(set(seeds)) and seeds[: len(MINILM.anchors())] == MINILM.anchors()
    # The plain cuts come before the width-scaled anchors: a short search (the tiny preset) scores them first.
    cuts, scaled = MINILM.layer_dropped_archs(), MINILM.width_scaled_anchors()
    order = [max(seeds.index(a) for a in cuts), min(seeds.index(a) for a in scaled), min(map(seeds.index, variants))]
    assert order == sorted(order)
    # A space without identity cannot drop layers: only the slim full-depth seeds remain, no error.
    no_identity = MINILM.with_(allow_identity=False).wide_variants()
    assert slim in no_identity and all(op.kind != "id" for a in no_identity for b in a.blocks for op in b)


def test_reference_finalists_are_the_plain_cuts_of_the_teacher():
    """Every search hands these to finalize: the first-k truncations and every other layer, named in words."""
    named = MINILM.reference_finalists()
    assert list(named.values()) == [MINILM.truncated_arch(k) for k in range(1, 6)] + [MINILM.every_other_arch(0)]
    assert list(named)[0] == "teacher's first 1 layer" and list(named)[2] == "teacher's first 3 layers"
    assert list(named)[-1] == "teacher's every other layer (0, 2, 4)"
    assert MINILM.teacher_arch() not in named.values()  # the teacher is the reference point, not a finalist
    assert set(named.values()) <= set(MINILM.seed_archs())  # so the search has scored each of them
    # A space that cannot drop layers has none, without an error.
    assert MINILM.with_(allow_identity=False).reference_finalists() == {}


def test_teacher_layers_of_names_a_layer_subset_and_nothing_narrower():
    """A swap of a cut (the teacher keeping other layers) is recognised; any narrowing is not a swap."""
    assert MINILM.teacher_layers_of(MINILM.truncated_arch(2)) == (0, 1)
    assert MINILM.teacher_layers_of(MINILM.layers_arch([0, 5])) == (0, 5)
    assert MINILM.teacher_layers_of(MINILM.teacher_arch()) == tuple(range(6))
    assert MINILM.teacher_layers_of(MINILM.layers_arch([0, 5], hidden=192)) is None
    assert MINILM.teacher_layers_of(MINILM.layers_arch([0, 5], inner=MINILM.ffn_sizes[0])) is None
    assert MINILM.teacher_layers_of(MINILM.layers_arch([0, 5]).with_rank(64)) is None
    # An MHA kept without its FFN is not a teacher layer.
    half = MINILM.layers_arch([0, 5])
    blocks = [list(b) for b in half.blocks]
    blocks[0][1] = Op("id", 0)
    assert MINILM.teacher_layers_of(Arch(half.hidden, tuple(tuple(b) for b in blocks))) is None
