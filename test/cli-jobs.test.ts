import { setupServer } from "msw/node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { CliIO } from "../src/cli/io.js";
import { run } from "../src/cli/main.js";
import { OPENAI_TEST_API_KEY, openaiFineTuningHandlers } from "../src/testing/openai.js";
import { chatRow, jsonl, tempFile } from "./helpers.js";

const fake = openaiFineTuningHandlers({ baseURL: "http://openai.test/v1" });
const server = setupServer(...fake.handlers);
beforeAll(() =>
  server.listen({
    onUnhandledRequest: (request, print) => {
      if (!request.url.startsWith("data:")) print.error();
    },
  }),
);
afterAll(() => server.close());

async function tunekit(...argv: string[]) {
  let stdout = "";
  let stderr = "";
  const io: CliIO = {
    stdout: (text) => {
      stdout += text;
    },
    stderr: (text) => {
      stderr += text;
    },
    isTTY: false,
    env: { OPENAI_API_KEY: OPENAI_TEST_API_KEY, OPENAI_BASE_URL: "http://openai.test/v1" },
  };
  const code = await run(argv, io);
  return { code, stdout, stderr };
}

describe("tunekit jobs (OpenAI, mocked)", () => {
  it("create --watch validates, uploads, follows the job and ends with the model id", async () => {
    const rows = Array.from({ length: 10 }, (_, index) => chatRow(`q${index}`, `a${index}`, "Be kind."));
    const file = await tempFile("train.jsonl", jsonl(rows));
    const { code, stdout, stderr } = await tunekit(
      "jobs",
      "create",
      "--provider",
      "openai",
      "--model",
      "gpt-4o-mini-2024-07-18",
      "--training",
      file,
      "--epochs",
      "3",
      "--suffix",
      "customer-support",
      "--watch",
      "--poll-interval",
      "0.001",
    );
    expect(stderr).toBe("");
    expect(code).toBe(0);
    expect(stdout).toMatch(/^created ftjob-/);
    expect(stdout).toMatch(/running\s+step \d+\/\d+\s+train loss/);
    expect(stdout).toMatch(/succeeded: ft:gpt-4o-mini-2024-07-18:/);
    expect(stdout).not.toContain(OPENAI_TEST_API_KEY);
  });

  it("create refuses invalid data before uploading, and list / get / events / cancel work", async () => {
    const file = await tempFile("bad.jsonl", jsonl([chatRow()]));
    const refused = await tunekit(
      "jobs",
      "create",
      "--provider",
      "openai",
      "--model",
      "gpt-4o-mini",
      "--training",
      file,
    );
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain("too_few_examples");
    const list = await tunekit("jobs", "list", "--provider", "openai");
    expect(list.code).toBe(0);
    const id = list.stdout.split(/\s+/)[0] as string;
    expect(id).toMatch(/^ftjob-/);
    expect((await tunekit("jobs", "get", id, "--provider", "openai")).stdout).toContain(`${id}: succeeded`);
    expect(
      (await tunekit("jobs", "events", id, "--provider", "openai")).stdout.split("\n").length,
    ).toBeGreaterThan(3);
    expect((await tunekit("jobs", "list")).code).toBe(2);
    expect((await tunekit("jobs", "get", "--provider", "nope", "x")).code).toBe(2);
  });
});
