import { setupServer } from "msw/node";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { OPENAI_TEST_API_KEY, openaiFineTuningHandlers } from "../src/testing/openai.js";
import { togetherFineTuningHandlers } from "../src/testing/together.js";
import { runCli } from "./cli-helpers.js";
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

const cli = (env: Record<string, string>, ...argv: string[]) => runCli(argv, { env });

const tunekit = (...argv: string[]) =>
  cli({ OPENAI_API_KEY: OPENAI_TEST_API_KEY, OPENAI_BASE_URL: "http://openai.test/v1" }, ...argv);

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
    // The base model's shutdown (2027-01-14) is under 90 days from this test's days on.
    expect(stderr).toMatch(/^warning: gpt-4o-mini-2024-07-18 shuts? down on 2027-01-14.*\n$/);
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

const TOGETHER_KEY = "tgp_v1_cliSecretKeyThatMustNeverLeak0123456789";
const TOGETHER_BASE = "http://together.test/v1";

const togetherCli = (env: Record<string, string>, ...argv: string[]) =>
  cli({ TOGETHER_BASE_URL: TOGETHER_BASE, ...env }, ...argv);

describe("tunekit jobs (Together, mocked)", () => {
  const rows = Array.from({ length: 10 }, (_, index) => chatRow(`q${index}`, `a${index}`, "Be kind."));
  const model = "meta-llama/Meta-Llama-3.1-8B-Instruct-Reference";

  it("create --watch uploads, follows the job to its model; watch and cancel work on an id", async () => {
    const together = togetherFineTuningHandlers({
      apiKey: TOGETHER_KEY,
      baseURL: TOGETHER_BASE,
      statuses: ["pending", "queued", "running", "running", "completed"],
    });
    server.use(...together.handlers);
    const env = { TOGETHER_API_KEY: TOGETHER_KEY };
    const file = await tempFile("train.jsonl", jsonl(rows));
    const created = await togetherCli(
      env,
      ...["jobs", "create", "--provider", "together", "--model", model, "--training", file],
      ...["--epochs", "2", "--suffix", "support", "--watch", "--poll-interval", "0.001"],
    );
    expect(created.stderr).toBe("");
    expect(created.code).toBe(0);
    expect(created.stdout).toMatch(/^created ft-/);
    expect(created.stdout).toMatch(/running\s+step \d+\/10\s+train loss \d\.\d{4}/);
    expect(created.stdout).toMatch(/succeeded: \S+support/);
    const id = created.stdout.match(/^created (ft-\S+)/)?.[1] as string;
    expect(together.state.jobRequests.get(id)).toMatchObject({ model, n_epochs: 2, suffix: "support" });

    // A second job, watched by id from another process's point of view, then one cancelled.
    const started = await togetherCli(
      env,
      ...["jobs", "create", "--provider", "together", "--model", model, "--training", file],
    );
    expect(started.code).toBe(0);
    const second = started.stdout.match(/^created (ft-\S+)/)?.[1] as string;
    const watched = await togetherCli(
      env,
      "jobs",
      "watch",
      second,
      "--provider",
      "together",
      "--poll-interval",
      "0.001",
    );
    expect(watched.code).toBe(0);
    expect(watched.stdout).toMatch(/succeeded: /);

    const third = (
      await togetherCli(
        env,
        ...["jobs", "create", "--provider", "together", "--model", model, "--training", file],
      )
    ).stdout.match(/^created (ft-\S+)/)?.[1] as string;
    const cancelled = await togetherCli(env, "jobs", "cancel", third, "--provider", "together");
    expect(cancelled.code).toBe(0);
    expect(cancelled.stdout).toMatch(
      new RegExp(`^${third}: (cancelled|running|queued) \\((cancel_requested|cancelled)\\)`),
    );
    const after = await togetherCli(
      env,
      "jobs",
      "watch",
      third,
      "--provider",
      "together",
      "--poll-interval",
      "0.001",
    );
    expect(after.code).toBe(1);
    expect(after.stdout).toMatch(/cancelled/);
    for (const output of [created, started, watched, cancelled, after]) {
      expect(output.stdout + output.stderr).not.toContain(TOGETHER_KEY);
    }
  });
});

describe("API keys never reach a log line or an error", () => {
  it("holds for every CLI output and console call, for wrong keys, server errors and echoed keys", async () => {
    const openaiKey = "sk-proj-cliSecretKeyThatMustNeverLeak0123456789";
    const file = await tempFile("train.jsonl", jsonl(Array.from({ length: 10 }, () => chatRow())));
    // Everything written anywhere: the CLI's own streams, and the console of any library below it.
    const written: string[] = [];
    const spies = (["log", "info", "warn", "error", "debug", "trace"] as const).map((method) =>
      vi.spyOn(console, method).mockImplementation((...args: unknown[]) => {
        written.push(args.map(String).join(" "));
      }),
    );
    const capture = async (env: Record<string, string>, ...argv: string[]) => {
      const output = await togetherCli(env, ...argv);
      written.push(output.stdout, output.stderr);
      return output.code;
    };
    try {
      // Keys the services refuse: 401 for both providers, on list and create.
      server.use(...togetherFineTuningHandlers({ baseURL: TOGETHER_BASE }).handlers);
      const wrong = {
        TOGETHER_API_KEY: TOGETHER_KEY,
        OPENAI_API_KEY: openaiKey,
        OPENAI_BASE_URL: "http://openai.test/v1",
      };
      expect(await capture(wrong, "jobs", "list", "--provider", "together")).toBe(1);
      expect(await capture(wrong, "jobs", "list", "--provider", "openai")).toBe(1);
      expect(
        await capture(wrong, "jobs", "create", "--provider", "together", "--model", "m", "--training", file),
      ).toBe(1);
      // The right key, and a service that fails: 500s until the retries run out, then one that echoes the key.
      server.use(
        ...togetherFineTuningHandlers({
          apiKey: TOGETHER_KEY,
          baseURL: TOGETHER_BASE,
          failures: [
            { match: { path: "/fine-tunes" }, status: 500, times: 3 },
            { match: { path: "/fine-tunes" }, status: 401, message: `Invalid API key: ${TOGETHER_KEY}` },
            { match: { path: /^\/fine-tunes\/ft-/ }, status: "network", times: 3 },
          ],
        }).handlers,
      );
      expect(await capture(wrong, "jobs", "list", "--provider", "together")).toBe(1);
      expect(await capture(wrong, "jobs", "list", "--provider", "together")).toBe(1);
      expect(await capture(wrong, "jobs", "get", "ft-00000000", "--provider", "together")).toBe(1);
    } finally {
      for (const spy of spies) spy.mockRestore();
    }
    const all = written.join("\n");
    expect(all).toContain("tunekit:");
    expect(all).toContain("[redacted]");
    expect(all).not.toContain(TOGETHER_KEY);
    expect(all).not.toContain(openaiKey);
    expect(all).not.toContain("cliSecretKey");
  }, 30_000);
});
