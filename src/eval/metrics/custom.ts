import type { EvalCase } from "../types.js";
import { defineMetric, type MetricOptions } from "./metric.js";

/**
 * A metric of your own: `fn` returns a score in [0, 1] (clamped), or `{ score, reason? }`.
 * Threshold 0.5 unless given; `kind: "pass"` when the scores are only 0 or 1.
 */
export function custom(
  name: string,
  fn: (
    output: string,
    testCase: EvalCase,
  ) => number | { score: number; reason?: string } | Promise<number | { score: number; reason?: string }>,
  options: MetricOptions & { kind?: "pass" | "score" } = {},
) {
  return defineMetric({
    name,
    threshold: 0.5,
    kind: options.kind ?? "score",
    options: { ...options, name },
    score: ({ output, testCase }) => fn(output, testCase),
  });
}
