"""Pareto fronts and exact hypervolume, every objective minimised.

Fronts here are small (hundreds of trials at most), so clarity wins over asymptotics: domination
is checked with one vectorised comparison per point, and hypervolume slices along the last
objective down to an exact 2-D sweep (exact in any dimension; O(n^2 log n) in 3-D).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def _as_array(points: Sequence[Sequence[float]]) -> np.ndarray:
    arr = np.asarray(points, dtype=float)
    if arr.size == 0:
        return arr.reshape(0, 0)
    if arr.ndim != 2:
        raise ValueError("points: expected a list of equal-length tuples of numbers")
    return arr


def pareto_front(points: Sequence[Sequence[float]]) -> list[int]:
    """Indices of the non-dominated points (all objectives minimised), in increasing order.

    A point is dominated when another is <= in every objective and < in at least one, so equal
    points never dominate each other: duplicates on the front are all kept. Points with a NaN
    are never on the front (and never dominate).

    Args:
        points: n tuples of d objective values.

    Returns:
        Sorted indices into `points`.

    Raises:
        ValueError: if the tuples have different lengths.
    """
    arr = _as_array(points)
    if arr.shape[0] == 0:
        return []
    valid = ~np.isnan(arr).any(axis=1)
    candidates = arr[valid]
    keep = []
    for i in np.flatnonzero(valid):
        p = arr[i]
        dominated = np.any(np.all(candidates <= p, axis=1) & np.any(candidates < p, axis=1))
        if not dominated:
            keep.append(int(i))
    return keep


def _hv2d(pts: np.ndarray, ref: np.ndarray) -> float:
    """Exact area dominated by `pts` (all strictly below `ref`) in 2-D: one sweep along x."""
    order = np.lexsort((pts[:, 1], pts[:, 0]))
    area, best_y = 0.0, ref[1]
    xs = pts[order, 0]
    ys = pts[order, 1]
    for k in range(len(xs)):
        if ys[k] < best_y:
            # The staircase step from this x to the reference x at height best_y - y.
            area += (ref[0] - xs[k]) * (best_y - ys[k])
            best_y = ys[k]
    return float(area)


def _hv(pts: np.ndarray, ref: np.ndarray) -> float:
    d = pts.shape[1]
    if len(pts) == 0:
        return 0.0
    if d == 1:
        return float(ref[0] - pts[:, 0].min())
    if d == 2:
        return _hv2d(pts, ref)
    # Slice along the last objective: between consecutive values z_i and z_{i+1} the dominated
    # region's cross-section is the (d-1)-volume of the points with z <= z_i.
    pts = pts[np.argsort(pts[:, -1], kind="stable")]
    total = 0.0
    for i in range(len(pts)):
        upper = pts[i + 1, -1] if i + 1 < len(pts) else ref[-1]
        height = upper - pts[i, -1]
        if height > 0:
            total += height * _hv(pts[: i + 1, :-1], ref[:-1])
    return float(total)


def hypervolume(points: Sequence[Sequence[float]], reference: Sequence[float]) -> float:
    """Exact volume dominated by `points` and bounded by `reference` (all objectives minimised).

    Points that are not strictly better than the reference in every objective add nothing.

    Args:
        points: n tuples of d values (d >= 1; exact in any d, fast for d <= 3 and small n).
        reference: d values, the corner of the region that counts (worse than every point of
            interest).

    Returns:
        The hypervolume (0.0 for no points).

    Raises:
        ValueError: if dimensions disagree or the reference is not finite.
    """
    ref = np.asarray(reference, dtype=float)
    if ref.ndim != 1 or not np.all(np.isfinite(ref)):
        raise ValueError(f"reference: expected a finite point, got {reference!r}")
    arr = _as_array(points)
    if arr.shape[0] == 0:
        return 0.0
    if arr.shape[1] != ref.shape[0]:
        raise ValueError(f"points have {arr.shape[1]} objectives but the reference has {ref.shape[0]}")
    arr = arr[~np.isnan(arr).any(axis=1)]
    arr = arr[np.all(arr < ref, axis=1)]
    if len(arr) == 0:
        return 0.0
    arr = arr[pareto_front(arr)]  # dominated points add no volume; fewer points, faster slicing
    arr = np.unique(arr, axis=0)
    value = _hv(arr, ref)
    return value if math.isfinite(value) else math.inf
