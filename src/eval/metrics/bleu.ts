/**
 * BLEU as sacrebleu computes it: the 13a tokenization (mteval-v13a), n-grams to 4 clipped by the most
 * any reference holds, the reference length closest to the hypothesis's (the shorter on a tie), the
 * brevity penalty, and exponential smoothing of zero counts. Per case the sentence score (sacrebleu's
 * `sentence_bleu`: effective order), corpus BLEU over the run in the summary.
 */
import { defineMetric, type MetricOptions, notApplicable, referencesOf } from "./metric.js";

/** sacrebleu's `tokenizer_13a`. */
export function tokenize13a(line: string): string[] {
  let text = line.replaceAll("<skipped>", "").replaceAll("-\n", "").replaceAll("\n", " ");
  if (text.includes("&"))
    text = text
      .replaceAll("&quot;", '"')
      .replaceAll("&amp;", "&")
      .replaceAll("&lt;", "<")
      .replaceAll("&gt;", ">");
  text = ` ${text} `
    .replace(/([{-~[-` -&(-+:-@/])/g, " $1 ")
    .replace(/([^0-9])([.,])/g, "$1 $2 ")
    .replace(/([.,])([^0-9])/g, " $1 $2")
    .replace(/([0-9])(-)/g, "$1 $2 ");
  return text.split(/\s+/).filter((token) => token.length > 0);
}

const ORDER = 4;

interface BleuStatistics {
  correct: number[];
  total: number[];
  hypothesisLength: number;
  referenceLength: number;
}

function ngrams(tokens: readonly string[], n: number): Map<string, number> {
  const counts = new Map<string, number>();
  for (let i = 0; i + n <= tokens.length; i++) {
    const key = tokens.slice(i, i + n).join(" ");
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return counts;
}

function statistics(hypothesis: string, references: readonly string[]): BleuStatistics {
  const hyp = tokenize13a(hypothesis);
  const refs = references.map(tokenize13a);
  let closest = Number.POSITIVE_INFINITY;
  let referenceLength = 0;
  for (const ref of refs) {
    const difference = Math.abs(ref.length - hyp.length);
    if (difference < closest || (difference === closest && ref.length < referenceLength)) {
      closest = difference;
      referenceLength = ref.length;
    }
  }
  const correct: number[] = [];
  const total: number[] = [];
  for (let n = 1; n <= ORDER; n++) {
    const counts = ngrams(hyp, n);
    const most = new Map<string, number>();
    for (const ref of refs)
      for (const [key, count] of ngrams(ref, n)) most.set(key, Math.max(most.get(key) ?? 0, count));
    let matched = 0;
    for (const [key, count] of counts) matched += Math.min(count, most.get(key) ?? 0);
    correct.push(matched);
    total.push(Math.max(0, hyp.length - n + 1));
  }
  return { correct, total, hypothesisLength: hyp.length, referenceLength };
}

export interface BleuScore {
  /** 0–100, as sacrebleu prints it. */
  score: number;
  /** The n-gram precisions, 0–100. */
  precisions: number[];
  brevityPenalty: number;
  hypothesisLength: number;
  referenceLength: number;
}

function compute(stats: BleuStatistics, effectiveOrder: boolean): BleuScore {
  const precisions = [0, 0, 0, 0];
  let smooth = 1;
  let order = ORDER;
  for (let n = 1; n <= ORDER; n++) {
    const total = stats.total[n - 1] as number;
    const correct = stats.correct[n - 1] as number;
    if (total === 0) break;
    if (effectiveOrder) order = n;
    if (correct === 0) {
      smooth *= 2;
      precisions[n - 1] = 100 / (smooth * total);
    } else precisions[n - 1] = (100 * correct) / total;
  }
  const { hypothesisLength: c, referenceLength: r } = stats;
  const brevityPenalty = c === 0 ? 0 : c < r ? Math.exp(1 - r / c) : 1;
  const log = (value: number) => (value === 0 ? -9999999999 : Math.log(value));
  const mean = precisions.slice(0, order).reduce((sum, p) => sum + log(p), 0) / order;
  return {
    score: brevityPenalty * Math.exp(mean),
    precisions,
    brevityPenalty,
    hypothesisLength: c,
    referenceLength: r,
  };
}

/** Corpus BLEU: `references[i]` lists the references of `hypotheses[i]`. */
export function corpusBleu(
  hypotheses: readonly string[],
  references: ReadonlyArray<readonly string[]>,
): BleuScore {
  if (hypotheses.length !== references.length)
    throw new RangeError(
      `corpusBleu: ${hypotheses.length} hypotheses for ${references.length} reference lists`,
    );
  const sum: BleuStatistics = {
    correct: [0, 0, 0, 0],
    total: [0, 0, 0, 0],
    hypothesisLength: 0,
    referenceLength: 0,
  };
  hypotheses.forEach((hypothesis, index) => {
    const stats = statistics(hypothesis, references[index] ?? []);
    for (let n = 0; n < ORDER; n++) {
      sum.correct[n] = (sum.correct[n] as number) + (stats.correct[n] as number);
      sum.total[n] = (sum.total[n] as number) + (stats.total[n] as number);
    }
    sum.hypothesisLength += stats.hypothesisLength;
    sum.referenceLength += stats.referenceLength;
  });
  return compute(sum, false);
}

/** sacrebleu's `sentence_bleu` (exponential smoothing, effective order). */
export function sentenceBleu(hypothesis: string, references: readonly string[]): BleuScore {
  return compute(statistics(hypothesis, references), true);
}

/** Sentence BLEU / 100 against `expected` and `references`; corpus BLEU in the summary. Threshold 0.3. */
export function bleu(options: MetricOptions = {}) {
  return defineMetric({
    name: "bleu",
    threshold: 0.3,
    kind: "score",
    options,
    score: ({ output, testCase }) => {
      const references = referencesOf(testCase);
      if (references.length === 0)
        return notApplicable("bleu needs the case's expected answer or references");
      const result = sentenceBleu(output, references);
      return {
        score: result.score / 100,
        details: { precisions: result.precisions, brevityPenalty: result.brevityPenalty },
      };
    },
    corpus: (outputs, cases) => {
      const pairs = cases.map((testCase, index) => [outputs[index] ?? "", referencesOf(testCase)] as const);
      const scored = pairs.filter(([, references]) => references.length > 0);
      if (scored.length === 0) return undefined;
      return corpusBleu(
        scored.map(([output]) => output),
        scored.map(([, references]) => references),
      ).score;
    },
  });
}
