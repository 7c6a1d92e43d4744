/**
 * nebius(): the OpenAI adapter at Nebius Token Factory's address with its key, job body and dataset
 * rules; end to end against the fake, a job trains, its checkpoint's adapter comes home, loads in the
 * local engine and generates as the adapter it was made from.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { setupServer } from "msw/node";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { AuthenticationError } from "../../src/core/errors.js";
import { FineTuneJob } from "../../src/jobs/fine-tune-job.js";
import { nebius } from "../../src/providers/nebius/index.js";
import {
  NEBIUS_TEST_BASE_URL,
  nebiusFineTuningHandlers,
  OPENAI_TEST_API_KEY,
  type OpenAIFineTuningHandlersOptions,
  releaseResponseCopies,
} from "../../src/testing/openai.js";
import { Validator } from "../../src/validate/validator.js";
import { chatRow, jsonl, tempDir, tempFile } from "../helpers.js";
import { greedyTokens, makeTinyWeights } from "./tiny-weights.js";

const server = setupServer();
releaseResponseCopies(server);
beforeAll(() =>
  server.listen({
    onUnhandledRequest: (request, print) => {
      if (!request.url.startsWith("data:")) print.error();
    },
  }),
);
afterEach(() => {
  server.resetHandlers();
  vi.unstubAllEnvs();
});
afterAll(() => server.close());

const MODEL = "meta-llama/Meta-Llama-3.1-8B-Instruct";
const TRAINING = jsonl(Array.from({ length: 4 }, (_, index) => chatRow(`q${index}`, `a${index}`)));

function fake(options: OpenAIFineTuningHandlersOptions = {}) {
  const handlers = nebiusFineTuningHandlers(options);
  server.use(...handlers.handlers);
  return handlers;
}

const provider = () => nebius({ apiKey: OPENAI_TEST_API_KEY, filePollIntervalMs: 1, maxRetries: 0 });

describe("nebius()", () => {
  it("sends the job body Nebius documents, and warns of what it cannot honour", async () => {
    const state = fake();
    const job = await FineTuneJob.create({
      provider: provider(),
      model: MODEL,
      training: await tempFile("train.jsonl", TRAINING),
      hyperparameters: {
        epochs: 2,
        batchSize: 4,
        learningRate: 1e-4,
        learningRateMultiplier: 2,
        warmupRatio: 0.1,
        lora: { r: 16, alpha: 32, dropout: 0.05, targetModules: ["q_proj"] },
      },
      seed: 7,
      suffix: "support",
      providerOptions: { hyperparameters: { packing: false, context_length: 4096 } },
    });
    job.stop();
    const body = state.state.requests.find(
      (request) => request.method === "POST" && request.path === "/fine_tuning/jobs",
    )?.body as Record<string, unknown>;
    expect(body).toMatchObject({
      model: MODEL,
      seed: 7,
      suffix: "support",
      hyperparameters: {
        n_epochs: 2,
        batch_size: 4,
        learning_rate: 1e-4,
        warmup_ratio: 0.1,
        lora: true,
        lora_r: 16,
        lora_alpha: 32,
        lora_dropout: 0.05,
        packing: false,
        context_length: 4096,
      },
    });
    expect(job.warnings.map((warning) => warning.setting)).toEqual([
      "hyperparameters.learningRateMultiplier",
      "hyperparameters.lora.targetModules",
    ]);
    expect(job.info.provider).toBe("nebius");
  });

  it("takes its key from NEBIUS_API_KEY (never OPENAI_API_KEY), and says so when there is none", async () => {
    fake();
    vi.stubEnv("NEBIUS_API_KEY", "");
    vi.stubEnv("OPENAI_API_KEY", OPENAI_TEST_API_KEY);
    await expect(nebius().listJobs()).rejects.toThrow(AuthenticationError);
    await expect(nebius().listJobs()).rejects.toThrow(/NEBIUS_API_KEY/);
    vi.stubEnv("NEBIUS_API_KEY", OPENAI_TEST_API_KEY);
    expect((await nebius().listJobs()).data).toEqual([]);
    const chat = nebius().chat("meta-llama/Llama-3.3-70B-Instruct");
    expect(chat.provider).toBe("nebius");
    expect(chat.identity).toBe("nebius:meta-llama/Llama-3.3-70B-Instruct");
    expect((await chat.complete([{ role: "user", content: "hi" }])).text).toBe("You said: hi");
  });

  it("the Validator knows Nebius's rules: the last message is the assistant's; prompt/completion is fine", async () => {
    const validator = new Validator({ target: "nebius" });
    const bad = await validator.validate(
      await tempFile(
        "bad.jsonl",
        jsonl([
          {
            messages: [
              { role: "user", content: "hi" },
              { role: "assistant", content: "hello" },
              { role: "user", content: "and?" },
            ],
          },
        ]),
      ),
    );
    expect(bad.ok).toBe(false);
    expect(bad.errors[0]).toMatchObject({
      code: "example_missing_assistant_message",
      line: 1,
      path: "messages[2].role",
    });
    const completion = await validator.validate(
      await tempFile("pc.jsonl", jsonl([{ prompt: "2+2=", completion: "4" }])),
    );
    expect(completion.ok).toBe(true);
    expect(completion.notices).toEqual([]);
  });
});

describe("nebius() end to end: train, follow, bring the adapter home, load it, generate", () => {
  it("downloads the checkpoint's PEFT adapter into a new folder; LocalModel loads it", {
    timeout: 60_000,
  }, async () => {
    // The adapter the fake's checkpoints hold: made for the tiny test model here.
    const dir = await tempDir();
    const made = await makeTinyWeights(dir);
    const checkpointFiles = {
      "adapter_config.json": made.adapter["adapter_config.json"] as Uint8Array,
      "adapter_model.safetensors": made.adapter["adapter_model.safetensors"] as Uint8Array,
    };
    fake({ checkpointFiles, statuses: ["validating_files", "queued", "running", "running", "succeeded"] });
    const job = await FineTuneJob.create({
      provider: provider(),
      model: MODEL,
      training: await tempFile("train.jsonl", TRAINING),
      hyperparameters: { epochs: 3, lora: { r: 4, alpha: 8 } },
      pollInterval: 1,
    });
    const steps: number[] = [];
    for await (const event of job.events()) if (event.type === "metrics") steps.push(event.metrics.step);
    expect(steps).toEqual([...steps].sort((a, b) => a - b));
    expect(new Set(steps).size).toBe(steps.length);
    expect(steps.length).toBeGreaterThan(0);
    const result = await job.wait();
    expect(result.status).toBe("succeeded");

    const home = join(dir, "home");
    const downloaded = await job.downloadAdapter(home);
    expect(downloaded.files).toEqual(["adapter_config.json", "adapter_model.safetensors"]);
    expect(downloaded.step).toBe(6);
    expect(await greedyTokens(made.modelDir, home)).toEqual(made.tunedTokens);

    // The same from the CLI.
    const { runCli } = await import("../cli-helpers.js");
    const cli = await runCli(
      ["jobs", "download", job.id, "--provider", "nebius", "--dir", join(dir, "cli")],
      {
        env: { NEBIUS_API_KEY: OPENAI_TEST_API_KEY },
      },
    );
    expect(cli.stderr).toBe("");
    expect(cli.stdout).toBe(
      `${join(dir, "cli")}: the adapter of step 6 (adapter_config.json, adapter_model.safetensors)\n`,
    );
    const refused = await runCli(
      ["jobs", "download", job.id, "--provider", "openai", "--dir", join(dir, "x")],
      {
        env: { OPENAI_API_KEY: OPENAI_TEST_API_KEY },
      },
    );
    expect(refused.code).not.toBe(0);

    // Into a folder that holds something: refused, nothing touched.
    await expect(job.downloadAdapter(home)).rejects.toThrow(/is not empty/);
    // A checkpoint that is not a LoRA adapter: refused, and no folder left behind.
    const broken = JSON.stringify({ peft_type: "PREFIX_TUNING" });
    fake({ checkpointFiles: { ...checkpointFiles, "adapter_config.json": broken } });
    const other = await FineTuneJob.create({
      provider: provider(),
      model: MODEL,
      training: await tempFile("t.jsonl", TRAINING),
      pollInterval: 1,
    });
    await other.wait();
    const nowhere = join(dir, "nowhere");
    await expect(other.downloadAdapter(nowhere)).rejects.toThrow(/peft_type "PREFIX_TUNING", not "LORA"/);
    await expect(readFile(join(nowhere, "adapter_config.json"))).rejects.toThrow(/ENOENT/);
  });

  it("a step with no checkpoint is named with those there are", async () => {
    fake({ checkpointFiles: { "adapter_config.json": "{}" } });
    const job = await FineTuneJob.create({
      provider: provider(),
      model: MODEL,
      training: await tempFile("t.jsonl", TRAINING),
      pollInterval: 1,
    });
    await job.wait();
    await expect(job.downloadAdapter(join(await tempDir(), "x"), { step: 5 })).rejects.toThrow(
      /no checkpoint at step 5 \(it has 2, 4, 6\)/,
    );
    expect(NEBIUS_TEST_BASE_URL).toBe("https://api.tokenfactory.nebius.com/v1");
  });
});
