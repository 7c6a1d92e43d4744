/**
 * fireworks(): datasets, supervised fine-tuning jobs and their output models on Fireworks' control
 * plane, chat on its inference API, against the msw fake; end to end, a job trains, its metrics come
 * in order and once each, and its LoRA addon comes home, loads in the local engine and generates as
 * the adapter it was made from.
 */
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setupServer } from "msw/node";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import {
  AuthenticationError,
  ConnectionError,
  NotFoundError,
  ProviderError,
  ValidationError,
} from "../../src/core/errors.js";
import { FineTuneJob } from "../../src/jobs/fine-tune-job.js";
import { parseMetricsFile } from "../../src/providers/fireworks/events.js";
import { type FireworksProviderOptions, fireworks } from "../../src/providers/fireworks/index.js";
import { toJobStatus } from "../../src/providers/fireworks/job.js";
import type { FineTuningProvider } from "../../src/providers/spec.js";
import {
  type FireworksFineTuningOptions,
  type FireworksFineTuningServer,
  fireworksFineTuningHandlers,
} from "../../src/testing/fireworks.js";
import { Validator } from "../../src/validate/validator.js";
import { runCli } from "../cli-helpers.js";
import { chatRow, jsonl, tempDir, tempFile } from "../helpers.js";
import { greedyTokens, makeTinyWeights, type TinyWeights } from "./tiny-weights.js";

const KEY = "fw_3ZsecretKeyThatMustNeverLeak0123";
const ACCOUNT = "tunekit-test";
const BASE = "llama-v3p1-8b-instruct";
const ROWS = Array.from({ length: 4 }, (_, index) => chatRow(`q${index}`, `a${index}`));
const DATA = new TextEncoder().encode(jsonl(ROWS));

const server = setupServer();
const seen: Request[] = [];
server.events.on("request:start", ({ request }) => {
  seen.push(request.clone());
});
let shared: string;
let weights: Promise<TinyWeights> | undefined;
const tiny = () => {
  weights ??= makeTinyWeights(shared);
  return weights;
};
beforeAll(async () => {
  server.listen({ onUnhandledRequest: "error" });
  shared = await mkdtemp(join(tmpdir(), "tunekit-fireworks-weights-"));
});
beforeEach(() => {
  vi.stubEnv("FIREWORKS_API_KEY", "");
  vi.stubEnv("FIREWORKS_ACCOUNT_ID", "");
});
afterEach(() => {
  server.resetHandlers();
  seen.length = 0;
  vi.unstubAllEnvs();
});
afterAll(async () => {
  server.close();
  await rm(shared, { recursive: true, force: true });
});

function fake(options: FireworksFineTuningOptions = {}): FireworksFineTuningServer {
  const handlers = fireworksFineTuningHandlers({ apiKey: KEY, accountId: ACCOUNT, ...options });
  server.use(...handlers.handlers);
  return handlers;
}

function provider(options: FireworksProviderOptions = {}) {
  const waits: number[] = [];
  const sleep = async (ms: number, signal?: AbortSignal) => {
    signal?.throwIfAborted();
    waits.push(ms);
  };
  return { provider: fireworks({ apiKey: KEY, accountId: ACCOUNT, sleep, ...options }), waits };
}

const calls = (state: FireworksFineTuningServer, method: string, path: string | RegExp) =>
  state.state.requests.filter(
    (request) =>
      request.method === method &&
      (typeof path === "string" ? request.path === path : path.test(request.path)),
  );

async function failure(promise: Promise<unknown>): Promise<Error> {
  const error = await promise.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(Error);
  return error as Error;
}

async function uploaded(target: FineTuningProvider) {
  return target.uploadFile({ filename: "train.jsonl", data: DATA });
}

describe("fireworks()", () => {
  it("is a v1 provider named fireworks that validates with Fireworks' rules", () => {
    const { provider: target } = provider();
    expect(target.specificationVersion).toBe("v1");
    expect(target.name).toBe("fireworks");
    expect(target.validationTarget).toBe("fireworks");
  });

  it("needs no key or account to be built; the first call names what is missing", async () => {
    fake();
    expect((await failure(fireworks({ accountId: ACCOUNT }).listJobs())).message).toMatch(
      /FIREWORKS_API_KEY/,
    );
    expect(await failure(fireworks({ accountId: ACCOUNT }).listJobs())).toBeInstanceOf(AuthenticationError);
    expect((await failure(fireworks({ apiKey: KEY }).listJobs())).message).toMatch(/FIREWORKS_ACCOUNT_ID/);
    vi.stubEnv("FIREWORKS_API_KEY", KEY);
    vi.stubEnv("FIREWORKS_ACCOUNT_ID", ACCOUNT);
    expect((await fireworks().listJobs()).data).toEqual([]);
    expect(calls(fake(), "GET", `/accounts/${ACCOUNT}/supervisedFineTuningJobs`)).toEqual([]);
  });

  it("a wrong key is an AuthenticationError that does not retry and never shows the key", async () => {
    fake();
    const error = await failure(fireworks({ apiKey: "fw_wrong_key_123456", accountId: ACCOUNT }).listJobs());
    expect(error).toBeInstanceOf(AuthenticationError);
    expect(error.message).not.toContain("fw_wrong_key_123456");
  });
});

describe("uploadFile: a dataset", () => {
  it("creates the dataset, uploads the file as multipart form data, waits until READY", async () => {
    const state = fake({ datasetChecks: 2 });
    const { provider: target, waits } = provider();
    const file = await uploaded(target);
    expect(file).toMatchObject({
      filename: "train.jsonl",
      bytes: DATA.length,
      status: "processed",
      rawStatus: "READY",
    });
    expect(file.id).toMatch(/^train-[0-9a-f]{8}$/);
    const created = calls(state, "POST", `/accounts/${ACCOUNT}/datasets`)[0]?.body;
    expect(created).toEqual({
      datasetId: file.id,
      dataset: { displayName: "train.jsonl", exampleCount: "4", userUploaded: {} },
    });
    expect(calls(state, "POST", `/accounts/${ACCOUNT}/datasets/${file.id}:upload`)[0]?.body).toEqual({
      file: { name: "train.jsonl", bytes: DATA },
    });
    expect(state.state.uploads.get(file.id)).toEqual(DATA);
    expect(waits).toEqual([1000, 1000]);
  });

  it("past the direct limit, PUTs to a signed URL without the key, then validates the upload", async () => {
    const state = fake();
    const { provider: target } = provider({ directUploadLimit: 16 });
    const file = await uploaded(target);
    expect(file.status).toBe("processed");
    expect(
      calls(state, "POST", `/accounts/${ACCOUNT}/datasets/${file.id}:getUploadEndpoint`)[0]?.body,
    ).toEqual({
      filenameToSize: { "train.jsonl": String(DATA.length) },
    });
    const put = seen.find((request) => request.method === "PUT");
    expect(put?.url).toMatch(/^https:\/\/fireworks-storage\.test\/datasets\//);
    expect(put?.headers.get("authorization")).toBeNull();
    expect(put?.headers.get("x-goog-content-length-range")).toBe(`${DATA.length},${DATA.length}`);
    expect(calls(state, "POST", `/accounts/${ACCOUNT}/datasets/${file.id}:validateUpload`)).toHaveLength(1);
    expect(state.state.uploads.get(file.id)).toEqual(DATA);
  });

  it("a dataset Fireworks rejects is a file_rejected error with its reason", async () => {
    fake();
    const { provider: target } = provider();
    const error = await failure(
      target.uploadFile({ filename: "two.jsonl", data: new TextEncoder().encode(jsonl(ROWS.slice(0, 2))) }),
    );
    expect(error).toBeInstanceOf(ProviderError);
    expect((error as ProviderError).code).toBe("file_rejected");
    expect(error.message).toMatch(/Fireworks rejected two\.jsonl .*at least 3 examples/);
  });
});

describe("createJob", () => {
  it("sends Fireworks' fields, named as its API names them, and warns of what it cannot honour", async () => {
    const state = fake();
    const { provider: target } = provider();
    const training = await uploaded(target);
    const validation = await uploaded(target);
    const { job, warnings } = await target.createJob({
      model: BASE,
      trainingFile: training.id,
      validationFile: validation.id,
      hyperparameters: {
        epochs: 2,
        learningRate: 2e-4,
        batchSize: 8,
        warmupRatio: 0.1,
        lora: { r: 16, alpha: 32, dropout: 0.05 },
      },
      suffix: "Support Bot",
      seed: 3,
      providerOptions: { maxContextLength: 4096, learningRateWarmupSteps: 10 },
    });
    const body = state.state.jobRequests.get(job.id) as Record<string, unknown>;
    expect(body).toEqual({
      dataset: `accounts/${ACCOUNT}/datasets/${training.id}`,
      evaluationDataset: `accounts/${ACCOUNT}/datasets/${validation.id}`,
      baseModel: `accounts/fireworks/models/${BASE}`,
      epochs: 2,
      learningRate: 2e-4,
      loraRank: 16,
      displayName: "Support Bot",
      outputModel: expect.stringMatching(new RegExp(`^accounts/${ACCOUNT}/models/support-bot-[0-9a-f]{8}$`)),
      maxContextLength: 4096,
      learningRateWarmupSteps: 10,
    });
    expect(warnings.map((warning) => warning.setting)).toEqual([
      "hyperparameters.batchSize",
      "hyperparameters.warmupRatio",
      "hyperparameters.lora.alpha",
      "hyperparameters.lora.dropout",
      "seed",
    ]);
    expect(job).toMatchObject({ provider: "fireworks", status: "queued", rawStatus: "JOB_STATE_CREATING" });
    expect(job.model).toBe(`accounts/fireworks/models/${BASE}`);
  });

  it("continues from a LoRA addon with warmStartFrom, sending no baseModel; full names pass as they are", async () => {
    const state = fake();
    const { provider: target } = provider();
    const training = await uploaded(target);
    const { job } = await target.createJob({
      model: BASE,
      trainingFile: `accounts/${ACCOUNT}/datasets/${training.id}`,
      providerOptions: { warmStartFrom: `accounts/${ACCOUNT}/models/earlier` },
    });
    const body = state.state.jobRequests.get(job.id) as Record<string, unknown>;
    expect(body.baseModel).toBeUndefined();
    expect(body.warmStartFrom).toBe(`accounts/${ACCOUNT}/models/earlier`);
    expect(body.dataset).toBe(`accounts/${ACCOUNT}/datasets/${training.id}`);
    await expect(target.createJob({ model: BASE, trainingFile: "accounts/x/models/y" })).rejects.toThrow(
      /not a name of the datasets collection/,
    );
  });

  it("answers 400 for an unknown dataset, with grpc-gateway's message, without retrying", async () => {
    const state = fake();
    const { provider: target } = provider();
    const error = await failure(target.createJob({ model: BASE, trainingFile: "missing-1" }));
    expect(error).toBeInstanceOf(ProviderError);
    expect((error as ProviderError).status).toBe(400);
    expect(error.message).toMatch(/dataset accounts\/tunekit-test\/datasets\/missing-1 not found/);
    expect(calls(state, "POST", `/accounts/${ACCOUNT}/supervisedFineTuningJobs`)).toHaveLength(1);
  });
});

describe("jobs: states, events, metrics, cancel, list", () => {
  async function created(options: FireworksFineTuningOptions = {}) {
    const state = fake(options);
    const { provider: target } = provider();
    const file = await uploaded(target);
    const { job } = await target.createJob({
      model: BASE,
      trainingFile: file.id,
      hyperparameters: { epochs: 2 },
    });
    return { state, target, job };
  }

  it("moves through Fireworks' states to succeeded; its model is the output model", async () => {
    const { target, job } = await created();
    const statuses: string[] = [];
    let info = job;
    while (info.status !== "succeeded") {
      info = await target.retrieveJob(job.id);
      statuses.push(`${info.status}:${info.rawStatus}`);
    }
    expect(statuses).toEqual([
      "validating:JOB_STATE_VALIDATING",
      "running:JOB_STATE_RUNNING",
      "running:JOB_STATE_RUNNING",
      "running:JOB_STATE_WRITING_RESULTS",
      "succeeded:JOB_STATE_COMPLETED",
    ]);
    expect(info.fineTunedModel).toBe(`accounts/${ACCOUNT}/models/${job.id}`);
    expect(info.finishedAt).toBeInstanceOf(Date);
    // A job's full name works as its id.
    expect((await target.retrieveJob(`accounts/${ACCOUNT}/supervisedFineTuningJobs/${job.id}`)).id).toBe(
      job.id,
    );
  });

  it("derives events from the states it sees change: each once, in order, then only the newer ones", async () => {
    const { target, job } = await created();
    await target.retrieveJob(job.id);
    const first = await target.listEvents(job.id);
    expect(first.map((event) => event.message)).toEqual([
      `job created on accounts/fireworks/models/${BASE}`,
      "being created",
      "validating the dataset",
    ]);
    await target.retrieveJob(job.id);
    const later = await target.listEvents(job.id, { after: first.at(-1)?.id as string });
    expect(later.map((event) => event.message)).toEqual(["training", "50% done (epoch 1)"]);
    const all = await target.listEvents(job.id);
    expect(all.map((event) => event.id)).toEqual(
      [...first, ...later, ...all.slice(5)].map((event) => event.id),
    );
    expect(new Set(all.map((event) => event.id)).size).toBe(all.length);
  });

  it("reads the step metrics from the job's metrics file, oldest first", async () => {
    const { target, job } = await created({ totalSteps: 6 });
    expect(await target.listMetrics?.(job.id)).toEqual([]); // validating
    await target.retrieveJob(job.id); // running: half the steps
    expect((await target.listMetrics?.(job.id))?.map((entry) => entry.step)).toEqual([1, 2, 3]);
    await target.retrieveJob(job.id); // running: the rest
    const metrics = (await target.listMetrics?.(job.id)) ?? [];
    expect(metrics.map((entry) => entry.step)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(metrics[0]).toEqual({ step: 1, epoch: 0.333, trainLoss: 1.8 });
  });

  it("a failed job carries Fireworks' status message", async () => {
    const { target, job } = await created({
      failure: { message: "out of memory on the trainer", code: "RESOURCE_EXHAUSTED" },
    });
    let info = job;
    while (info.status !== "failed") info = await target.retrieveJob(job.id);
    expect(info.error).toEqual({ message: "out of memory on the trainer", code: "RESOURCE_EXHAUSTED" });
    const events = await target.listEvents(job.id);
    expect(events.at(-1)).toMatchObject({ level: "error", message: "failed: out of memory on the trainer" });
  });

  it("maps every state: CANCELLING stays running, an early stop succeeded, an unknown state running", () => {
    expect(toJobStatus("JOB_STATE_CANCELLING")).toBe("running");
    expect(toJobStatus("JOB_STATE_EARLY_STOPPED")).toBe("succeeded");
    expect(toJobStatus("JOB_STATE_EXPIRED")).toBe("failed");
    expect(toJobStatus("JOB_STATE_PAUSED")).toBe("paused");
    expect(toJobStatus("JOB_STATE_SOMETHING_NEW")).toBe("running");
    expect(toJobStatus(undefined)).toBe("queued");
  });

  it("cancels with POST :cancel, then answers the job as Fireworks shows it", async () => {
    const { target, job, state } = await created();
    const cancelling = await target.cancelJob(job.id);
    expect(
      calls(state, "POST", `/accounts/${ACCOUNT}/supervisedFineTuningJobs/${job.id}:cancel`),
    ).toHaveLength(1);
    expect(cancelling.status).toBe("cancelled");
  });

  it("lists newest first, a page at a time, with Fireworks' page tokens", async () => {
    const state = fake();
    const { provider: target } = provider();
    const file = await uploaded(target);
    const ids: string[] = [];
    for (let index = 0; index < 3; index++)
      ids.push((await target.createJob({ model: BASE, trainingFile: file.id })).job.id);
    const first = await target.listJobs({ limit: 2 });
    expect(first.data.map((job) => job.id)).toEqual([ids[2], ids[1]]);
    const second = await target.listJobs({ limit: 2, after: first.nextCursor as string });
    expect(second.data.map((job) => job.id)).toEqual([ids[0]]);
    expect(second.nextCursor).toBeUndefined();
    expect(calls(state, "GET", `/accounts/${ACCOUNT}/supervisedFineTuningJobs`)[0]?.query).toEqual({
      orderBy: "createTime desc",
      pageSize: "2",
    });
  });
});

describe("retries and dropped connections", () => {
  it("retries a 429 after the retry-after Fireworks sends, and dropped connections on the upload", async () => {
    const state = fake({
      failures: [
        { match: { method: "POST", path: `/accounts/${ACCOUNT}/datasets` }, status: 429, retryAfter: 2 },
        { match: { method: "POST", path: /:upload$/ }, status: "network" },
      ],
    });
    const { provider: target, waits } = provider();
    const file = await uploaded(target);
    expect(file.status).toBe("processed");
    expect(waits[0]).toBe(2000);
    expect(calls(state, "POST", `/accounts/${ACCOUNT}/datasets`)).toHaveLength(2);
    expect(calls(state, "POST", /:upload$/)).toHaveLength(2);
  });

  it("a connection that stays down is a ConnectionError naming the address, not the key", async () => {
    fake({ failures: [{ status: "network", times: 3 }] });
    const { provider: target } = provider();
    const error = await failure(target.listJobs());
    expect(error).toBeInstanceOf(ConnectionError);
    expect(error.message).toMatch(/api\.fireworks\.ai/);
    expect(error.message).not.toContain(KEY);
  });
});

describe("chat", () => {
  it("a base model answers on the inference API", async () => {
    const state = fake();
    const { provider: target } = provider();
    const chat = target.chat(`accounts/fireworks/models/${BASE}`);
    expect(chat.identity).toBe(`fireworks:accounts/fireworks/models/${BASE}`);
    expect((await chat.complete([{ role: "user", content: "hi" }], { maxTokens: 8 })).text).toBe(
      "You said: hi",
    );
    expect(state.state.requests.at(-1)?.body).toMatchObject({ max_tokens: 8 });
  });

  it("a fine-tuned model that is not deployed: the 404 says how to deploy it", async () => {
    const state = fake({ deployed: [] });
    const { provider: target } = provider();
    const file = await uploaded(target);
    const { job } = await target.createJob({ model: BASE, trainingFile: file.id });
    const model = `accounts/${ACCOUNT}/models/${job.id}`;
    const error = await failure(target.chat(model).complete([{ role: "user", content: "hi" }]));
    expect(error).toBeInstanceOf(NotFoundError);
    expect(error.message).toMatch(
      /not deployed Fireworks serves fine-tuned models only on an on-demand deployment/,
    );
    expect(error.message).toContain(`firectl deployment create ${model}`);
    expect(state.state.requests.at(-1)?.status).toBe(404);
  });
});

describe("parseMetricsFile", () => {
  it("reads W&B-style keys under data and plain keys beside step; skips what it cannot read", () => {
    const text = [
      JSON.stringify({ step: 2, data: { "train/loss": 1.5, "train/epoch": 0.5 } }),
      "not json",
      JSON.stringify({ step: 1, loss: "1.9", epoch: 0.25 }),
      JSON.stringify({ step: 2, data: { "eval/loss": 1.7 } }),
      JSON.stringify({ data: { "train/loss": 1 } }),
      JSON.stringify({ step: 3, data: { "train/learning_rate": 0.1 } }),
      "[1,2]",
      "",
    ].join("\n");
    expect(parseMetricsFile(text)).toEqual([
      { step: 1, epoch: 0.25, trainLoss: 1.9 },
      { step: 2, epoch: 0.5, trainLoss: 1.5 },
      { step: 2, validLoss: 1.7 },
    ]);
  });
});

describe("the Validator's fireworks target", () => {
  it("needs 3 examples, the roles Fireworks takes, and turns prompt/completion into conversations", async () => {
    const validator = new Validator({ target: "fireworks" });
    const few = await validator.validate(await tempFile("few.jsonl", jsonl(ROWS.slice(0, 2))));
    expect(few.errors.map((problem) => problem.code)).toEqual(["too_few_examples"]);
    const bad = await validator.validate(
      await tempFile(
        "bad.jsonl",
        jsonl([
          ...ROWS,
          {
            messages: [
              { role: "developer", content: "x" },
              { role: "assistant", content: "y" },
            ],
          },
        ]),
      ),
    );
    expect(bad.errors[0]).toMatchObject({ code: "unrecognized_role", line: 5, path: "messages[0].role" });
    const completion = await validator.validate(
      await tempFile(
        "pc.jsonl",
        jsonl(Array.from({ length: 3 }, (_, index) => ({ prompt: `${index}+1=`, completion: "2" }))),
      ),
    );
    expect(completion.ok).toBe(true);
    const text = await validator.validate(
      await tempFile("t.jsonl", jsonl(Array.from({ length: 3 }, () => ({ text: "x" })))),
    );
    expect(text.errors[0]?.code).toBe("unsupported_format");
  });
});

describe("fireworks() end to end: train, follow, bring the addon home, load it, generate", () => {
  it("FineTuneJob follows the job with its metrics; downloadAdapter brings the addon; it loads and generates", {
    timeout: 60_000,
  }, async () => {
    const made = await tiny();
    const state = fake({ weights: made.adapter });
    const job = await FineTuneJob.create({
      provider: provider().provider,
      model: BASE,
      training: await tempFile("train.jsonl", jsonl(ROWS)),
      hyperparameters: { epochs: 1, lora: { r: 8 } },
      pollInterval: 1,
    });
    const steps: number[] = [];
    const messages: string[] = [];
    for await (const event of job.events()) {
      if (event.type === "metrics") steps.push(event.metrics.step);
      if (event.type === "message") messages.push(event.message);
    }
    expect(steps).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(messages[0]).toBe(`job created on accounts/fireworks/models/${BASE}`);
    expect(messages.at(-1)).toBe(`succeeded: the model is accounts/${ACCOUNT}/models/${job.id}`);
    const result = await job.wait();

    const home = join(await tempDir(), "addon");
    const downloaded = await job.downloadAdapter(home);
    expect(downloaded).toEqual({ dir: home, kind: "adapter", files: Object.keys(made.adapter).sort() });
    expect(await greedyTokens(made.modelDir, home)).toEqual(made.tunedTokens);
    expect(calls(state, "GET", `/accounts/${ACCOUNT}/models/${job.id}:getDownloadEndpoint`)).toHaveLength(1);
    const storage = seen.filter((request) =>
      request.url.startsWith("https://fireworks-storage.test/models/"),
    );
    expect(storage.length).toBe(Object.keys(made.adapter).length);
    for (const request of storage) expect(request.headers.get("authorization")).toBeNull();
    expect(result.fineTunedModel).toBe(`accounts/${ACCOUNT}/models/${job.id}`);

    // The same from the CLI.
    const dir = await tempDir();
    const cli = await runCli(
      ["jobs", "download", job.id, "--provider", "fireworks", "--dir", join(dir, "cli")],
      {
        env: { FIREWORKS_API_KEY: KEY, FIREWORKS_ACCOUNT_ID: ACCOUNT },
      },
    );
    expect(cli.stderr).toBe("");
    expect(cli.stdout).toBe(
      `${join(dir, "cli")}: the adapter (${Object.keys(made.adapter).sort().join(", ")})\n`,
    );
    const training = await tempFile("cli.jsonl", jsonl(ROWS));
    const created = await runCli(
      ["jobs", "create", "--provider", "fireworks", "--model", BASE, "--training", training].concat([
        "--watch",
        "--poll-interval",
        "0.001",
      ]),
      { env: { FIREWORKS_API_KEY: KEY, FIREWORKS_ACCOUNT_ID: ACCOUNT } },
    );
    expect(created.stderr).toBe("");
    expect(created.code).toBe(0);
    expect(created.stdout).toMatch(/^created \S+ \(queued\) on fireworks/);
    expect(created.stdout).toMatch(/running\s+step 8\s+train loss \d\.\d{4}/);
    expect(created.stdout).toMatch(/succeeded: accounts\/tunekit-test\/models\/\S+/);
    const noAccount = await runCli(["jobs", "list", "--provider", "fireworks"], {
      env: { FIREWORKS_API_KEY: KEY },
    });
    expect(noAccount.code).toBe(2);
    expect(noAccount.stderr).toMatch(/FIREWORKS_ACCOUNT_ID.*--account ID/);

    // Refused before anything is fetched: a step, the merged kind; and a folder that holds something.
    await expect(job.downloadAdapter(join(dir, "s"), { step: 3 })).rejects.toThrow(ValidationError);
    await expect(job.downloadAdapter(join(dir, "m"), { kind: "merged" })).rejects.toThrow(
      /LocalModel\.mergeAndSave/,
    );
    await expect(job.downloadAdapter(home)).rejects.toThrow(/is not empty/);
  });

  it("an addon whose files are not a PEFT LoRA adapter is refused and leaves no folder", async () => {
    const made = await tiny();
    fake({ weights: { ...made.adapter, "adapter_config.json": JSON.stringify({ peft_type: "IA3" }) } });
    const job = await FineTuneJob.create({
      provider: provider().provider,
      model: BASE,
      training: await tempFile("train.jsonl", jsonl(ROWS)),
      pollInterval: 1,
    });
    await job.wait();
    const root = await tempDir();
    await expect(job.downloadAdapter(join(root, "addon"))).rejects.toThrow(/peft_type "IA3", not "LORA"/);
    expect(await readdir(root)).toEqual([]);
  });

  it("before the job succeeds, the download is refused with its state", async () => {
    fake();
    const { provider: target } = provider();
    const file = await uploaded(target);
    const { job } = await target.createJob({ model: BASE, trainingFile: file.id });
    await expect(target.downloadAdapter?.(job.id, join(await tempDir(), "x"))).rejects.toThrow(
      /is validating \(JOB_STATE_VALIDATING\); its model can be downloaded once it has succeeded/,
    );
  });
});
