#!/usr/bin/env node
// This CPU's arithmetic limit (bench/peak.cc: independent AVX-512 FMA and vdpbf16ps chains in
// registers), the figure the engine benchmarks print beside theirs. Built with the system's g++ into
// bench/.data on first use. `node bench/peak.mjs [--threads N] [--seconds S]` prints it; the engine
// benchmarks import `measurePeak`.
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, statSync } from "node:fs";
import { availableParallelism } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const here = dirname(fileURLToPath(import.meta.url));

/**
 * GFLOP/s of fp32 FMA and (where the CPU has AVX-512 BF16) of vdpbf16ps, on one thread and on
 * `threads` at once: `{ threads, fp32: { one, all }, bf16: { one, all } | null }`, or undefined where
 * it cannot be measured (no g++, no AVX-512), with the reason on stderr.
 */
export function measurePeak({ threads = availableParallelism(), seconds = 1 } = {}) {
  const source = join(here, "peak.cc");
  const binary = join(here, ".data", "peak");
  try {
    if (!existsSync(binary) || statSync(binary).mtimeMs < statSync(source).mtimeMs) {
      mkdirSync(dirname(binary), { recursive: true });
      execFileSync("g++", ["-O3", "-std=c++17", "-pthread", source, "-o", binary], { stdio: "pipe" });
    }
    const result = JSON.parse(execFileSync(binary, [String(threads), String(seconds)], { encoding: "utf8" }));
    if (result.error) throw new Error(result.error);
    return result;
  } catch (error) {
    console.error(`the CPU's limit could not be measured: ${error.message.split("\n")[0]}`);
    return undefined;
  }
}

/** "x GFLOP/s (y % of the fp32 limit)" for `flops` done in `seconds`. */
export function share(flops, seconds, peak, kind = "fp32") {
  const rate = flops / seconds / 1e9;
  const limit = peak?.[kind]?.all;
  return `${rate.toFixed(0)} GFLOP/s${limit ? ` (${((100 * rate) / limit).toFixed(0)} % of ${kind} peak)` : ""}`;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({
    options: { threads: { type: "string" }, seconds: { type: "string", default: "1" } },
  });
  const threads = values.threads ? Number(values.threads) : availableParallelism();
  const peak = measurePeak({ threads, seconds: Number(values.seconds) });
  if (!peak) process.exit(1);
  console.log(`limit of this CPU (register-only chains; ${peak.threads} threads):`);
  console.log(
    `  fp32 FMA:           ${peak.fp32.one.toFixed(0)} GFLOP/s on 1 thread, ${peak.fp32.all.toFixed(0)} on ${peak.threads}`,
  );
  if (peak.bf16)
    console.log(
      `  bf16 (vdpbf16ps):   ${peak.bf16.one.toFixed(0)} GFLOP/s on 1 thread, ${peak.bf16.all.toFixed(0)} on ${peak.threads}`,
    );
  else console.log("  bf16: this CPU has no AVX-512 BF16");
}
