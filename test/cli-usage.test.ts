/**
 * The CLI speaks clearly: one line for a usage error and where to read more, flags checked by
 * tunekit (with negative numbers where they mean something), every hint a command that runs.
 */
import { readFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { TINY_LLAMA, writeTinyModel } from "../src/testing/tiny-model.js";
import { runCli } from "./cli-helpers.js";
import { chatRow, jsonl, ROOT, tempDir, tempFile } from "./helpers.js";

const tunekit = (...argv: string[]) => runCli(argv);

/** A usage error: exit 2, one line and a pointer to --help, never the whole usage text. */
function expectUsage(
  result: { code: number; stderr: string; stdout: string },
  message: string,
  command = "",
) {
  expect(result.code).toBe(2);
  expect(result.stderr).toBe(`tunekit: ${message}\nSee \`tunekit ${command ? `${command} ` : ""}--help\`.\n`);
  expect(result.stdout).toBe("");
}

describe("usage errors are one line and a pointer", () => {
  it("unknown flags, with the nearest known one", async () => {
    const file = await tempFile("a.jsonl", jsonl([chatRow()]));
    expectUsage(
      await tunekit("validate", file, "--modle", "x"),
      "unknown option --modle for validate; did you mean --model?",
      "validate",
    );
    expectUsage(
      await tunekit("validate", file, '--bogus="a'),
      "unknown option --bogus for validate",
      "validate",
    );
    expectUsage(await tunekit("validate", file, "-x"), "unknown option -x for validate", "validate");
    expectUsage(await tunekit("valdate", file), 'unknown command "valdate"; did you mean validate?');
    expectUsage(
      await tunekit("train", "--model", "m", "--data", file, "--lora-rank", "8"),
      "unknown option --lora-rank for train; did you mean --lora-r?",
      "train",
    );
  });

  it("values are checked by tunekit, with the range and what was given", async () => {
    const file = await tempFile("a.jsonl", jsonl([chatRow()]));
    const train = ["train", "--model", "m", "--data", file];
    expectUsage(await tunekit(...train, "--lr", "-1"), '--lr takes a number > 0, got "-1"', "train");
    expectUsage(
      await tunekit(...train, "--epochs", "1.5"),
      '--epochs takes a whole number >= 1, got "1.5"',
      "train",
    );
    expectUsage(
      await tunekit(...train, "--seed", "-3"),
      '--seed takes a whole number >= 0, got "-3"',
      "train",
    );
    expectUsage(await tunekit(...train, "--epochs"), "--epochs needs a value", "train");
    expectUsage(
      await tunekit(...train, "--compute-dtype", "fp16"),
      '--compute-dtype: unknown "fp16"; use f32 or bf16',
      "train",
    );
    expectUsage(
      await tunekit("serve", "--model", "m", "--compute-dtype", "f16"),
      '--compute-dtype: unknown "f16"; use f32 or bf16',
      "serve",
    );
    expectUsage(await tunekit(...train, "--epochs", "--json"), "--epochs needs a value", "train");
    expectUsage(await tunekit(...train, "--resume="), "--resume needs a value", "train");
    expectUsage(
      await tunekit("validate", file, "--max-problems", "0"),
      '--max-problems takes a whole number >= 1, got "0"',
      "validate",
    );
    expectUsage(
      await tunekit("validate", file, "--max-record-bytes", "lots"),
      '--max-record-bytes takes a size > 0 in bytes (or with KB, KiB, MB, MiB), got "lots"',
      "validate",
    );
    expectUsage(
      await tunekit("validate", file, "--target", "local"),
      "--target local needs --model PATH|HUB_ID (the model whose tokenizer counts the tokens)",
      "validate",
    );
    expectUsage(await tunekit("validate"), "validate takes FILE, got none", "validate");
  });

  it("--version, and --help for each command", async () => {
    const { version } = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8"));
    expect(await tunekit("--version")).toEqual({ code: 0, stdout: `${version}\n`, stderr: "" });
    for (const command of ["validate", "convert", "stats", "train", "jobs"]) {
      const help = await tunekit(command, "--help");
      expect(help.code, command).toBe(0);
      expect(help.stdout, command).toMatch(new RegExp(`^Usage: tunekit ${command} `));
    }
    const all = await tunekit("help");
    expect(all.stdout).toContain("Exit codes: 0 done, 1 bad data or a failed job, 2 a wrong");
  });

  it("a missing key names the variable and the flag", async () => {
    expectUsage(
      await tunekit("jobs", "list", "--provider", "openai"),
      "no OpenAI API key: set OPENAI_API_KEY in the environment, or pass --api-key KEY",
      "jobs",
    );
    expectUsage(
      await tunekit("jobs", "list", "--provider", "together"),
      "no Together API key: set TOGETHER_API_KEY in the environment, or pass --api-key KEY",
      "jobs",
    );
    expectUsage(
      await tunekit("jobs", "list", "--provider", "local"),
      "--provider local needs --output DIR (the folder its jobs are kept in)",
      "jobs",
    );
  });
});

describe("jobs --provider local", () => {
  it("create trains here (and watches); list, get and events read the jobs recorded in --output", async () => {
    const dir = await tempDir();
    const model = await writeTinyModel(join(dir, "tiny"), TINY_LLAMA);
    const data = await tempFile("t.jsonl", jsonl([chatRow("a", "b"), chatRow("c", "d")]));
    const jobs = join(dir, "jobs");
    const local = ["--provider", "local", "--output", jobs];
    const created = await tunekit(
      "jobs",
      "create",
      ...local,
      "--model",
      model,
      "--training",
      data,
      "--epochs",
      "1",
      "--poll-interval",
      "0.01",
    );
    expect(created.code, created.stderr).toBe(0);
    const id = /^created (ftjob-local-\w+)/.exec(created.stdout)?.[1] as string;
    expect(id).toBeDefined();
    expect(created.stdout).toContain("Training started: 2 examples");
    expect(created.stdout).toMatch(/over 1 epoch\b/);
    const listed = await tunekit("jobs", "list", ...local);
    expect(listed.code).toBe(0);
    expect(listed.stdout).toMatch(new RegExp(`^${id}\\s+succeeded`));
    expect((await tunekit("jobs", "get", id, ...local)).stdout).toContain(`${id}: succeeded`);
    expect((await tunekit("jobs", "events", id, ...local)).stdout).toContain("Training finished");
    expect((await tunekit("jobs", "list", "--provider", "local", "--output", join(dir, "none"))).stdout).toBe(
      "no jobs\n",
    );
  });
});

describe("words and counts", () => {
  it("plurals are right", async () => {
    // One example, a blank line (a warning) and OpenAI's minimum of ten (an error).
    const one = await tempFile("one.jsonl", `${jsonl([chatRow()])}\n`);
    const { stdout } = await tunekit("validate", one);
    expect(stdout).toMatch(/^1 example, 1 valid, 1 error, 1 warning$/m);
  });

  it("stats prints each table row once", async () => {
    const file = await tempFile("a.jsonl", jsonl([chatRow(), chatRow("b", "c")]));
    const { stdout, code } = await tunekit("stats", file);
    expect(code).toBe(0);
    expect(stdout.match(/^\s+messages\s/gm)).toHaveLength(1);
    expect(stdout).toContain("2 examples, 0 invalid records");
  });
});

describe("stats and convert: garbage is not success", () => {
  it("stats on a binary file or an empty one exits 1 with the first problems located", async () => {
    const binary = await tempFile("blob.jsonl", new Uint8Array([0x00, 0xff, 0x10, 0x0a, 0x80, 0x81, 0x0a]));
    const result = await tunekit("stats", binary);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`tunekit: ${binary} has no valid record`);
    expect(result.stderr).toContain(`${binary}:1: not valid UTF-8 text [invalid_utf8]`);
    expect(result.stdout).toBe("");
    const empty = await tempFile("empty.jsonl", "");
    const none = await tunekit("stats", empty);
    expect(none.code).toBe(1);
    expect(none.stderr).toContain(`${empty}: the file holds no records [empty_file]`);
  });

  it("convert writes JSONL or a JSON array, and refuses other names", async () => {
    const input = await tempFile("in.jsonl", jsonl([chatRow("a", "b"), chatRow("c", "d")]));
    const dir = await tempDir();
    expectUsage(
      await tunekit("convert", input, join(dir, "out.csv"), "--to", "chat"),
      `cannot write ${join(dir, "out.csv")}: convert writes JSON Lines (.jsonl) or a JSON array (.json), not .csv`,
      "convert",
    );
    const array = await tunekit("convert", input, join(dir, "out.json"), "--to", "completion");
    expect(array.code).toBe(0);
    expect(array.stdout).toContain("wrote 2 examples");
    expect(JSON.parse(await readFile(join(dir, "out.json"), "utf8"))).toEqual([
      { prompt: "a", completion: "b" },
      { prompt: "c", completion: "d" },
    ]);
  });

  it("--skip-unfit skips what the format cannot hold, counting and locating them", async () => {
    const multi = {
      messages: [
        { role: "user", content: "a" },
        { role: "assistant", content: "b" },
        { role: "user", content: "c" },
        { role: "assistant", content: "d" },
      ],
    };
    const input = await tempFile("in.jsonl", jsonl([chatRow("q", "r"), multi, chatRow("s", "t")]));
    const out = join(await tempDir(), "out.jsonl");
    const refused = await tunekit("convert", input, out, "--to", "completion");
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(
      new RegExp(`^tunekit: ${input}:2: cannot be written as completion: .*skipUnfit`),
    );
    const skipped = await tunekit("convert", input, out, "--to", "completion", "--skip-unfit");
    expect(skipped.code).toBe(0);
    expect(skipped.stdout).toContain("wrote 2 examples");
    expect(skipped.stdout).toContain("skipped 1 example that completion cannot hold; the first:");
    expect(skipped.stdout).toContain(`  ${input}:2: cannot be written as completion`);
    expect((await readFile(out, "utf8")).trim().split("\n")).toHaveLength(2);
  });
});

describe("hints that run", () => {
  it("train's pointer to the rest of the warnings is a command that runs", async () => {
    const model = await writeTinyModel(join(await tempDir(), "tiny"), TINY_LLAMA);
    // Seven examples with an unknown key: seven warnings, five shown, a pointer to the rest.
    const rows = Array.from({ length: 7 }, (_, index) => ({
      ...chatRow(`q${index}`, `a${index}`),
      note: "x",
    }));
    const data = await tempFile("train.jsonl", jsonl(rows));
    const output = join(await tempDir(), "out");
    const args = ["train", "--model", model, "--data", data, "--output", output, "--quantization", "none"];
    const result = await runCli([...args, "--epochs", "1", "--max-seq-length", "64"]);
    expect(result.code, result.stderr).toBe(0);
    const hint = /`(tunekit validate [^`]+)` lists them/.exec(result.stdout)?.[1];
    expect(hint).toBeDefined();
    const rerun = await runCli((hint as string).split(" ").slice(1));
    expect(rerun.code, rerun.stderr).toBe(0);
    expect(rerun.stdout.match(/unrecognized_key\]/g)).toHaveLength(7);
  });

  it("train --max-seq-length 5 says why nothing is left, before loading the model", async () => {
    const model = await writeTinyModel(join(await tempDir(), "tiny"), TINY_LLAMA);
    const data = await tempFile("train.jsonl", jsonl([chatRow("a long question", "a long answer")]));
    const result = await tunekit("train", "--model", model, "--data", data, "--max-seq-length", "5");
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(
      /^tunekit: nothing to train on in .*train\.jsonl: no example has a trained token within --max-seq-length 5 \(the first: .*:1: none of its trained tokens is within the 5-token limit/,
    );
    expect(result.stdout).not.toContain("loading");
  });
});
