import { defineMetric, expectedOf, type MetricOptions } from "./metric.js";

/** Edit distance in characters (code points), two rows of memory. */
export function levenshteinDistance(a: string, b: string): number {
  const x = [...a];
  const y = [...b];
  let previous = Array.from({ length: y.length + 1 }, (_, index) => index);
  for (let i = 1; i <= x.length; i++) {
    const current = [i];
    for (let j = 1; j <= y.length; j++)
      current[j] = Math.min(
        (previous[j] as number) + 1,
        (current[j - 1] as number) + 1,
        (previous[j - 1] as number) + (x[i - 1] === y[j - 1] ? 0 : 1),
      );
    previous = current;
  }
  return previous[y.length] as number;
}

/** Similarity to the expected answer: 1 − distance / the longer length (1 for two empty texts). Threshold 0.8. */
export function levenshtein(options: MetricOptions = {}) {
  return defineMetric({
    name: "levenshtein",
    threshold: 0.8,
    kind: "score",
    options,
    score: ({ output, testCase }) => {
      const expected = expectedOf(testCase, "levenshtein");
      if (typeof expected !== "string") return expected;
      const longer = Math.max([...output].length, [...expected].length);
      const distance = levenshteinDistance(output, expected);
      return { score: longer === 0 ? 1 : 1 - distance / longer, details: { distance } };
    },
  });
}
