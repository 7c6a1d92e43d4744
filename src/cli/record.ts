/** `tunekit record`: a model's answers to every case, kept as chat JSONL (see src/migrate/record.ts). */
import type { RecordEvent } from "../migrate/record.js";
import { integerFlag, numberFlag, parseFlags, quantizationFlag } from "./args.js";
import { Targets } from "./eval.js";
import { plural } from "./format.js";
import { type CliIO, processIO, UsageError } from "./io.js";

export const RECORD_USAGE = `  record --target SPEC --cases FILE --out FILE [--concurrency N] [--max-tokens N]
         [--temperature T] [--seed N] [--quantization nf4|none]
      Ask a model every case's input and keep its answers in FILE as chat JSONL (the answer the last
      assistant turn, where it came from in metadata): Evaluator cases and training data at once.
      SPEC as in eval: openai:MODEL (an ft: id too), together:MODEL, fireworks:MODEL, compat:MODEL@URL,
      local:PATH[+ADAPTER].
      Run it again to go on after a stop: recorded cases are not asked twice; failed ones are.`;

function usd(value: number): string {
  return value < 0.01 ? `$${value.toFixed(4)}` : `$${value.toFixed(2)}`;
}

export async function runRecord(argv: string[], io: CliIO): Promise<number> {
  const { values, positionals, help } = parseFlags("record", argv, {
    target: { type: "string" },
    cases: { type: "string" },
    out: { type: "string" },
    concurrency: { type: "string" },
    "max-tokens": { type: "string" },
    temperature: { type: "string" },
    seed: { type: "string" },
    quantization: { type: "string" },
  });
  if (help) {
    io.stdout(`Usage: tunekit${RECORD_USAGE.slice(1)}\n`);
    return 0;
  }
  if (positionals.length > 0)
    throw new UsageError(`record takes no file arguments; use --cases ${positionals[0]}`, "record");
  for (const flag of ["target", "cases", "out"] as const)
    if (!values[flag]) throw new UsageError(`record needs --${flag}`, "record");
  const concurrency = integerFlag(values.concurrency, "--concurrency", { command: "record" });
  const maxTokens = integerFlag(values["max-tokens"], "--max-tokens", { command: "record" });
  const seed = integerFlag(values.seed, "--seed", { min: 0, command: "record" });
  const temperature = numberFlag(values.temperature, "--temperature", { atLeast: 0, command: "record" });
  const quantization = quantizationFlag(values.quantization, "record");
  const targets = new Targets(io, quantization, "record");
  const controller = new AbortController();
  const unsubscribe = (io.onInterrupt ?? processIO.onInterrupt)?.(() => controller.abort());
  try {
    const target = await targets.build(values.target as string);
    const { record } = await import("../migrate/record.js");
    let shown = -1;
    const progress = (event: RecordEvent) => {
      if (event.type === "plan") {
        const already = event.recorded > 0 ? ` (${event.recorded} already in ${values.out})` : "";
        io.stdout(`recording ${plural(event.remaining, "case")} from ${target.modelId}${already}\n`);
        if (event.estimate)
          io.stdout(
            `estimated cost: ${usd(event.estimate.usd)} (${event.estimate.inputTokens.toLocaleString("en-US")} input tokens at $${event.estimate.prices.input}/1M, at most ${event.estimate.outputTokens.toLocaleString("en-US")} output tokens at $${event.estimate.prices.output}/1M)\n`,
          );
        return;
      }
      if (event.type === "failed") io.stderr(`case ${event.caseId} failed: ${event.error}\n`);
      const width = 30;
      const filled = Math.round((event.done / event.total) * width);
      const line = `[${"#".repeat(filled)}${" ".repeat(width - filled)}] ${event.done}/${event.total}`;
      if (io.isTTY) io.stdout(`\r\x1b[2K${line}${event.done === event.total ? "\n" : ""}`);
      else {
        // Plain output: a line at each tenth.
        const tenth = Math.floor((event.done / event.total) * 10);
        if (tenth !== shown) {
          shown = tenth;
          io.stdout(`${line}\n`);
        }
      }
    };
    const result = await record({
      target,
      cases: values.cases as string,
      out: values.out as string,
      ...(concurrency !== undefined ? { concurrency } : {}),
      generation: {
        temperature: temperature ?? 0,
        maxTokens: maxTokens ?? 1024,
        ...(seed !== undefined ? { seed } : {}),
      },
      signal: controller.signal,
      onProgress: progress,
    });
    io.stdout(
      `recorded ${plural(result.recorded, "case")}${result.resumed > 0 ? `, ${result.resumed} from before` : ""}${result.failed.length > 0 ? `, ${result.failed.length} failed (run again to retry them)` : ""} → ${result.out}\n`,
    );
    return result.failed.length > 0 ? 1 : 0;
  } catch (error) {
    if (controller.signal.aborted) {
      io.stderr(`stopped: what was recorded is kept in ${values.out}; run the same command to go on\n`);
      return 130;
    }
    throw error;
  } finally {
    unsubscribe?.();
    targets.dispose();
  }
}
