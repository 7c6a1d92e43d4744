#!/usr/bin/env node
// Data benchmark: validate a generated JSONL file (1 GB by default) with tunekit's streaming Validator
// and compare it with a baseline measured in the same run: Node's readline + JSON.parse over the same
// file, the least any JSONL reader must do. Each side runs in its own process so peak RSS is its own.
//
//   npm run build && node bench/data-validate.mjs [--size-mb 1024] [--keep]
//
// Prints throughput (MB/s), peak RSS and the ratios. Target: tunekit's peak RSS under 200 MB.
import { execFileSync } from "node:child_process";
import { createWriteStream, existsSync, mkdirSync, statSync } from "node:fs";
import { rm } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const { values } = parseArgs({
  options: {
    "size-mb": { type: "string", default: "1024" },
    keep: { type: "boolean", default: false },
    child: { type: "string" },
    file: { type: "string" },
  },
});

if (values.child) {
  await child(values.child, values.file);
} else {
  await main();
}

async function main() {
  const sizeMb = Number(values["size-mb"]);
  const dir = join(root, "bench/.data");
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `chat-${sizeMb}mb.jsonl`);
  if (!existsSync(file) || statSync(file).size < sizeMb * 1024 * 1024) {
    process.stdout.write(`generating ${file} (${sizeMb} MB)… `);
    const started = performance.now();
    await generate(file, sizeMb * 1024 * 1024);
    console.log(`${((performance.now() - started) / 1000).toFixed(1)} s`);
  }
  const megabytes = statSync(file).size / 1024 / 1024;
  const measure = (name) =>
    JSON.parse(
      execFileSync(process.execPath, [fileURLToPath(import.meta.url), "--child", name, "--file", file], {
        encoding: "utf8",
        maxBuffer: 1 << 20,
      }),
    );
  const baseline = measure("baseline");
  const tunekit = measure("tunekit");
  const row = (name, result) =>
    `${name.padEnd(34)} ${result.seconds.toFixed(1).padStart(7)} s ${(megabytes / result.seconds).toFixed(1).padStart(8)} MB/s ${result.peakRssMb.toFixed(0).padStart(6)} MB`;
  console.log(`\nfile: ${megabytes.toFixed(0)} MB, ${tunekit.examples} examples (node ${process.version})`);
  console.log(
    `${"".padEnd(34)} ${"time".padStart(9)} ${"throughput".padStart(13)} ${"peak RSS".padStart(9)}`,
  );
  console.log(row("baseline: readline + JSON.parse", baseline));
  console.log(row("tunekit: Validator (o200k_base)", tunekit));
  console.log(
    `\ntunekit / baseline: ${(tunekit.seconds / baseline.seconds).toFixed(2)}× the time, ${(tunekit.peakRssMb / baseline.peakRssMb).toFixed(2)}× the memory`,
  );
  console.log(
    `billed tokens: ${tunekit.tokens}; report ok: ${tunekit.ok}; problems: ${JSON.stringify(tunekit.counts)}`,
  );
  console.log(`peak RSS target (< 200 MB): ${tunekit.peakRssMb < 200 ? "met" : "MISSED"}`);
  if (!values.keep) await rm(file);
}

async function child(name, file) {
  const started = performance.now();
  let result;
  if (name === "baseline") {
    const { createInterface } = await import("node:readline");
    const { createReadStream } = await import("node:fs");
    let examples = 0;
    for await (const line of createInterface({
      input: createReadStream(file),
      crlfDelay: Number.POSITIVE_INFINITY,
    })) {
      if (line) {
        JSON.parse(line);
        examples++;
      }
    }
    result = { examples };
  } else {
    const { Validator } = await import(join(root, "dist/index.js"));
    const report = await new Validator({ model: "gpt-4o-mini" }).validate(file);
    result = {
      examples: report.examples,
      ok: report.ok,
      counts: report.counts,
      tokens: report.cost.billedTokens,
    };
  }
  const seconds = (performance.now() - started) / 1000;
  console.log(JSON.stringify({ ...result, seconds, peakRssMb: process.resourceUsage().maxRSS / 1024 }));
}

/** Realistic-looking support conversations from a fixed vocabulary, deterministic (no Math.random). */
async function generate(file, bytes) {
  const words =
    "order refund shipping password account billing invoice return label warranty replacement tracking delivery charge card subscription cancel update email address support team please thank you help check status days business policy item package defective screen battery charger".split(
      " ",
    );
  let seed = 12345;
  const random = () => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed / 0x7fffffff;
  };
  const sentence = (length) =>
    Array.from({ length }, () => words[Math.floor(random() * words.length)]).join(" ");
  const out = createWriteStream(file);
  let written = 0;
  let count = 0;
  while (written < bytes) {
    const turns = 1 + Math.floor(random() * 3);
    const messages = [{ role: "system", content: "You are a helpful customer support agent for TechCorp." }];
    for (let turn = 0; turn < turns; turn++) {
      messages.push({
        role: "user",
        content: `Order #${10000 + (count % 90000)}: ${sentence(10 + Math.floor(random() * 30))}?`,
      });
      messages.push({ role: "assistant", content: `${sentence(40 + Math.floor(random() * 120))}.` });
    }
    const line = `${JSON.stringify({ messages })}\n`;
    written += Buffer.byteLength(line);
    count++;
    if (!out.write(line)) await new Promise((resolve) => out.once("drain", resolve));
  }
  out.end();
  await new Promise((resolve) => out.once("finish", resolve));
}
