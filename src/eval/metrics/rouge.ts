/**
 * ROUGE-1, ROUGE-2 and ROUGE-L as Google's rouge-score computes them (`RougeScorer` without a
 * stemmer): lowercased, every run of characters other than a-z and 0-9 a space, F-measure of n-gram
 * overlap (ROUGE-N) or of the longest common subsequence (ROUGE-L).
 */
import { defineMetric, expectedOf, type MetricOptions } from "./metric.js";

export interface RougeFigure {
  precision: number;
  recall: number;
  f: number;
}

/** rouge-score's default tokenizer. */
export function rougeTokens(text: string): string[] {
  return text
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, " ")
    .split(" ")
    .filter((token) => token.length > 0);
}

function figure(overlap: number, predicted: number, target: number): RougeFigure {
  const precision = predicted > 0 ? overlap / predicted : 0;
  const recall = target > 0 ? overlap / target : 0;
  const f = precision + recall > 0 ? (2 * precision * recall) / (precision + recall) : 0;
  return { precision, recall, f };
}

function ngramCounts(tokens: readonly string[], n: number): Map<string, number> {
  const counts = new Map<string, number>();
  for (let i = 0; i + n <= tokens.length; i++) {
    const key = tokens.slice(i, i + n).join(" ");
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return counts;
}

function rougeN(prediction: readonly string[], target: readonly string[], n: number): RougeFigure {
  const predicted = ngramCounts(prediction, n);
  const wanted = ngramCounts(target, n);
  let overlap = 0;
  for (const [key, count] of predicted) overlap += Math.min(count, wanted.get(key) ?? 0);
  return figure(overlap, Math.max(0, prediction.length - n + 1), Math.max(0, target.length - n + 1));
}

function lcsLength(a: readonly string[], b: readonly string[]): number {
  let previous = new Uint32Array(b.length + 1);
  for (let i = 1; i <= a.length; i++) {
    const current = new Uint32Array(b.length + 1);
    for (let j = 1; j <= b.length; j++)
      current[j] =
        a[i - 1] === b[j - 1]
          ? (previous[j - 1] as number) + 1
          : Math.max(previous[j] as number, current[j - 1] as number);
    previous = current;
  }
  return previous[b.length] as number;
}

/** The three figures of a prediction against one reference. */
export function rouge(
  prediction: string,
  reference: string,
): { rouge1: RougeFigure; rouge2: RougeFigure; rougeL: RougeFigure } {
  const predicted = rougeTokens(prediction);
  const target = rougeTokens(reference);
  return {
    rouge1: rougeN(predicted, target, 1),
    rouge2: rougeN(predicted, target, 2),
    rougeL: figure(lcsLength(predicted, target), predicted.length, target.length),
  };
}

function rougeMetric(name: "rouge1" | "rouge2" | "rougeL", options: MetricOptions) {
  return defineMetric({
    name,
    threshold: 0.5,
    kind: "score",
    options,
    score: ({ output, testCase }) => {
      const expected = expectedOf(testCase, name);
      if (typeof expected !== "string") return expected;
      const result = rouge(output, expected)[name];
      return { score: result.f, details: { precision: result.precision, recall: result.recall } };
    },
  });
}

/** F-measure against the expected answer. Threshold 0.5. */
export const rouge1 = (options: MetricOptions = {}) => rougeMetric("rouge1", options);
export const rouge2 = (options: MetricOptions = {}) => rougeMetric("rouge2", options);
export const rougeL = (options: MetricOptions = {}) => rougeMetric("rougeL", options);
