"""The teacher's own shapes inside a search space: the teacher, its plain cuts, and the search's seeds.

A mixin of `SearchSpace` (kept apart so the space file holds the choices and their validation, and
this one what is derived from the teacher's layers). It reads the space's fields (`teacher`,
`hidden_sizes`, `heads`, `ffn_sizes`, `num_blocks`, `slots_per_block`, `layers_per_block`,
`allow_identity`) and builds architectures through `validate`.
"""

from __future__ import annotations

from slimformer.errors import ArchError, SpaceError
from slimformer.search_space.arch import Arch, Op


class TeacherShapes:
    """Architectures derived from the teacher's layers; see the module docstring."""

    def anchors(self) -> list[Arch]:
        """Teacher-shaped archs at every hidden size: full depth, then half depth (if identity is allowed).

        Full depth is `largest()` narrowed to H (the teacher's MHA/FFN pattern, so its blocks start
        from the teacher's own weights); half depth keeps the first half of every block's slots and
        makes the rest identity, like a teacher with every other layer dropped. A search whose first
        trials are these has the teacher-like corner of the space on its front from the start: 60
        uniform samples of a 9^12-arch space almost never land near it.
        """
        full = self.largest().blocks[0]
        keep = (self.slots_per_block + 1) // 2
        half = tuple(full[:keep]) + tuple(Op("id", 0) for _ in range(self.slots_per_block - keep))
        shapes = [full] + ([half] if self.allow_identity and keep < self.slots_per_block else [])
        return [
            self.validate(Arch(h, tuple(shape for _ in range(self.num_blocks))))
            for shape in shapes
            for h in sorted(self.hidden_sizes, reverse=True)
        ]

    def width_scaled_anchors(self) -> list[Arch]:
        """The anchors below the teacher's H with their heads and FFN sizes scaled to it as well.

        DynaBERT's width multiplier: a narrower model keeps the teacher's head size and that share of its
        heads and neurons (MiniLM-L6 at H256: 8 heads of 32 and FFN 1024), where `anchors` keeps all 12
        heads, 16 wide at H192. At MiniLM-L6's 2-layer tier (stop 33, bench/results/tier_alternatives_k2.json)
        every other layer at H256 so scaled fine-tuned to test 0.802 and 0.809 on two seeds, at 10.3 ms
        predicted, where the job's H192 anchor with 12 heads (11.7 ms) reached 0.792 and the first 2 layers
        (12.7 ms) 0.798. Sizes are the nearest the space has; without identity, full depth only.
        """
        narrower = [a for a in self.anchors() if a.hidden < self.teacher.hidden_size]
        scaled = [self.validate(Arch(a.hidden, tuple(self._width_scaled(block, a.hidden) for block in a.blocks)))
                  for a in narrower]
        unscaled = set(narrower)  # a space with no smaller head count or FFN leaves some as they were
        return [a for a in dict.fromkeys(scaled) if a not in unscaled]

    def _width_scaled(self, shape: tuple[Op, ...], hidden: int) -> tuple[Op, ...]:
        """`shape` with MHA heads and FFN sizes scaled by hidden / the teacher's H (the nearest the space has)."""
        ratio = hidden / self.teacher.hidden_size
        heads = self._nearest(self.heads, round(self.teacher.num_heads * ratio))
        inner = self._nearest(self.ffn_sizes, round(self.teacher.intermediate_size * ratio))
        sizes = {"mha": heads, "ffn": inner}
        return tuple(Op(op.kind, sizes[op.kind]) if op.kind in sizes and sizes[op.kind] else op for op in shape)

    # --- the teacher and its layer-dropped variants, as points of the space ------------------------

    def teacher_layer_slots(self) -> list[tuple[int, int]]:
        """(block, first slot) of each teacher layer: layer i is the MHA/FFN slot pair starting there.

        Needs two slots per teacher layer (slots_per_block == 2 * layers_per_block), which the
        default space has; raises SpaceError otherwise.
        """
        if self.slots_per_block != 2 * self.layers_per_block:
            raise SpaceError("this space does not map teacher layers onto slot pairs (need 2 slots per layer)")
        return [(i // self.layers_per_block, 2 * (i % self.layers_per_block)) for i in range(self.teacher.num_layers)]

    def layers_arch(self, layers: list[int] | tuple[int, ...] | range, hidden: int | None = None,
                    heads: int | None = None, inner: int | None = None) -> Arch:
        """The teacher keeping only `layers` (0-based teacher layer indices), at hidden `hidden` (default full).

        A kept layer is its MHA (`heads`, default the teacher's count) and FFN (`inner`, default its
        inner size) in the slot pair the warm start fills from that layer; every other slot is
        identity. Raises ArchError if the result is not in this space (e.g. identity not allowed,
        or a head count missing).
        """
        t = self.teacher
        slots = self.teacher_layer_slots()
        blocks = [[Op("id", 0)] * self.slots_per_block for _ in range(self.num_blocks)]
        for layer in layers:
            if not 0 <= layer < t.num_layers:
                raise ArchError(f"layers: {layer} outside the teacher's 0..{t.num_layers - 1}")
            b, s = slots[layer]
            blocks[b][s] = Op("mha", heads or t.num_heads)
            blocks[b][s + 1] = Op("ffn", inner or t.intermediate_size)
        return self.validate(Arch(hidden or t.hidden_size, tuple(tuple(block) for block in blocks)))

    def teacher_arch(self) -> Arch:
        """The teacher itself."""
        return self.layers_arch(range(self.teacher.num_layers))

    def truncated_arch(self, k: int) -> Arch:
        """The teacher's first k layers."""
        return self.layers_arch(range(k))

    def every_other_arch(self, start: int = 0) -> Arch:
        """Every second teacher layer, from `start` (0: layers 0, 2, 4, ...)."""
        return self.layers_arch(range(start, self.teacher.num_layers, 2))

    def layer_dropped_archs(self) -> list[Arch]:
        """The teacher's first-k-layer truncations (k = 1..L-1) and its every-other-layer models.

        What a user gets by cutting the teacher without slimformer: seeding the search with them
        puts those points on the front from the start, so the search never returns less. Empty
        when the space cannot express teacher layers (see `teacher_layer_slots`).
        """
        try:
            archs = [self.truncated_arch(k) for k in range(1, self.teacher.num_layers)]
            archs += [self.every_other_arch(start) for start in (0, 1) if self.teacher.num_layers > 1]
        except (SpaceError, ArchError):
            return []
        return list(dict.fromkeys(archs))

    def teacher_layers_of(self, arch: Arch) -> tuple[int, ...] | None:
        """The teacher layers `arch` keeps, if it is the teacher keeping some of its layers, else None.

        That is: full hidden size, full word table, and each teacher slot pair either the teacher's
        own MHA and FFN or both identity. Such a model costs what the first-k cut with as many
        layers costs (a layer swap of that cut). None for anything narrower or otherwise shaped.
        """
        try:
            slots = self.teacher_layer_slots()
        except SpaceError:
            return None
        kept = tuple(i for i, (b, s) in enumerate(slots)
                     if b < len(arch.blocks) and s < len(arch.blocks[b]) and arch.blocks[b][s].kind != "id")
        try:
            return kept if kept and self.layers_arch(kept).hash == arch.hash else None
        except (SpaceError, ArchError):
            return None

    def reference_finalists(self) -> dict[str, Arch]:
        """The layer-dropped models every search hands to finalize besides its own picks.

        The first-k truncations (k = 1..L-1) and every other layer from layer 0: the cuts a user
        makes without slimformer. Fine-tuned with the finalists' recipe, they put each cut's measured
        figures on the job's front, so no band's pick is handed over where the plain cut is better
        (bench/results/quality.json, stop 15: every other layer fine-tuned to 0.819 at 17 ms while the
        band's own pick reached 0.776). Every other layer from layer 1 is left out: it scored below
        layer 0's in the same run and would cost one more fine-tune. Where two of these keep as many
        layers, the search fine-tunes the better-scored (`search.finalists.one_cut_per_depth`).
        Empty when the space cannot express teacher layers.

        Returns:
            {what the model is, in words: "teacher's first 2 layers"; its architecture}.
        """
        n = self.teacher.num_layers
        try:
            named = {f"teacher's first {k} layer{'s' if k > 1 else ''}": self.truncated_arch(k) for k in range(1, n)}
            if n > 2:
                named["teacher's every other layer (" + ", ".join(map(str, range(0, n, 2))) + ")"] = (
                    self.every_other_arch(0))
        except (SpaceError, ArchError):
            return {}
        return named

    def wide_variants(self) -> list[Arch]:
        """Full-width models the search should see early, besides truncations and every other layer.

        Two families that structured pruning (CoFi, DynaBERT) finds strong at moderate speed-ups, and
        that uniform sampling almost never draws:
        - k teacher layers spread evenly from the first to the last (k = 2..L-1): the last layer
          keeps the teacher's top representation, which a first-k truncation loses;
        - every layer kept at full H, with narrower FFNs and fewer heads (importance-ordered, so the
          kept heads and neurons are the teacher's most important ones).
        Measured on MiniLM-L6 + Rotten Tomatoes (bench/results/quality.json, stop 12): at the same
        latency, full-width layer-dropped models fine-tuned 3-5 points above narrow full-depth ones.
        Empty when the space cannot express teacher layers.
        """
        t, n = self.teacher, self.teacher.num_layers
        spread = [sorted({round(i * (n - 1) / (k - 1)) for i in range(k)}) for k in range(2, n)]
        slim = [(self._nearest(self.heads, t.num_heads // 2), self._nearest(self.ffn_sizes, t.intermediate_size // 2)),
                (t.num_heads, self._nearest(self.ffn_sizes, t.intermediate_size // 2)),
                (self._nearest(self.heads, t.num_heads // 2), self._nearest(self.ffn_sizes, t.intermediate_size // 4))]
        archs = []
        for layers in spread:
            archs.append(self._maybe_layers(layers))
        for heads, inner in slim:
            archs.append(self._maybe_layers(range(n), heads=heads, inner=inner))
        dropped = set(self.layer_dropped_archs())
        return [a for a in dict.fromkeys(archs) if a is not None and a not in dropped]

    def seed_archs(self) -> list[Arch]:
        """What a search tries first: anchors, the teacher's layer-dropped models, the width-scaled anchors,
        then `wide_variants` (a search with fewer trials than seeds tries the first ones)."""
        return list(dict.fromkeys(self.anchors() + self.layer_dropped_archs() + self.width_scaled_anchors()
                                  + self.wide_variants()))

    @staticmethod
    def _nearest(options: tuple[int, ...], want: int) -> int | None:
        return min(options, key=lambda o: (abs(o - want), o)) if options else None

    def _maybe_layers(self, layers, **sizes: int | None) -> Arch | None:
        try:
            return self.layers_arch(layers, **sizes)
        except (SpaceError, ArchError):
            return None
