"""Do two jobs of the same spec and seed give the same result? Compared from what the API returns.

Used to check that a job interrupted and resumed ends where an uninterrupted run ends. Everything a
job computes is seeded and so must match exactly per architecture: the set of candidates, their
shared-weight scores, predicted latencies (given the same latency table), parameters and memory, the
finalists and their fine-tuned accuracies. Latency is wall-clock time on a shared machine. The
predicted latency comes from the per-op table (the same table when the jobs share a cache), scaled by
a check against whole models timed when the table is used: so only its order must be the same (a
scale cannot reorder, and the search's Pareto sorting does not see a scale). The measured latency is
not reproducible at all, and the Pareto flags are taken on it: so the flagged front must equal the
front of the job's own measurements, the front on a deterministic stand-in (parameters) must be the
same for both jobs, and where both jobs order their finalists' measured latencies the same way, the
flagged fronts themselves must be equal.
"""

from __future__ import annotations

import math
from typing import Any

from slimformer.client import SlimformerClient
from slimformer.workers.stages.report import measured_front

# Figures of a candidate that a seeded run reproduces exactly (compared with a relative tolerance
# of 1e-9, for the round trip of a float through the database and JSON).
SEEDED_FIGURES = ("proxy", "params", "memory_mb", "dev_accuracy", "test_accuracy")


def job_candidates(client: SlimformerClient, job_id: str) -> list[dict[str, Any]]:
    """Every candidate of the job as the API returns it (raw JSON documents), page by page."""
    return [c.raw for c in client.iter_candidates(job_id, page_size=100)]


def duplicates(candidates: list[dict[str, Any]]) -> list[str]:
    """Arch hashes that occur more than once among a job's candidates."""
    seen: dict[str, int] = {}
    for c in candidates:
        seen[c["arch_hash"]] = seen.get(c["arch_hash"], 0) + 1
    return sorted(h for h, n in seen.items() if n > 1)


def _front(cands: list[dict[str, Any]], latency: str) -> set[str]:
    return set(measured_front([{"hash": c["arch_hash"], "dev_accuracy": c["dev_accuracy"], "latency_ms": c[latency]}
                               for c in cands]))


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def front_differences(resumed: list[dict[str, Any]], reference: list[dict[str, Any]]) -> list[str]:
    """How two jobs' results differ (empty: the same front). Arguments: `job_candidates` of each job."""
    problems = [f"{name}: arch {h} listed more than once" for name, cands in (("resumed", resumed),
                                                                              ("reference", reference))
                for h in duplicates(cands)]
    mine = {c["arch_hash"]: c for c in resumed}
    theirs = {c["arch_hash"]: c for c in reference}
    if set(mine) != set(theirs):
        problems.append(f"candidates differ: only resumed {sorted(set(mine) - set(theirs))}, "
                        f"only reference {sorted(set(theirs) - set(mine))}")
    for h in sorted(set(mine) & set(theirs)):
        for field in ("state", *SEEDED_FIGURES):
            if not _same(mine[h][field], theirs[h][field]):
                problems.append(f"arch {h} {field}: resumed {mine[h][field]!r}, reference {theirs[h][field]!r}")
    common = set(mine) & set(theirs)
    by_prediction = [sorted(common, key=lambda h, c=c: (c[h]["predicted_latency_ms"], h)) for c in (mine, theirs)]
    if by_prediction[0] != by_prediction[1]:
        problems.append(f"predicted latencies order the candidates differently: resumed {by_prediction[0]}, "
                        f"reference {by_prediction[1]}")
    final = {name: [c for c in cands if c["state"] == "exported"] for name, cands in (("resumed", resumed),
                                                                                       ("reference", reference))}
    if {c["arch_hash"] for c in final["resumed"]} != {c["arch_hash"] for c in final["reference"]}:
        problems.append(f"finalists differ: resumed {sorted(c['arch_hash'] for c in final['resumed'])}, "
                        f"reference {sorted(c['arch_hash'] for c in final['reference'])}")
    flagged = {name: {c["arch_hash"] for c in cands if c["pareto"]} for name, cands in final.items()}
    for name, cands in final.items():
        if flagged[name] != _front(cands, "measured_latency_ms"):
            problems.append(f"{name}: flagged front {sorted(flagged[name])} is not the front of its measurements")
    if _front(final["resumed"], "params") != _front(final["reference"], "params"):
        problems.append("fronts on accuracy and parameters differ")
    order = [[c["arch_hash"] for c in sorted(cands, key=lambda c: c["measured_latency_ms"])]
             for cands in final.values()]
    if order[0] == order[1] and flagged["resumed"] != flagged["reference"]:
        problems.append(f"Pareto fronts differ: resumed {sorted(flagged['resumed'])}, "
                        f"reference {sorted(flagged['reference'])}")
    return problems
