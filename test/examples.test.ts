import { execFile } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { HAS_FIXTURES, ROOT } from "./helpers.js";

describe("examples", () => {
  it("01-prepare-data converts the guide's data, reports the 10-example minimum, and passes the support set", async () => {
    const { stdout } = await promisify(execFile)(
      process.execPath,
      ["--import", "tsx", join(ROOT, "examples/01-prepare-data.ts")],
      {
        cwd: ROOT,
      },
    );
    expect(stdout).toContain("wrote 2 conversations");
    expect(stdout).toContain("error too_few_examples: openai needs at least 10 examples, the data has 2");
    expect(stdout).toContain("36 examples, 36 valid");
    expect(stdout).toMatch(/== examples\/data\/customer-support\.jsonl[\s\S]*OK: ready to upload/);
  });

  it("02-openai-finetune runs the guide's OpenAI section offline against the fake", async () => {
    const env = { ...process.env };
    delete env.OPENAI_API_KEY;
    const { stdout } = await promisify(execFile)(
      process.execPath,
      ["--import", "tsx", join(ROOT, "examples/02-openai-finetune.ts")],
      {
        cwd: ROOT,
        env,
      },
    );
    expect(stdout).toContain("running against the offline OpenAI fake");
    expect(stdout).toMatch(/fine-tuned model: ft:gpt-4o-mini-2024-07-18:[^:]*:customer-support:/);
    expect(stdout).toContain("status: succeeded");
  });

  it.skipIf(!HAS_FIXTURES)(
    "04-local-generate runs the fixture model greedy, sampled, streamed and in NF4",
    async () => {
      const { stdout } = await promisify(execFile)(
        process.execPath,
        ["--import", "tsx", join(ROOT, "examples/04-local-generate.ts")],
        { cwd: ROOT },
      );
      expect(stdout).toMatch(/engine: (scalar|avx2|avx512) kernels/);
      expect(stdout).toContain("greedy (length): Once upon a time");
      expect(stdout).toMatch(/streamed: Tom and Lily[^.]*\n/);
      expect(stdout).toMatch(/nf4 linear weights: \d+ bytes \(14\.1% of 906240\)/);
    },
  );

  it.skipIf(!HAS_FIXTURES)(
    "03-local-qlora trains an adapter on the fixture and the tuned model gives the replies",
    async () => {
      const { stdout } = await promisify(execFile)(
        process.execPath,
        ["--import", "tsx", join(ROOT, "examples/03-local-qlora.ts")],
        { cwd: ROOT, timeout: 120_000 },
      );
      expect(stdout).toMatch(/training: 3 examples, 150 steps/);
      expect(stdout).toMatch(/adapter \(PEFT format\): .*adapter/);
      expect(stdout).toContain("tuned: My friend is a big red dog.");
      expect(stdout).toContain("tuned: I live in a small house.");
    },
    120_000,
  );
});
