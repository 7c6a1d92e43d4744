import { defineMetric, expectedOf, type MetricOptions } from "./metric.js";

/**
 * The output equals the expected answer, after trimming both (and, with `ignoreCase`, lowercasing).
 * 0 or 1; threshold 1.
 */
export function exactMatch(options: MetricOptions & { ignoreCase?: boolean } = {}) {
  const normal = (text: string) => (options.ignoreCase ? text.trim().toLowerCase() : text.trim());
  return defineMetric({
    name: "exactMatch",
    threshold: 1,
    kind: "pass",
    options,
    score: ({ output, testCase }) => {
      const expected = expectedOf(testCase, "exactMatch");
      if (typeof expected !== "string") return expected;
      return normal(output) === normal(expected) ? 1 : 0;
    },
  });
}
