/**
 * chrF as sacrebleu computes it (`CHRF()`: character n-grams to 6, β = 2, whitespace removed, no
 * word n-grams): per order the hypothesis, reference and matched counts; the best-scoring reference
 * per sentence; precision and recall averaged over the orders both sides have, then F-β.
 */
import { defineMetric, type MetricOptions, notApplicable, referencesOf } from "./metric.js";

const ORDER = 6;
const BETA = 2;

function charNgrams(text: string, n: number): Map<string, number> {
  const chars = [...text.replace(/\s+/g, "")];
  const counts = new Map<string, number>();
  for (let i = 0; i + n <= chars.length; i++) {
    const key = chars.slice(i, i + n).join("");
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return counts;
}

/** [hyp, ref, match] per order, flattened. */
function stats(hypothesis: string, reference: string): number[] {
  const result: number[] = [];
  for (let n = 1; n <= ORDER; n++) {
    const hyp = charNgrams(hypothesis, n);
    const ref = charNgrams(reference, n);
    let hypCount = 0;
    let refCount = 0;
    let match = 0;
    for (const count of hyp.values()) hypCount += count;
    for (const [key, count] of ref) {
      refCount += count;
      match += Math.min(count, hyp.get(key) ?? 0);
    }
    result.push(hypCount, refCount, match);
  }
  return result;
}

function fScore(statistics: readonly number[]): number {
  const factor = BETA ** 2;
  let precision = 0;
  let recall = 0;
  let order = 0;
  for (let i = 0; i < ORDER; i++) {
    const [hyp, ref, match] = statistics.slice(3 * i, 3 * i + 3) as [number, number, number];
    if (hyp > 0 && ref > 0) {
      precision += match / hyp;
      recall += match / ref;
      order++;
    }
  }
  if (order === 0) return 0;
  precision /= order;
  recall /= order;
  return precision + recall > 0
    ? (100 * (1 + factor) * precision * recall) / (factor * precision + recall)
    : 0;
}

/** The statistics of the reference that scores best for this hypothesis. */
function best(hypothesis: string, references: readonly string[]): number[] {
  let chosen: number[] = new Array(3 * ORDER).fill(0);
  let score = -1;
  for (const reference of references) {
    const candidate = stats(hypothesis, reference);
    const value = fScore(candidate);
    if (value > score) {
      score = value;
      chosen = candidate;
    }
  }
  return chosen;
}

/** Corpus chrF (0–100): the statistics summed over the sentences, then F-β. */
export function corpusChrf(
  hypotheses: readonly string[],
  references: ReadonlyArray<readonly string[]>,
): number {
  if (hypotheses.length !== references.length)
    throw new RangeError(
      `corpusChrf: ${hypotheses.length} hypotheses for ${references.length} reference lists`,
    );
  const sum: number[] = new Array(3 * ORDER).fill(0);
  hypotheses.forEach((hypothesis, index) => {
    best(hypothesis, references[index] ?? []).forEach((value, k) => {
      sum[k] = (sum[k] as number) + value;
    });
  });
  return fScore(sum);
}

/** Sentence chrF (0–100). */
export function sentenceChrf(hypothesis: string, references: readonly string[]): number {
  return fScore(best(hypothesis, references));
}

/** Sentence chrF / 100 against `expected` and `references`; corpus chrF in the summary. Threshold 0.5. */
export function chrf(options: MetricOptions = {}) {
  return defineMetric({
    name: "chrf",
    threshold: 0.5,
    kind: "score",
    options,
    score: ({ output, testCase }) => {
      const references = referencesOf(testCase);
      if (references.length === 0)
        return notApplicable("chrf needs the case's expected answer or references");
      return sentenceChrf(output, references) / 100;
    },
    corpus: (outputs, cases) => {
      const scored = cases
        .map((testCase, index) => [outputs[index] ?? "", referencesOf(testCase)] as const)
        .filter(([, references]) => references.length > 0);
      if (scored.length === 0) return undefined;
      return corpusChrf(
        scored.map(([output]) => output),
        scored.map(([, references]) => references),
      );
    },
  });
}
