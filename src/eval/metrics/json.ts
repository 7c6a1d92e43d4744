/** `jsonValid` and `jsonSchema` (zod): the output is JSON (a fenced ```json block counts). 0 or 1; threshold 1. */
import type { ZodType } from "zod";
import { defineMetric, type MetricOptions } from "./metric.js";

/** The JSON text of an output: the whole of it, or its one fenced code block. */
function jsonText(output: string): string {
  const fenced = /^\s*```(?:json)?\s*\n([\s\S]*?)\n```\s*$/.exec(output);
  return (fenced ? fenced[1] : output) as string;
}

function parse(output: string): { ok: true; value: unknown } | { ok: false; reason: string } {
  try {
    return { ok: true, value: JSON.parse(jsonText(output)) };
  } catch (error) {
    return { ok: false, reason: `not JSON: ${(error as Error).message}` };
  }
}

export function jsonValid(options: MetricOptions = {}) {
  return defineMetric({
    name: "jsonValid",
    threshold: 1,
    kind: "pass",
    options,
    score: ({ output }) => {
      const parsed = parse(output);
      return parsed.ok ? { score: 1 } : { score: 0, reason: parsed.reason };
    },
  });
}

/** The output is JSON that `schema` accepts; the reason names the first issue and its path. */
export function jsonSchema(schema: ZodType, options: MetricOptions = {}) {
  return defineMetric({
    name: "jsonSchema",
    threshold: 1,
    kind: "pass",
    options,
    score: ({ output }) => {
      const parsed = parse(output);
      if (!parsed.ok) return { score: 0, reason: parsed.reason };
      const checked = schema.safeParse(parsed.value);
      if (checked.success) return { score: 1 };
      const issue = checked.error.issues[0];
      return { score: 0, reason: `${issue?.path.join(".") || "(root)"}: ${issue?.message ?? "invalid"}` };
    },
  });
}
