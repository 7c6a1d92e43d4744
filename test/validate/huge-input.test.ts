/**
 * Bounded work per record: a huge or pathological record costs no more than the limit it is judged
 * by. Each case ends with a located problem well inside vitest's timeout (a hang fails the test).
 */
import { mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { Dataset } from "../../src/data/dataset.js";
import type { Example } from "../../src/data/example.js";
import { ChatRenderer } from "../../src/engine/chat-template.js";
import { LocalTokenizer } from "../../src/engine/tokenizer.js";
import { tokenizeExample } from "../../src/local/tokenize.js";
import { TINY_LLAMA, writeTinyModel } from "../../src/testing/tiny-model.js";
import { countText, LONG_RUN, tiktokenCounter } from "../../src/validate/tokens.js";
import { Validator } from "../../src/validate/validator.js";
import { runCli } from "../cli-helpers.js";
import { chatRow, FIXTURES, HAS_FIXTURES, jsonl, tempDir, tempFile } from "../helpers.js";

const WORDS = "The parcel left the depot on Tuesday, and it should reach you by Friday. ";
const words = (chars: number) => WORDS.repeat(Math.ceil(chars / WORDS.length)).slice(0, chars);

describe("countText: linear in the text, exact where tiktoken's pre-tokens allow", () => {
  it("is exact on ordinary text of any length, cut only before a word's space", async () => {
    for (const encoding of ["o200k_base", "cl100k_base"] as const) {
      const counter = await tiktokenCounter(encoding);
      const { countTokens } = await import(`gpt-tokenizer/encoding/${encoding}`);
      const text = `${words(60_000)}\n\n  indented\tcode(x) {}\n${words(30_000)}`;
      const counted = countText({ count: (piece) => countTokens(piece) }, text);
      expect(counted).toEqual({ tokens: countTokens(text), estimated: false, complete: true });
      expect(counter.count(text)).toBe(countTokens(text));
    }
  });

  it("counts a run longer than LONG_RUN in pieces, marked as an estimate that errs high", async () => {
    const { countTokens } = await import("gpt-tokenizer/encoding/o200k_base");
    const exact = { count: (piece: string) => countTokens(piece) };
    for (const char of ["a", " ", "-", "é", "7", "😀"]) {
      const run = char.repeat(6 * LONG_RUN);
      const counted = countText(exact, `hello ${run} world`);
      expect(counted.estimated, JSON.stringify(char)).toBe(true);
      expect(counted.tokens).toBeGreaterThanOrEqual(countTokens(`hello ${run} world`));
      expect(counted.tokens).toBeLessThanOrEqual(countTokens(`hello ${run} world`) + 12);
    }
  });

  it("stops once past a budget", () => {
    let counted = 0;
    const counter = {
      count: (piece: string) => {
        counted += piece.length;
        return piece.split(" ").length;
      },
    };
    const result = countText(counter, words(10_000_000), 1000);
    expect(result.complete).toBe(false);
    expect(result.tokens).toBeGreaterThan(1000);
    expect(counted).toBeLessThan(100_000);
  });

  it("a 400 KB run of one character (a minute before) is counted in well under a second", async () => {
    const counter = await tiktokenCounter("o200k_base");
    for (const char of ["a", " ", "-"]) {
      const started = performance.now();
      expect(counter.count(char.repeat(400_000))).toBeGreaterThan(0);
      // Not a timing test: the guard is vitest's timeout; this prints what it took.
      console.log(`400 KB of ${JSON.stringify(char)}: ${(performance.now() - started).toFixed(0)} ms`);
    }
  });
});

describe("Validator on huge records", () => {
  it("OpenAI: a 400 KB run is counted and marked approximate", async () => {
    const file = await tempFile(
      "run.jsonl",
      jsonl([chatRow("hi", "a".repeat(400_000)), ...Array.from({ length: 9 }, () => chatRow())]),
    );
    const report = await new Validator({ model: "gpt-4o-mini-2024-07-18" }).validate(file);
    expect(report.ok).toBe(true);
    expect(report.stats.approximate).toBe(1);
    expect(report.stats.totalTokens.max).toBeGreaterThan(50_000);
  });

  it("OpenAI: counting a huge record stops at four times the limit, reported as a lower bound", async () => {
    const file = await tempFile(
      "huge.jsonl",
      jsonl([chatRow("hi", words(5_000_000)), ...Array.from({ length: 9 }, () => chatRow())]),
    );
    const report = await new Validator({ model: "gpt-4o-mini-2024-07-18" }).validate(file);
    const tooLong = report.warnings.find((entry) => entry.code === "example_too_long");
    expect(tooLong).toMatchObject({ line: 1, file });
    expect(tooLong?.message).toMatch(/^at least \d+ tokens, over the 65536-token limit/);
    expect(report.stats.totalTokens.max).toBeLessThan(4 * 65536 + 20_000);
    expect(report.cost.billedTokens).toBe(65536 + 9 * report.stats.totalTokens.min);
  });

  it("a record over maxRecordBytes is one located error; the rest is still checked", async () => {
    const file = await tempFile(
      "big.jsonl",
      jsonl([chatRow("hi", "x".repeat(3000)), ...Array.from({ length: 10 }, () => chatRow())]),
    );
    const report = await new Validator().validate(file, { maxRecordBytes: 2048 });
    expect(report.errors.map((entry) => `${entry.line}:${entry.code}`)).toEqual(["1:record_too_long"]);
    expect(report.valid).toBe(10);
  });
});

describe("local target: tokenizes only what the trainer keeps", () => {
  let model: string;
  beforeAll(async () => {
    model = await writeTinyModel(join(await mkdtemp(join(tmpdir(), "tunekit-huge-")), "tiny"), TINY_LLAMA);
  });

  const capped = async (dir: string, examples: Example[], maxTokens: number) => {
    const renderer = new ChatRenderer(await LocalTokenizer.fromFolder(dir));
    for (const example of examples) {
      const whole = tokenizeExample(example, renderer);
      const cut = tokenizeExample(example, renderer, { maxTokens });
      expect(cut?.capped).toBe(true);
      expect(cut?.inputIds.slice(0, maxTokens)).toEqual(whole?.inputIds.slice(0, maxTokens));
      expect(cut?.labels.slice(0, maxTokens)).toEqual(whole?.labels.slice(0, maxTokens));
    }
  };
  const examples = (chars: number): Example[] => [
    { kind: "text", text: words(chars) },
    { kind: "completion", prompt: words(chars / 2), completion: words(chars) },
    {
      kind: "chat",
      messages: [
        { role: "system", content: "Be brief." },
        { role: "user", content: words(300) },
        { role: "assistant", content: words(chars) },
        { role: "user", content: words(chars) },
        { role: "assistant", content: "Bye." },
      ],
    },
  ];

  it("a cut example's first maxTokens tokens and labels are the whole example's (tiny model)", async () => {
    await capped(model, examples(40_000), 200);
  });

  it.skipIf(!HAS_FIXTURES)("the same with stories260K's SentencePiece tokenizer", async () => {
    await capped(join(FIXTURES, "stories260K-hf"), examples(40_000), 512);
  });

  it("a 5 MB record: one warning naming the cut, not gigabytes of tokens", async () => {
    const file = await tempFile("words.jsonl", jsonl([chatRow("hi", words(5_000_000))]));
    const report = await new Validator({ target: "local", model }).validate(file);
    expect(report.ok).toBe(true);
    const tooLong = report.warnings.find((entry) => entry.code === "example_too_long");
    expect(tooLong).toMatchObject({ line: 1 });
    expect(tooLong?.message).toMatch(/^at least \d+ tokens, over the \d+-token limit/);
    expect(report.stats.approximate).toBe(1);
  });
});

describe("the same guard through every command", () => {
  let model: string;
  let file: string;
  beforeAll(async () => {
    model = await writeTinyModel(join(await mkdtemp(join(tmpdir(), "tunekit-huge-")), "tiny"), TINY_LLAMA);
    file = join(model, "..", "line.jsonl");
    await writeFile(file, jsonl([chatRow("hi", words(4000)), chatRow()]));
  });
  const limit = ["--max-record-bytes", "1024"];

  it("validate and convert report the line and exit 1; stats counts the rest and points to it", async () => {
    for (const [argv, code] of [
      [["validate", file, "--target", "local", "--model", model], 1],
      [["stats", file], 0],
      [["convert", file, join(await tempDir(), "out.jsonl"), "--to", "chat"], 1],
    ] as const) {
      const result = await runCli([...argv, ...limit]);
      expect(result.code, argv[0]).toBe(code);
      expect(`${result.stdout}${result.stderr}`, argv[0]).toMatch(/(line 1|\.jsonl:1).*over the 1 KiB limit/);
    }
  });

  it("a 50 MB line with the default limit: validate, stats, convert and train report it and exit 1", async () => {
    const big = join(model, "..", "big.jsonl");
    await writeFile(big, `${JSON.stringify(chatRow("hi", words(50_000_000)))}\n`);
    const out = join(model, "..", "out.jsonl");
    for (const argv of [
      ["validate", big],
      ["validate", big, "--target", "local", "--model", model],
      ["stats", big],
      ["convert", big, out, "--to", "chat"],
      [
        "train",
        "--model",
        model,
        "--data",
        big,
        "--output",
        join(model, "..", "run"),
        "--quantization",
        "none",
      ],
    ]) {
      const result = await runCli(argv);
      expect(result.code, argv.join(" ")).toBe(1);
      expect(`${result.stdout}${result.stderr}`, argv[0]).toMatch(
        /(line 1|\.jsonl:1): record is 47\.7 MiB \(\d+ bytes\), over the 16 MiB limit \(maxRecordBytes\); skipped unread/,
      );
    }
  });

  it("through the CLI: validate on a 400 KB run and train on a 5 MB record end normally, saying so", async () => {
    const run = join(model, "..", "run.jsonl");
    await writeFile(run, jsonl([chatRow("hi", "a".repeat(400_000))]));
    const validated = await runCli(["validate", run, "--target", "together"]);
    expect(validated.code).toBe(0);
    expect(validated.stdout).toContain("token counts approximate for 1 example");
    const words5 = join(model, "..", "words.jsonl");
    await writeFile(words5, jsonl([chatRow("hi", words(5_000_000))]));
    const trained = await runCli([
      "train",
      "--model",
      model,
      "--data",
      words5,
      "--output",
      join(model, "..", "out5"),
      "--epochs",
      "1",
      "--quantization",
      "none",
    ]);
    expect(trained.code, trained.stderr).toBe(0);
    expect(trained.stdout).toMatch(/at least \d+ tokens, over the \d+-token limit/);
    expect(trained.stdout).toMatch(/^plan: 1 example \(1 truncated\)/m);
  });

  it("Dataset iteration throws the located error", async () => {
    const dataset = await Dataset.fromFile(file, { maxRecordBytes: 1024 });
    await expect(dataset.toArray()).rejects.toMatchObject({
      code: "record_too_long",
      location: { file, line: 1 },
    });
  });
});
