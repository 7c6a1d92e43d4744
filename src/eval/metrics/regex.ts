import { defineMetric, type MetricOptions } from "./metric.js";

/** The output matches `pattern` (a RegExp, or a string compiled with `flags`). 0 or 1; threshold 1. */
export function regex(pattern: RegExp | string, options: MetricOptions & { flags?: string } = {}) {
  const compiled = typeof pattern === "string" ? new RegExp(pattern, options.flags) : pattern;
  return defineMetric({
    name: "regex",
    threshold: 1,
    kind: "pass",
    options,
    score: ({ output }) => {
      compiled.lastIndex = 0;
      const found = compiled.test(output);
      return { score: found ? 1 : 0, reason: `${found ? "matches" : "does not match"} ${compiled}` };
    },
  });
}
