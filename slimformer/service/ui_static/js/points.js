// What the chart plots for a runtime: each candidate's figures, and for a finalist one point per
// exported variant (fp32 and int8 ONNX, metrics.variants: slimformer/workers/variants.py), each with
// its own measured latency and scores. Pure functions of the API's data, no drawing.

export const RUNTIMES = [
  { id: "torch", label: "torch", key: "latency_torch_ms" },
  { id: "onnxruntime", label: "onnxruntime", key: "latency_onnx_ms" },
  { id: "int8", label: "int8 (onnxruntime)", key: "latency_onnx_int8_ms" },
];

// The variants a runtime shows: torch runs the fp32 model only; onnxruntime runs both ONNX files,
// so both are points (as the report stage's front of an onnxruntime job has them); the int8
// switch shows the quantized models alone.
const SHOWN = { torch: ["fp32"], onnxruntime: ["fp32", "int8"], int8: ["int8"] };

// A figure of a candidate or reference: top-level field first, then its `metrics`.
export function valueOf(item, key) {
  const value = typeof item[key] === "number" ? item[key] : item.metrics?.[key];
  return typeof value === "number" && Number.isFinite(value) ? value : null;
}

// A candidate's latency on a runtime: metrics.latency_<runtime>_ms, or the headline
// measured_latency_ms when the job itself measured on that runtime.
export function candidateLatency(candidate, runtime, jobRuntime) {
  const own = valueOf(candidate, runtime.key);
  if (own != null) return own;
  return runtime.id === jobRuntime ? valueOf(candidate, "measured_latency_ms") : null;
}

// A reference's latency: its figure for the runtime if it has one, else its single `latency_ms`
// (a TF-IDF baseline has no torch or onnxruntime; the teacher may be timed on one runtime only).
export function referenceLatency(ref, runtime) {
  return valueOf(ref, runtime.key) ?? valueOf(ref, "latency_ms");
}

const variantsOf = (c) => {
  const v = c.metrics?.variants;
  return v && typeof v === "object" ? v : null;
};

// One variant's figures, readable with valueOf. fp32 is what the candidate's own figures describe
// (finalize takes them from the exported fp32 model), so its variant figures only add to them.
// int8 is another model: none of fp32's scores may stand in for a score it lacks.
function variantFigures(c, name, variant) {
  if (name === "fp32") return { ...c, metrics: { ...c.metrics, ...variant } };
  return { ...variant, params: variant.params ?? c.params };
}

// A variant's latency on a runtime. fp32's own `latency_ms` is the job runtime's (torch or
// onnxruntime), so the candidate's per-runtime figures say what it takes elsewhere; int8 is only
// ever an onnxruntime model.
function variantLatency(c, name, variant, runtime, jobRuntime) {
  if (name === "int8") return valueOf(variant, "latency_ms") ?? valueOf(c, "latency_onnx_int8_ms");
  return candidateLatency(c, runtime, jobRuntime);
}

// The latencies a point's tooltip lists, as [runtime label, ms].
export function pointLatencies(point, jobRuntime) {
  const runtimes = point.variant === "int8" ? RUNTIMES.filter((r) => r.id === "int8")
    : RUNTIMES.filter((r) => !point.variant || r.id !== "int8");
  return runtimes.map((r) => [r.label, point.variant === "int8" ? point.x : candidateLatency(point.candidate, r, jobRuntime)]);
}

// The points of one candidate on a runtime, without the metric (see `plotted`).
// Each: {id, candidate, variant ("fp32", "int8" or null: no variant figures), figures, x, withinBudget, recommended}.
export function candidatePoints(c, runtime, jobRuntime) {
  const variants = variantsOf(c);
  if (!variants) {
    // Scored only, or from before variants were measured: the candidate's figures, but no int8
    // point, as nothing says how the quantized model scores.
    if (runtime.id === "int8") return [];
    return [{ id: c.id, candidate: c, variant: null, figures: c, x: candidateLatency(c, runtime, jobRuntime),
      withinBudget: c.metrics?.within_budget !== false, recommended: false }];
  }
  // The recommendation compares the two ONNX files on onnxruntime (variants.recommend); torch runs neither.
  const onnx = runtime.id !== "torch";
  return SHOWN[runtime.id].filter((name) => variants[name]).map((name) => {
    const variant = variants[name];
    return {
      id: name === "fp32" ? c.id : `${c.id}/${name}`, candidate: c, variant: name,
      figures: variantFigures(c, name, variant), x: variantLatency(c, name, variant, runtime, jobRuntime),
      withinBudget: (variant.within_budget ?? c.metrics?.within_budget) !== false,
      recommended: onnx && c.metrics?.recommended_variant === name,
    };
  });
}

// Every point with both a latency on `runtime` and a `metric` figure, its metric as y.
export function plotted(candidates, runtime, metric, jobRuntime) {
  return candidates.flatMap((c) => candidatePoints(c, runtime, jobRuntime))
    .map((p) => ({ ...p, y: valueOf(p.figures, metric) }))
    .filter((p) => p.x != null && p.y != null);
}
