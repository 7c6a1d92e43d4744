/**
 * The guide's three evaluation heuristics, fixed: `topicCoverage` (whole-word, case-insensitive; an
 * empty output scores 0), `lengthScore` (a 20–200 word band that falls off smoothly) and `repetition`
 * (the share of distinct word trigrams, a score rather than a flag).
 */
import { defineMetric, type MetricOptions, notApplicable, words } from "./metric.js";

const escapeRegExp = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

/** Share of `topics` (default: the case's `expectedTopics`) the output mentions as whole words. Threshold 0.5. */
export function topicCoverage(topics?: readonly string[], options: MetricOptions = {}) {
  return defineMetric({
    name: "topicCoverage",
    threshold: 0.5,
    kind: "score",
    options,
    score: ({ output, testCase }) => {
      const wanted = topics ?? testCase.expectedTopics;
      if (!wanted || wanted.length === 0)
        return notApplicable("topicCoverage needs topics (or the case's expectedTopics)");
      const found = wanted.filter((topic) =>
        new RegExp(`(?<![\\p{L}\\p{N}])${escapeRegExp(topic.trim())}(?![\\p{L}\\p{N}])`, "iu").test(output),
      );
      const missing = wanted.filter((topic) => !found.includes(topic));
      return {
        score: found.length / wanted.length,
        reason: missing.length === 0 ? "mentions every topic" : `missing ${missing.join(", ")}`,
        details: { found, missing },
      };
    },
  });
}

/**
 * 1 for an answer of `min` to `max` words (default 20–200), falling off smoothly outside: n / min
 * below, max / n above. Threshold 1 (inside the band).
 */
export function lengthScore(options: MetricOptions & { min?: number; max?: number } = {}) {
  const min = options.min ?? 20;
  const max = options.max ?? 200;
  if (!(min > 0 && max >= min)) throw new RangeError(`lengthScore: need 0 < min <= max, got ${min}, ${max}`);
  return defineMetric({
    name: "lengthScore",
    threshold: 1,
    kind: "score",
    options,
    score: ({ output }) => {
      const n = words(output).length;
      const score = n < min ? n / min : n > max ? max / n : 1;
      return { score, reason: `${n} words (band ${min}–${max})`, details: { words: n } };
    },
  });
}

/** The share of distinct word trigrams (1: nothing repeats; under three words: 1). Threshold 0.7. */
export function repetition(options: MetricOptions = {}) {
  return defineMetric({
    name: "repetition",
    threshold: 0.7,
    kind: "score",
    options,
    score: ({ output }) => {
      const tokens = words(output);
      if (tokens.length < 3) return 1;
      const trigrams = tokens.slice(2).map((_, index) => tokens.slice(index, index + 3).join(" "));
      const distinct = new Set(trigrams).size;
      return { score: distinct / trigrams.length, details: { trigrams: trigrams.length, distinct } };
    },
  });
}
