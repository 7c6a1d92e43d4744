/**
 * Hostile input through the commands people run on it: random bytes, truncated JSON, deep nesting,
 * huge numbers, invalid UTF-8, in JSONL, JSON and CSV. Nothing crashes or hangs (vitest's timeout),
 * every command ends with a documented exit code and no stack trace, and every problem is located.
 */
import { mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { seededRandom } from "../src/core/stats.js";
import { Dataset } from "../src/data/dataset.js";
import { TINY_LLAMA, writeTinyModel } from "../src/testing/tiny-model.js";
import { Validator } from "../src/validate/validator.js";
import { runCli } from "./cli-helpers.js";
import { chatRow } from "./helpers.js";

const random = seededRandom(20261201);
const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)] as T;
const bytes = (count: number) => Uint8Array.from({ length: count }, () => Math.floor(random() * 256));

/** One hostile line (or element) of JSON text, as bytes. */
function hostileRecord(): Uint8Array {
  const good = JSON.stringify(chatRow("Where is my parcel?", "It ships tomorrow."));
  const kinds: Array<() => string | Uint8Array> = [
    () => bytes(1 + Math.floor(random() * 200)),
    () => good.slice(0, Math.floor(random() * good.length)),
    () => `${"[".repeat(5000)}${"]".repeat(5000)}`,
    () => `{"messages": ${"[".repeat(200)}1${"]".repeat(200)}}`,
    () => `{"text": 1e400}`,
    () => `{"prompt": "${"9".repeat(400)}", "completion": -1e999}`,
    () =>
      `{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ok", "weight": 1e308}]}`,
    () =>
      Buffer.concat([Buffer.from('{"text": "'), Buffer.from([0xc3, 0x28, 0xff, 0xfe]), Buffer.from('"}')]),
    () => `{"text": "\\ud800"}`,
    () => `"just a string"`,
    () => "null",
    () => `{"messages": "not a list"}`,
    () => `{"__proto__": {"polluted": true}, "text": "x"}`,
    () => good,
  ];
  const made = pick(kinds)();
  return typeof made === "string" ? Buffer.from(made) : made;
}

function hostileFile(kind: "jsonl" | "json" | "csv"): Uint8Array {
  const records = Array.from({ length: 1 + Math.floor(random() * 8) }, hostileRecord);
  const newline = Buffer.from("\n");
  if (kind === "jsonl") return Buffer.concat(records.flatMap((record) => [record, newline]));
  if (kind === "json") {
    const parts = records.flatMap((record, index) => (index === 0 ? [record] : [Buffer.from(",\n"), record]));
    const closed = random() < 0.7;
    return Buffer.concat([Buffer.from("[\n"), ...parts, Buffer.from(closed ? "\n]" : "")]);
  }
  const header = pick(["prompt,completion\n", "messages\n", "text\n", '"unclosed\n']);
  return Buffer.concat([Buffer.from(header), ...records.flatMap((record) => [record, newline])]);
}

let dir = "";
let model = "";
const files: string[] = [];
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "tunekit-fuzz-"));
  model = await writeTinyModel(join(dir, "tiny"), TINY_LLAMA);
  for (let index = 0; index < 36; index++) {
    const kind = (["jsonl", "json", "csv"] as const)[index % 3] as "jsonl" | "json" | "csv";
    const file = join(dir, `fuzz-${index}.${kind}`);
    await writeFile(file, hostileFile(kind));
    files.push(file);
  }
  const raw = join(dir, "raw.jsonl");
  await writeFile(raw, bytes(4096));
  files.push(raw);
});

const EXIT_CODES = [0, 1, 2];

describe("fuzz: hostile files through every command", () => {
  it("validate, stats and convert end with a documented exit code, no stack trace", async () => {
    for (const file of files) {
      for (const argv of [
        ["validate", file],
        ["validate", file, "--target", "local", "--model", model],
        ["stats", file],
        ["convert", file, join(dir, "out.jsonl"), "--to", "chat", "--skip-unfit"],
      ]) {
        const result = await runCli(argv);
        expect(EXIT_CODES, `${argv.join(" ")}\n${result.stderr}`).toContain(result.code);
        expect(result.stderr, argv.join(" ")).not.toMatch(/\n\s+at /);
      }
    }
  });

  it("train refuses garbage before loading the model, with the errors located", async () => {
    for (const file of files.slice(0, 12)) {
      const result = await runCli([
        "train",
        "--model",
        model,
        "--data",
        file,
        "--output",
        join(dir, "out"),
        "--quantization",
        "none",
        "--epochs",
        "1",
        "--max-seq-length",
        "64",
      ]);
      expect(EXIT_CODES, `${file}\n${result.stderr}`).toContain(result.code);
      expect(result.stderr, file).not.toMatch(/\n\s+at /);
    }
  });

  it("every problem the Validator reports is located: a line, or the file for whole-file problems", async () => {
    for (const file of files) {
      const report = await new Validator({ maxProblems: 10_000 }).validate(file);
      for (const entry of [...report.errors, ...report.warnings]) {
        expect(entry.file ?? entry.line, `${file}: ${entry.code}`).toBeDefined();
        if (
          entry.code !== "too_few_examples" &&
          entry.code !== "empty_file" &&
          entry.code !== "file_too_large"
        )
          expect(entry.line, `${file}: ${entry.code} ${entry.message}`).toBeGreaterThan(0);
      }
      // The Dataset API either yields examples or throws a located error.
      const dataset = await Dataset.fromFile(file);
      await dataset.toArray().then(
        () => undefined,
        (error) => expect(error.location?.file, String(error)).toBe(file),
      );
    }
  });
});
