/** Substring checks: `contains`, `icontains`, `containsAll`, `containsAny`. Scores are 0 or 1; threshold 1. */
import { defineMetric, expectedOf, type MetricOptions } from "./metric.js";

/** The output contains `value` (default: the case's `expected`), case-sensitive. */
export function contains(value?: string, options: MetricOptions = {}) {
  return defineMetric({
    name: "contains",
    threshold: 1,
    kind: "pass",
    options,
    score: ({ output, testCase }) => {
      const wanted = value ?? expectedOf(testCase, "contains");
      if (typeof wanted !== "string") return wanted;
      const found = output.includes(wanted);
      return {
        score: found ? 1 : 0,
        reason: `${found ? "contains" : "does not contain"} ${JSON.stringify(wanted)}`,
      };
    },
  });
}

/** As `contains`, ignoring case. */
export function icontains(value?: string, options: MetricOptions = {}) {
  return defineMetric({
    name: "icontains",
    threshold: 1,
    kind: "pass",
    options,
    score: ({ output, testCase }) => {
      const wanted = value ?? expectedOf(testCase, "icontains");
      if (typeof wanted !== "string") return wanted;
      const found = output.toLowerCase().includes(wanted.toLowerCase());
      return {
        score: found ? 1 : 0,
        reason: `${found ? "contains" : "does not contain"} ${JSON.stringify(wanted)}`,
      };
    },
  });
}

function containsSome(name: string, values: readonly string[], every: boolean, options: MetricOptions) {
  if (values.length === 0) throw new RangeError(`${name} needs at least one value`);
  return defineMetric({
    name,
    threshold: 1,
    kind: "pass",
    options,
    score: ({ output }) => {
      const missing = values.filter((value) => !output.includes(value));
      const ok = every ? missing.length === 0 : missing.length < values.length;
      return {
        score: ok ? 1 : 0,
        reason:
          missing.length === 0
            ? "contains every value"
            : `missing ${missing.map((value) => JSON.stringify(value)).join(", ")}`,
      };
    },
  });
}

/** The output contains every one of `values`. */
export const containsAll = (values: readonly string[], options: MetricOptions = {}) =>
  containsSome("containsAll", values, true, options);

/** The output contains at least one of `values`. */
export const containsAny = (values: readonly string[], options: MetricOptions = {}) =>
  containsSome("containsAny", values, false, options);
