import type { EvalCase, Metric, MetricInput, MetricOutcome, NotApplicable } from "../types.js";

/** Options every metric takes. */
export interface MetricOptions {
  /** Another name in reports (two `contains` with different values, say). */
  name?: string;
  /** `pass` is `score >= threshold`; each metric documents its default. */
  threshold?: number;
}

/** A metric from a scoring function: the score is clamped to [0, 1] and `pass` derived from it. */
export function defineMetric(definition: {
  name: string;
  threshold: number;
  kind: Metric["kind"];
  options?: MetricOptions;
  score: (
    input: MetricInput,
  ) =>
    | number
    | NotApplicable
    | { score: number; reason?: string; details?: Record<string, unknown> }
    | Promise<number | NotApplicable | { score: number; reason?: string; details?: Record<string, unknown> }>;
  corpus?: Metric["corpus"];
}): Metric {
  const threshold = definition.options?.threshold ?? definition.threshold;
  if (!(threshold >= 0 && threshold <= 1))
    throw new RangeError(`${definition.name}: threshold must be in [0, 1], got ${threshold}`);
  const metric: Metric = {
    name: definition.options?.name ?? definition.name,
    threshold,
    kind: definition.kind,
    async score(input): Promise<MetricOutcome> {
      const result = await definition.score(input);
      if (typeof result === "object" && "notApplicable" in result) return result;
      const raw = typeof result === "number" ? { score: result } : result;
      const score = Number.isFinite(raw.score) ? Math.min(1, Math.max(0, raw.score)) : 0;
      return {
        score,
        pass: score >= threshold,
        ...(raw.reason !== undefined ? { reason: raw.reason } : {}),
        ...(raw.details !== undefined ? { details: raw.details } : {}),
      };
    },
  };
  if (definition.corpus) metric.corpus = definition.corpus;
  return metric;
}

export const notApplicable = (reason: string): NotApplicable => ({ notApplicable: true, reason });

/** The case's expected answer, or a not-applicable outcome saying the metric needs one. */
export function expectedOf(testCase: EvalCase, metric: string): string | NotApplicable {
  return testCase.expected ?? notApplicable(`${metric} needs the case's expected answer`);
}

/** Every acceptable answer of a case: `expected`, then `references`. */
export function referencesOf(testCase: EvalCase): string[] {
  return [...(testCase.expected !== undefined ? [testCase.expected] : []), ...(testCase.references ?? [])];
}

/** Words: runs of letters, digits and apostrophes, lowercased. */
export function words(text: string): string[] {
  return text.toLowerCase().match(/[\p{L}\p{N}']+/gu) ?? [];
}
