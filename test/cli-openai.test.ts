/** `tunekit openai inventory` and a refused `tunekit jobs create`, against the OpenAI fake. */
import { setupServer } from "msw/node";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  OPENAI_TEST_API_KEY,
  openaiFineTuningHandlers,
  releaseResponseCopies,
} from "../src/testing/openai.js";
import { runCli } from "./cli-helpers.js";
import { chatRow, jsonl, tempFile } from "./helpers.js";

const BASE = "http://openai.test/v1";
const TRAINING = jsonl(Array.from({ length: 10 }, (_, index) => chatRow(`q${index}`, `a${index}`)));
const server = setupServer();
releaseResponseCopies(server);
beforeAll(() =>
  server.listen({
    onUnhandledRequest: (request, print) => {
      if (!request.url.startsWith("data:")) print.error();
    },
  }),
);
afterEach(() => server.resetHandlers());
afterAll(() => server.close());

const tunekit = (...argv: string[]) =>
  runCli(argv, { env: { OPENAI_API_KEY: OPENAI_TEST_API_KEY, OPENAI_BASE_URL: BASE } });

describe("tunekit openai inventory", () => {
  it("prints each fine-tune, soonest gone first, with its files; --json gives the same as data", async () => {
    const fake = openaiFineTuningHandlers({
      baseURL: BASE,
      fineTunes: [
        {
          model: "gpt-4o-mini-2024-07-18",
          suffix: "support",
          training: TRAINING,
          validation: jsonl([chatRow()]),
        },
        { model: "gpt-4.1-nano-2025-04-14", suffix: "old", training: TRAINING },
      ],
      refusedContentPurposes: ["fine-tune"],
    });
    server.use(...fake.handlers);
    const { code, stdout, stderr } = await tunekit("openai", "inventory");
    expect(stderr).toBe("");
    expect(code).toBe(0);
    const [nano, mini] = stdout.split("\n\n");
    expect(nano).toMatch(/^ft:gpt-4\.1-nano-2025-04-14:personal:old:/);
    expect(nano).toContain("shut down on 2026-10-23 (from tunekit's table)");
    expect(mini).toMatch(/^ft:gpt-4o-mini-2024-07-18:personal:support:/);
    expect(mini).toMatch(/shuts? down on 2027-01-14/);
    expect(mini).toMatch(/job ftjob-\w+: 3 epochs, batch size 1, learning rate × 2/);
    expect(mini).toContain("train.jsonl");
    expect(mini).toContain("not downloadable (Not allowed to download files of purpose: fine-tune");
    expect(stdout).toContain("2 fine-tuned models, 2 shut down within 90 days or already.");
    expect(stdout).not.toContain(OPENAI_TEST_API_KEY);

    const json = await tunekit("openai", "inventory", "--json");
    expect(json.code).toBe(0);
    const items = JSON.parse(json.stdout) as Array<{
      model: string;
      daysLeft: number;
      trainingFile: unknown;
    }>;
    expect(items.map((item) => item.model)).toEqual([nano?.split("\n")[0], mini?.split("\n")[0]]);
    expect(items[1]?.trainingFile).toMatchObject({ filename: "train.jsonl", downloadable: false });
  });

  it("needs a key, and says so; a wrong action is a usage error", async () => {
    const missing = await runCli(["openai", "inventory"], { env: {} });
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain("OPENAI_API_KEY");
    const wrong = await tunekit("openai", "inventroy");
    expect(wrong.code).toBe(2);
    expect(wrong.stderr).toContain("openai inventory");
  });
});

describe("tunekit jobs create, refused by the wind-down", () => {
  it("prints why and the one-line alternatives, and exits 1", async () => {
    server.use(...openaiFineTuningHandlers({ baseURL: BASE, jobCreation: "closed" }).handlers);
    const file = await tempFile("train.jsonl", TRAINING);
    const { code, stderr } = await tunekit(
      "jobs",
      "create",
      "--provider",
      "openai",
      "--model",
      "gpt-4o-mini-2024-07-18",
      "--training",
      file,
    );
    expect(code).toBe(1);
    expect(stderr).toContain("OpenAI refused to create the fine-tuning job");
    expect(stderr).toContain("provider: together()");
    expect(stderr).toContain("provider: local()");
    expect(stderr).not.toContain(OPENAI_TEST_API_KEY);
  });
});

describe("tunekit record", () => {
  it("records a fine-tune's answers with a cost estimate and a progress line, and goes on where it stopped", async () => {
    // OpenAI's own address (no OPENAI_BASE_URL): its fine-tunes are priced.
    const fake = openaiFineTuningHandlers({
      fineTunes: [{ suffix: "support", training: TRAINING }],
      chatReply: ({ messages }) => `kept: ${(messages.at(-1) as { content?: string }).content}`,
    });
    server.use(...fake.handlers);
    const tunekit = (...argv: string[]) => runCli(argv, { env: { OPENAI_API_KEY: OPENAI_TEST_API_KEY } });
    const listed = await tunekit("openai", "inventory", "--json");
    expect(listed.stderr).toBe("");
    const inventory = JSON.parse(listed.stdout) as Array<{ model: string }>;
    const model = inventory[0]?.model as string;
    const cases = await tempFile(
      "cases.jsonl",
      jsonl(Array.from({ length: 5 }, (_, index) => ({ id: `q${index}`, input: `question ${index}` }))),
    );
    const out = cases.replace(/cases\.jsonl$/, "recording.jsonl");
    const first = await tunekit("record", "--target", `openai:${model}`, "--cases", cases, "--out", out);
    expect(first.stderr).toBe("");
    expect(first.code).toBe(0);
    expect(first.stdout).toContain(`recording 5 cases from ${model}`);
    expect(first.stdout).toMatch(
      /estimated cost: \$0\.\d+ \(\d+ input tokens at \$0\.3\/1M, at most 5,120 output tokens at \$1\.2\/1M\)/,
    );
    expect(first.stdout).toContain("[##############################] 5/5");
    expect(first.stdout).toContain(`recorded 5 cases → ${out}`);
    const again = await tunekit("record", "--target", `openai:${model}`, "--cases", cases, "--out", out);
    expect(again.code).toBe(0);
    expect(again.stdout).toContain("recording 0 cases");
    expect(again.stdout).toContain("recorded 0 cases, 5 from before");
    const bad = await tunekit("record", "--target", `openai:${model}`, "--cases", cases);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain("record needs --out");
  });
});

describe("tunekit validate --target openai", () => {
  it("prints the wind-down and the model's shutdown as notices, apart from the data's problems", async () => {
    const file = await tempFile("train.jsonl", TRAINING);
    const { code, stdout } = await tunekit("validate", file, "--target", "openai", "--model", "gpt-4o-mini");
    expect(code).toBe(0);
    expect(stdout).toMatch(
      /Notices:\n {2}(warning|error): OpenAI .* \[fine_tuning_closing\]\n {2}(warning|error): gpt-4o-mini-2024-07-18 shuts? down on 2027-01-14/,
    );
    const json = JSON.parse((await tunekit("validate", file, "--target", "openai", "--json")).stdout);
    expect(json.notices.map((notice: { code: string }) => notice.code)).toEqual([
      "fine_tuning_closing",
      "model_shutdown",
    ]);
  });
});
