#!/usr/bin/env node
// Hostile-input benchmark: the records that used to hang tunekit or run it out of memory, through the
// commands people run on them, each in its own process (so each peak RSS is its own). Beside each file,
// the baseline measured in the same run: Node reading the file line by line and JSON.parse-ing each
// line, the least any JSONL tool does. Targets: every command under 5 s and 300 MB, ending with a
// located problem and a normal exit (0 or 1).
//
//   npm run build && node bench/hostile-input.mjs [--model DIR]
//
// --model is the local model (default: ../shared/fixtures/stories260K-hf when present, else a tiny
// generated one).
import { spawn } from "node:child_process";
import { createWriteStream, existsSync, mkdirSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const cli = join(root, "dist/cli/index.js");
const { values } = parseArgs({ options: { model: { type: "string" } } });
const TARGET_SECONDS = 5;
const TARGET_MB = 300;

/** Reports the child's peak RSS on stderr as its last line. */
const REPORT_RSS = `data:text/javascript,process.on("exit",()=>process.stderr.write("\\nmaxrss="+process.resourceUsage().maxRSS+"\\n"))`;

function measure(args) {
  return new Promise((done, fail) => {
    const started = performance.now();
    const child = spawn(process.execPath, ["--import", REPORT_RSS, ...args], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk) => {
      stdout += chunk;
    });
    child.stderr.on("data", (chunk) => {
      stderr += chunk;
    });
    child.on("error", fail);
    child.on("close", (code) => {
      const seconds = (performance.now() - started) / 1000;
      const rss = Number(/maxrss=(\d+)/.exec(stderr)?.[1] ?? Number.NaN) / 1024;
      const text = `${stdout}${stderr.replace(/\nmaxrss=\d+\n/, "")}`;
      const problem =
        /(token counts approximate|record_too_long|example_too_long|no valid record|over the [\d,]+[- ]token limit|were cut|record is [^\n]*)/.exec(
          text,
        )?.[0] ?? "";
      done({ code, seconds, rss, problem, text });
    });
  });
}

async function writeRecord(file, content) {
  const stream = createWriteStream(file);
  const head = JSON.stringify({
    messages: [
      { role: "user", content: "hi" },
      { role: "assistant", content: "" },
    ],
  });
  stream.write(head.slice(0, -4));
  for (const piece of content())
    if (!stream.write(JSON.stringify(piece).slice(1, -1))) await new Promise((r) => stream.once("drain", r));
  stream.write(`"}]}\n`);
  await new Promise((r) => stream.end(r));
}

function* repeated(unit, bytes) {
  const chunk = unit.repeat(Math.ceil((1 << 20) / unit.length));
  for (let written = 0; written < bytes; written += chunk.length)
    yield chunk.slice(0, Math.min(chunk.length, bytes - written));
}

async function main() {
  const dir = join(root, "bench/.data/hostile");
  mkdirSync(dir, { recursive: true });
  const fixture = resolve(root, "../shared/fixtures/stories260K-hf");
  let model = values.model;
  if (!model && existsSync(fixture)) model = fixture;
  if (!model) {
    const { writeTinyModel } = await import(join(root, "dist/testing/index.js"));
    model = await writeTinyModel(join(dir, "tiny-model"));
  }
  const words = "the parcel left the depot on tuesday and should reach you by friday ";
  const cases = [
    ["run-400k.jsonl", () => repeated("a", 400_000)],
    ["spaces-400k.jsonl", () => repeated(" ", 400_000)],
    ["dashes-400k.jsonl", () => repeated("-", 400_000)],
    ["words-5mb.jsonl", () => repeated(words, 5_000_000)],
    ["words-15mb.jsonl", () => repeated(words, 15_000_000)],
    ["line-50mb.jsonl", () => repeated(words, 50_000_000)],
  ];
  for (const [name, content] of cases)
    if (!existsSync(join(dir, name))) await writeRecord(join(dir, name), content);
  const baseline = (file) =>
    measure([
      "-e",
      `const rl=require("readline").createInterface({input:require("fs").createReadStream(${JSON.stringify(file)})});rl.on("line",l=>JSON.parse(l));`,
    ]);
  const train = (file) => [
    cli,
    "train",
    "--model",
    model,
    "--data",
    file,
    "--output",
    join(dir, "out"),
    "--epochs",
    "1",
    "--max-seq-length",
    "256",
  ];
  const commands = {
    "run-400k.jsonl": (file) => [
      ["validate (openai)", [cli, "validate", file]],
      ["stats", [cli, "stats", file]],
    ],
    "spaces-400k.jsonl": (file) => [["validate (openai)", [cli, "validate", file]]],
    "dashes-400k.jsonl": (file) => [["validate (openai)", [cli, "validate", file]]],
    "words-5mb.jsonl": (file) => [
      ["validate --target local", [cli, "validate", file, "--target", "local", "--model", model]],
      ["train (1 epoch)", train(file)],
    ],
    "words-15mb.jsonl": (file) => [
      ["validate (openai)", [cli, "validate", file]],
      ["validate --target local", [cli, "validate", file, "--target", "local", "--model", model]],
      ["stats", [cli, "stats", file]],
      ["train (1 epoch)", train(file)],
    ],
    "line-50mb.jsonl": (file) => [
      ["validate (openai)", [cli, "validate", file]],
      ["validate --target local", [cli, "validate", file, "--target", "local", "--model", model]],
      ["stats", [cli, "stats", file]],
      ["convert", [cli, "convert", file, join(dir, "out.jsonl"), "--to", "chat"]],
      ["train (1 epoch)", train(file)],
    ],
  };
  console.log(`model: ${model}`);
  console.log(
    `${"file / command".padEnd(42)} ${"time".padStart(7)} ${"peak RSS".padStart(9)} ${"× base t".padStart(8)} ${"× base RSS".padStart(10)}  exit  target  what it said`,
  );
  let failures = 0;
  for (const [name] of cases) {
    const file = join(dir, name);
    const base = await baseline(file);
    console.log(
      `${`${name}: baseline readline + JSON.parse`.padEnd(42)} ${base.seconds.toFixed(2).padStart(6)}s ${base.rss.toFixed(0).padStart(6)} MB`,
    );
    for (const [label, args] of commands[name](file)) {
      const result = await measure(args);
      const ok =
        result.seconds < TARGET_SECONDS && result.rss < TARGET_MB && (result.code === 0 || result.code === 1);
      if (!ok) failures++;
      console.log(
        `${`  ${label}`.padEnd(42)} ${result.seconds.toFixed(2).padStart(6)}s ${result.rss.toFixed(0).padStart(6)} MB ${(result.seconds / base.seconds).toFixed(1).padStart(7)}× ${(result.rss / base.rss).toFixed(1).padStart(9)}×  ${String(result.code).padStart(4)}  ${ok ? "  met " : "MISSED"}  ${result.problem.slice(0, 60)}`,
      );
    }
  }
  console.log(
    failures === 0
      ? `all commands under ${TARGET_SECONDS} s and ${TARGET_MB} MB, each with a normal exit`
      : `${failures} command(s) missed the targets`,
  );
  process.exitCode = failures === 0 ? 0 : 1;
}

await main();
