import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { beforeAll, describe, expect, it } from "vitest";
import { chatRow, FIXTURES, HAS_FIXTURES, jsonl, ROOT, tempDir, tempFile } from "./helpers.js";

const CLI = join(ROOT, "dist/cli/index.js");

async function tunekit(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [CLI, ...args]);
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code: number; stdout: string; stderr: string };
    return { code: failed.code, stdout: failed.stdout, stderr: failed.stderr };
  }
}

const ten = Array.from({ length: 10 }, (_, index) =>
  chatRow(`question ${index}`, `answer ${index}`, "You are helpful."),
);

beforeAll(() => {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build\` first (npm test does)`);
});

describe("tunekit validate", () => {
  it("prints a readable report and exits 0 for a good file", async () => {
    const file = await tempFile("good.jsonl", jsonl(ten));
    const { code, stdout } = await tunekit("validate", file);
    expect(code).toBe(0);
    expect(stdout).toContain("10 examples, 10 valid, 0 errors, 0 warnings");
    expect(stdout).toContain("gpt-4o-mini-2024-07-18 (o200k_base, limit 65,536 tokens)");
    expect(stdout).toMatch(/Cost: [\d,]+ tokens an epoch × 10 epochs/);
    expect(stdout).toContain("OK: no errors.");
  });

  it("--json prints one JSON object with the documented shape; exit 1 on errors", async () => {
    const file = await tempFile(
      "bad.jsonl",
      `${jsonl(ten.slice(0, 3))}{"messages": [{"role": "robot", "content": "x"}]}\nnot json\n`,
    );
    const { code, stdout } = await tunekit("validate", file, "--json", "--model", "gpt-3.5-turbo");
    expect(code).toBe(1);
    const report = JSON.parse(stdout);
    expect(Object.keys(report)).toEqual(
      expect.arrayContaining(["examples", "errors", "warnings", "counts", "stats", "cost"]),
    );
    expect(Object.keys(report.stats)).toEqual(
      expect.arrayContaining([
        "missingSystem",
        "missingUser",
        "overLimit",
        "messages",
        "totalTokens",
        "assistantTokens",
      ]),
    );
    for (const key of ["messages", "totalTokens", "assistantTokens"]) {
      expect(Object.keys(report.stats[key]).sort()).toEqual(["max", "mean", "median", "min", "p10", "p90"]);
    }
    expect(Object.keys(report.cost)).toEqual(
      expect.arrayContaining(["billedTokens", "epochs", "totalTokens"]),
    );
    expect(report.model).toBe("gpt-3.5-turbo-0125");
    expect(report.examples).toBe(5);
    expect(
      report.errors.map((problem: { line?: number; code: string }) => [problem.line, problem.code]),
    ).toEqual([
      [4, "unrecognized_role"],
      [4, "example_missing_assistant_message"],
      [5, "invalid_json"],
      [undefined, "too_few_examples"],
    ]);
    expect(report.errors[0]).toEqual({
      code: "unrecognized_role",
      message: 'role must be one of system, developer, user, assistant, tool, function, got "robot"',
      severity: "error",
      file,
      line: 4,
      path: "messages[0].role",
    });
  });

  it("--target together applies Together's rules", async () => {
    const file = await tempFile("t.jsonl", jsonl([{ messages: [{ role: "assistant", content: "x" }] }]));
    const { code, stdout } = await tunekit("validate", file, "--target", "together", "--json");
    expect(code).toBe(1);
    expect(JSON.parse(stdout).counts).toEqual({ roles_not_alternating: 1 });
  });

  it("exit 2 on a usage error", async () => {
    expect((await tunekit("validate")).code).toBe(2);
    expect((await tunekit("validate", "x.jsonl", "--target", "nope")).code).toBe(2);
    expect((await tunekit("validate", "x.jsonl", "--bogus")).code).toBe(2);
    expect((await tunekit("frobnicate")).code).toBe(2);
    const missing = await tunekit("validate", "/no/such/file.jsonl");
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain("/no/such/file.jsonl: no such file");
  });

  it.skipIf(!HAS_FIXTURES)("reports the Cookbook's toy file", async () => {
    const { code, stdout } = await tunekit(
      "validate",
      join(FIXTURES, "openai-cookbook/toy_chat_fine_tuning.jsonl"),
    );
    expect(code).toBe(1);
    expect(stdout).toContain("openai needs at least 10 examples, the data has 5 [too_few_examples]");
    expect(stdout).toContain("missing a system message: 1   missing a user message: 1");
  });
});

describe("tunekit convert and stats", () => {
  it("converts between formats through a temporary file", async () => {
    const input = await tempFile(
      "guide.jsonl",
      jsonl([{ system: "s", turns: [{ user: "u", assistant: "a" }] }]),
    );
    const output = join(await tempDir(), "out.jsonl");
    const { code, stdout } = await tunekit("convert", input, output, "--to", "sharegpt");
    expect(code).toBe(0);
    expect(stdout).toContain("wrote 1 example ");
    expect(JSON.parse(await readFile(output, "utf8"))).toEqual({
      conversations: [
        { from: "system", value: "s" },
        { from: "human", value: "u" },
        { from: "gpt", value: "a" },
      ],
    });
    expect((await tunekit("convert", input, output)).code).toBe(2);
    expect((await tunekit("convert", input, output, "--to", "xml")).code).toBe(2);
  });

  it("prints statistics, as text or JSON", async () => {
    const file = await tempFile("s.jsonl", jsonl(ten));
    const text = await tunekit("stats", file);
    expect(text.code).toBe(0);
    expect(text.stdout).toContain("10 examples, 0 invalid records");
    const json = JSON.parse((await tunekit("stats", file, "--json")).stdout);
    expect(json).toMatchObject({ examples: 10, kinds: { chat: 10 }, tokenizer: "o200k_base" });
    expect(json.tokens.messages.mean).toBe(3);
  });
});
