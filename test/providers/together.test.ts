import { getEventListeners } from "node:events";
import { HttpResponse, http } from "msw";
import { setupServer } from "msw/node";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import {
  AuthenticationError,
  BadRequestError,
  ConnectionError,
  NotFoundError,
  ProviderError,
  RateLimitError,
} from "../../src/core/errors.js";
import type {
  CreateJobRequest,
  FineTuningProvider,
  JobStatus,
  ProviderEvent,
} from "../../src/providers/spec.js";
import { type TogetherProviderOptions, together } from "../../src/providers/together/index.js";
import {
  type TogetherFineTuningOptions,
  type TogetherFineTuningServer,
  togetherFineTuningHandlers,
} from "../../src/testing/together.js";
import { chatRow, jsonl } from "../helpers.js";

const BASE = "https://api.together.ai/v1";
const KEY = "tgp_v1_secretKeyThatMustNeverLeak0123";
const MODEL = "meta-llama/Meta-Llama-3.1-8B-Instruct-Reference";
const DATA = new TextEncoder().encode(jsonl([chatRow("hi", "hello"), chatRow("ping", "pong")]));

const server = setupServer();
/** Every request with its headers, as sent. */
const seen: Request[] = [];
server.events.on("request:start", ({ request }) => {
  seen.push(request.clone());
});

beforeAll(() => server.listen({ onUnhandledRequest: "error" }));
beforeEach(() => {
  vi.stubEnv("TOGETHER_API_KEY", "");
});
afterEach(() => {
  server.resetHandlers();
  seen.length = 0;
  vi.unstubAllEnvs();
});
afterAll(() => server.close());

function serve(options: TogetherFineTuningOptions = {}): TogetherFineTuningServer {
  const fake = togetherFineTuningHandlers({ apiKey: KEY, ...options });
  server.use(...fake.handlers);
  return fake;
}

/** A provider whose waits return at once and are recorded. */
function provider(options: TogetherProviderOptions = {}) {
  const waits: number[] = [];
  const sleep = async (ms: number, signal?: AbortSignal) => {
    signal?.throwIfAborted();
    waits.push(ms);
  };
  return { provider: together({ apiKey: KEY, sleep, ...options }), waits };
}

async function upload(target: FineTuningProvider, filename = "train.jsonl") {
  return target.uploadFile({ filename, data: DATA });
}

async function failure(promise: Promise<unknown>): Promise<ProviderError> {
  const error = await promise.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(ProviderError);
  return error as ProviderError;
}

const calls = (fake: TogetherFineTuningServer, method: string, path: string | RegExp) =>
  fake.state.requests.filter(
    (request) =>
      request.method === method &&
      (typeof path === "string" ? request.path === path : path.test(request.path)),
  );

describe("together()", () => {
  it("is a v1 provider named together that validates with Together's rules", () => {
    const target = together({ apiKey: KEY });
    expect(target.specificationVersion).toBe("v1");
    expect(target.name).toBe("together");
    expect(target.validationTarget).toBe("together");
  });

  it("needs no key to be built, and says clearly at the first call that one is missing", async () => {
    const fake = serve();
    const target = together({ sleep: async () => {} });
    const error = await failure(target.retrieveJob("ft-1"));
    expect(error).toBeInstanceOf(AuthenticationError);
    expect(error.code).toBe("missing_api_key");
    expect(error.message).toContain("TOGETHER_API_KEY");
    expect(fake.state.requests).toHaveLength(0);
  });

  it("reads the key from TOGETHER_API_KEY when none is given", async () => {
    serve();
    vi.stubEnv("TOGETHER_API_KEY", KEY);
    const file = await together({ sleep: async () => {} }).uploadFile({
      filename: "train.jsonl",
      data: DATA,
    });
    expect(file.status).toBe("processed");
    expect(seen[0]?.headers.get("authorization")).toBe(`Bearer ${KEY}`);
  });
});

describe("uploadFile", () => {
  it("asks for a pre-signed URL, PUTs the bytes there without the key, preprocesses and waits", async () => {
    const fake = serve({ fileProcessingChecks: 2 });
    const { provider: target, waits } = provider({ filePollInterval: 250 });
    const file = await upload(target);

    expect(file).toMatchObject({ filename: "train.jsonl", bytes: DATA.byteLength, status: "processed" });
    expect(file.rawStatus).toBe("COMPLETED");
    expect(file.id).toMatch(/^file-/);
    expect(file.createdAt).toBeInstanceOf(Date);

    const fields = { file_name: "train.jsonl", file_type: "jsonl", purpose: "fine-tune" };
    const [start, put, preprocess, ...checks] = fake.state.requests;
    expect(start).toMatchObject({ method: "POST", path: "/files", query: fields, body: fields, status: 302 });
    expect(put?.method).toBe("PUT");
    expect(put?.path.startsWith("https://together-uploads.test/")).toBe(true);
    expect(put?.status).toBe(200);
    expect(fake.state.uploads.get(file.id)).toEqual(DATA);
    expect(seen[1]?.headers.get("authorization")).toBeNull();
    expect(seen[1]?.headers.get("content-type")).toBe("application/octet-stream");
    expect(preprocess).toMatchObject({ method: "POST", path: `/files/${file.id}/preprocess`, status: 200 });
    expect(checks.map((check) => `${check.method} ${check.path}`)).toEqual(
      Array(3).fill(`GET /files/${file.id}`),
    );
    expect(waits).toEqual([250, 250, 250]);
  });

  it("does not wait for processing when told not to", async () => {
    const fake = serve();
    const { provider: target } = provider();
    const file = await target.uploadFile({ filename: "train.jsonl", data: DATA, waitForProcessing: false });
    expect(file).toMatchObject({ status: "uploaded", rawStatus: "PENDING" });
    expect(calls(fake, "GET", /^\/files\//)).toHaveLength(0);
  });

  it("raises the validation report's error when Together rejects the file", async () => {
    serve({ rejectFiles: 'Missing "messages" on line 1' });
    const error = await failure(upload(provider().provider));
    expect(error.code).toBe("file_rejected");
    expect(error.message).toContain('Missing "messages" on line 1');
    expect(error.message).toContain("train.jsonl");
  });

  it("raises a file that is not JSON Lines", async () => {
    serve();
    const bad = new TextEncoder().encode("{not json}\n");
    const error = await failure(provider().provider.uploadFile({ filename: "bad.jsonl", data: bad }));
    expect(error.message).toContain("Line 1 is not valid JSON");
  });
});

describe("createJob", () => {
  it("sends Together's fields, from tunekit's request and providerOptions", async () => {
    const fake = serve();
    const { provider: target } = provider();
    const train = await upload(target);
    const valid = await upload(target, "valid.jsonl");
    const { job, warnings } = await target.createJob({
      model: MODEL,
      trainingFile: train.id,
      validationFile: valid.id,
      hyperparameters: {
        epochs: 3,
        batchSize: 8,
        learningRate: 0.0001,
        warmupRatio: 0.1,
        lora: { r: 16, alpha: 32, dropout: 0.05, targetModules: ["q_proj", "v_proj"] },
      },
      suffix: "support",
      providerOptions: { n_checkpoints: 2, n_evals: 1, wandb_api_key: "wandb-key", train_on_inputs: false },
    });
    expect(warnings).toEqual([]);
    expect(fake.state.jobRequests.get(job.id)).toEqual({
      model: MODEL,
      training_file: train.id,
      validation_file: valid.id,
      n_epochs: 3,
      batch_size: 8,
      learning_rate: 0.0001,
      warmup_ratio: 0.1,
      suffix: "support",
      training_type: {
        type: "Lora",
        lora_r: 16,
        lora_alpha: 32,
        lora_dropout: 0.05,
        lora_trainable_modules: "q_proj,v_proj",
      },
      training_method: { method: "sft", train_on_inputs: false },
      n_checkpoints: 2,
      n_evals: 1,
      wandb_api_key: "wandb-key",
    });
    expect(job).toMatchObject({
      provider: "together",
      model: MODEL,
      status: "queued",
      rawStatus: "queued",
      trainingFile: train.id,
      validationFile: valid.id,
      hyperparameters: {
        epochs: 3,
        batchSize: 8,
        learningRate: 0.0001,
        warmupRatio: 0.1,
        lora: { r: 16, alpha: 32, dropout: 0.05, targetModules: ["q_proj", "v_proj"] },
      },
    });
    expect(job.id).toMatch(/^ft-/);
  });

  it("sends the defaults Together's SDK sends: sft with train_on_inputs auto, no training type", async () => {
    const fake = serve();
    const { provider: target } = provider();
    const train = await upload(target);
    const { job } = await target.createJob({ model: MODEL, trainingFile: train.id });
    expect(fake.state.jobRequests.get(job.id)).toEqual({
      model: MODEL,
      training_file: train.id,
      training_method: { method: "sft", train_on_inputs: "auto" },
    });
  });

  it("asks for the model's largest LoRA rank when none is given, and all-linear modules", async () => {
    const fake = serve();
    const { provider: target } = provider();
    const train = await upload(target);
    const { job } = await target.createJob({
      model: MODEL,
      trainingFile: train.id,
      hyperparameters: { lora: { targetModules: "all-linear" } },
    });
    expect(calls(fake, "GET", "/fine-tunes/models/limits")[0]?.query).toEqual({ model_name: MODEL });
    expect(fake.state.jobRequests.get(job.id)?.training_type).toEqual({
      type: "Lora",
      lora_r: 64,
      lora_alpha: 128,
      lora_dropout: 0,
      lora_trainable_modules: "all-linear",
    });
  });

  it("trains DPO, and full fine-tuning through providerOptions", async () => {
    const fake = serve();
    const { provider: target } = provider();
    const train = await upload(target);
    const { job, warnings } = await target.createJob({
      model: MODEL,
      trainingFile: train.id,
      method: { type: "dpo", beta: 0.2 },
      providerOptions: { training_type: { type: "Full" } },
    });
    expect(warnings).toEqual([]);
    expect(fake.state.jobRequests.get(job.id)).toMatchObject({
      training_method: { method: "dpo", dpo_beta: 0.2 },
      training_type: { type: "Full" },
    });
  });

  it("reports every setting Together cannot honour as a warning", async () => {
    const fake = serve();
    const { provider: target } = provider();
    const train = await upload(target);
    const request: CreateJobRequest = {
      model: MODEL,
      trainingFile: train.id,
      hyperparameters: { epochs: "auto", batchSize: "auto", learningRateMultiplier: 2 },
      seed: 42,
      metadata: { team: "support" },
      method: { type: "reinforcement", settings: { grader: "x" } },
    };
    const { job, warnings } = await target.createJob(request);
    expect(warnings.map((warning) => warning.setting)).toEqual([
      "hyperparameters.epochs",
      "hyperparameters.batchSize",
      "hyperparameters.learningRateMultiplier",
      "method",
      "metadata",
    ]);
    for (const warning of warnings) {
      expect(warning.type).toBe("unsupported-setting");
      expect(warning.message).not.toBe("");
    }
    // The seed goes as random_seed (together-typescript 0.39.0).
    expect(fake.state.jobRequests.get(job.id)).toEqual({
      model: MODEL,
      training_file: train.id,
      training_method: { method: "sft", train_on_inputs: "auto" },
      random_seed: 42,
    });

    const dpo = await target.createJob({
      model: MODEL,
      trainingFile: train.id,
      method: { type: "dpo", beta: "auto" },
      providerOptions: { train_on_inputs: true },
    });
    expect(dpo.warnings.map((warning) => warning.setting)).toEqual([
      "method.beta",
      "providerOptions.train_on_inputs",
    ]);
    expect(fake.state.jobRequests.get(dpo.job.id)?.training_method).toEqual({ method: "dpo" });
  });

  it("answers 400 for an unknown training file, without retrying", async () => {
    const fake = serve();
    const { provider: target, waits } = provider();
    const error = await failure(target.createJob({ model: MODEL, trainingFile: "file-missing" }));
    expect(error).toBeInstanceOf(BadRequestError);
    expect(error.message).toContain("file-missing");
    expect(calls(fake, "POST", "/fine-tunes")).toHaveLength(1);
    expect(waits).toEqual([]);
  });
});

describe("statuses", () => {
  const cases: Array<[string, JobStatus]> = [
    ["pending", "queued"],
    ["queued", "queued"],
    ["running", "running"],
    ["compressing", "running"],
    ["uploading", "running"],
    ["cancel_requested", "running"],
    ["cancelled", "cancelled"],
    ["error", "failed"],
    ["user_error", "failed"],
    ["completed", "succeeded"],
    ["validating_files", "validating"],
    ["paused_by_admin", "paused"],
    ["something_new", "running"],
  ];

  it.each(cases)("maps %s to %s and keeps the raw word", async (raw, status) => {
    serve({ statuses: [raw] });
    const { provider: target } = provider();
    const train = await upload(target);
    const { job } = await target.createJob({ model: MODEL, trainingFile: train.id });
    expect(job.status).toBe(status);
    expect(job.rawStatus).toBe(raw);
    const again = await target.retrieveJob(job.id);
    expect(again.status).toBe(status);
    if (status === "succeeded") expect(again.fineTunedModel).toMatch(/^tunekit-test\//);
    else expect(again.fineTunedModel).toBeUndefined();
  });

  it("moves a job from queued through running to completed across retrieves", async () => {
    serve();
    const { provider: target } = provider();
    const train = await upload(target);
    const { job } = await target.createJob({ model: MODEL, trainingFile: train.id, suffix: "demo" });
    const seenStatuses = [job.status];
    for (let index = 0; index < 3; index++) seenStatuses.push((await target.retrieveJob(job.id)).status);
    expect(seenStatuses).toEqual(["queued", "running", "succeeded", "succeeded"]);
    const done = await target.retrieveJob(job.id);
    expect(done.fineTunedModel).toContain("-demo-");
    expect(done.finishedAt).toBeInstanceOf(Date);
    expect(done.createdAt.getTime()).toBeLessThanOrEqual(done.finishedAt?.getTime() ?? 0);
    expect(done.trainedTokens).toBeGreaterThan(0);
  });

  it("answers 404 for an unknown job", async () => {
    serve();
    const error = await failure(provider().provider.retrieveJob("ft-unknown"));
    expect(error).toBeInstanceOf(NotFoundError);
    expect(error.status).toBe(404);
  });
});

describe("failed jobs", () => {
  it("gives the reason from the job's error event", async () => {
    serve({ failure: { message: "CUDA out of memory at step 3" } });
    const { provider: target } = provider();
    const train = await upload(target);
    const { job } = await target.createJob({ model: MODEL, trainingFile: train.id });
    await target.retrieveJob(job.id);
    const failed = await target.retrieveJob(job.id);
    expect(failed).toMatchObject({
      status: "failed",
      rawStatus: "error",
      error: { message: "CUDA out of memory at step 3" },
    });
    const events = await target.listEvents(job.id);
    expect(events.at(-1)).toMatchObject({ level: "error", message: "CUDA out of memory at step 3" });
  });

  it("looks the reason up in the events when the job comes without them", async () => {
    serve();
    server.use(
      http.get(`${BASE}/fine-tunes/ft-broken`, () =>
        HttpResponse.json({ id: "ft-broken", status: "user_error", created_at: "2025-01-01T00:00:00Z" }),
      ),
      http.get(`${BASE}/fine-tunes/ft-broken/events`, () =>
        HttpResponse.json({
          data: [
            {
              object: "fine-tune-event",
              created_at: "2025-01-01T00:00:01Z",
              message: "started",
              type: "job_start",
            },
            {
              object: "fine-tune-event",
              created_at: "2025-01-01T00:00:02Z",
              message: "Your dataset has no assistant messages",
              type: "job_error",
              level: null,
            },
          ],
        }),
      ),
    );
    const failed = await provider().provider.retrieveJob("ft-broken");
    expect(failed.error).toEqual({ message: "Your dataset has no assistant messages" });
  });
});

describe("cancelJob", () => {
  it("asks to cancel (still running), then reports the job cancelled", async () => {
    const fake = serve();
    const { provider: target } = provider();
    const train = await upload(target);
    const { job } = await target.createJob({ model: MODEL, trainingFile: train.id });
    const asked = await target.cancelJob(job.id);
    expect(asked).toMatchObject({ status: "running", rawStatus: "cancel_requested" });
    expect(calls(fake, "POST", `/fine-tunes/${job.id}/cancel`)).toHaveLength(1);
    const after = await target.retrieveJob(job.id);
    expect(after).toMatchObject({ status: "cancelled", rawStatus: "cancelled" });
    expect(after.finishedAt).toBeInstanceOf(Date);
  });
});

describe("listMetrics", () => {
  it("reads the losses Together logs apart from events (GET /fine-tunes/{id}/metrics), oldest step first", async () => {
    serve({ totalSteps: 6 });
    const { provider: target } = provider();
    const train = await upload(target);
    const validation = await upload(target);
    const { job } = await target.createJob({
      model: MODEL,
      trainingFile: train.id,
      validationFile: validation.id,
    });
    const listMetrics = (id: string) =>
      target.listMetrics?.(id) ?? Promise.reject(new Error("no listMetrics"));
    expect(await listMetrics(job.id)).toEqual([]);
    await target.retrieveJob(job.id); // running
    const metrics = await listMetrics(job.id);
    expect(metrics.map((entry) => entry.step)).toEqual([1, 2, 3, 4, 5, 6, 6]);
    expect(metrics[0]?.trainLoss).toBeCloseTo(2);
    expect(metrics.at(-1)).toEqual({ step: 6, validLoss: expect.any(Number) });
    expect(metrics[2]).toMatchObject({ step: 3, epoch: expect.any(Number) });
  });

  it("skips entries without a step or a loss", async () => {
    const { toJobMetrics } = await import("../../src/providers/together/events.js");
    expect(
      toJobMetrics([
        { "train/loss": 1.5 },
        { "train/global_step": 2, "train/learning_rate": 0.1 },
        { "train/global_step": 3, "train/loss": "x" },
        { "eval/global_step": 4, "eval/loss": 0.5 },
        { "train/global_step": 1, "train/loss": 2 },
      ]),
    ).toEqual([
      { step: 1, trainLoss: 2 },
      { step: 4, validLoss: 0.5 },
    ]);
  });
});

describe("listEvents", () => {
  async function finishedJob() {
    serve({ totalSteps: 8 });
    const { provider: target } = provider();
    const train = await upload(target);
    const { job } = await target.createJob({ model: MODEL, trainingFile: train.id });
    return { target, jobId: job.id };
  }

  it("gives the events oldest first, with dates from Together's strings", async () => {
    const { target, jobId } = await finishedJob();
    await target.retrieveJob(jobId);
    await target.retrieveJob(jobId);
    const events = await target.listEvents(jobId);
    expect(events.length).toBeGreaterThan(5);
    const times = events.map((event) => event.createdAt.getTime());
    expect(times).toEqual([...times].sort((a, b) => a - b));
    expect(new Set(events.map((event) => event.id)).size).toBe(events.length);
    expect(events[0]?.message).toBe("Fine-tune request created");
    const checkpoint = events.find((event) => (event.raw as { type?: string }).type === "checkpoint_save");
    expect(checkpoint?.metrics).toEqual({ step: 4, totalSteps: 8 });
    expect(events.find((event) => event.message === "Job started")?.metrics).toBeUndefined();
  });

  it("returns the events strictly after `after`, each once, as the job goes on", async () => {
    const { target, jobId } = await finishedJob();
    const collected: ProviderEvent[] = [];
    let cursor: string | undefined;
    for (let poll = 0; poll < 4; poll++) {
      const fresh = await target.listEvents(jobId, cursor === undefined ? {} : { after: cursor });
      collected.push(...fresh);
      cursor = collected.at(-1)?.id ?? cursor;
      await target.retrieveJob(jobId);
    }
    const all = await target.listEvents(jobId);
    expect(collected.map((event) => event.id)).toEqual(all.map((event) => event.id));

    const third = all[2];
    expect(third).toBeDefined();
    expect((await target.listEvents(jobId, { after: third?.id ?? "" })).map((event) => event.id)).toEqual(
      all.slice(3).map((event) => event.id),
    );
    expect(await target.listEvents(jobId, { after: all.at(-1)?.id ?? "" })).toEqual([]);
  });

  it("gives events without a hash ids that stay the same from call to call", async () => {
    serve();
    const event = {
      object: "fine-tune-event",
      created_at: "2025-01-01T00:00:00Z",
      message: "tick",
      type: "warning",
    };
    server.use(
      http.get(`${BASE}/fine-tunes/ft-old/events`, () =>
        HttpResponse.json({
          data: [event, event, { ...event, message: "loss", loss: 1.25, step: 3, level: "Warning" }],
        }),
      ),
    );
    const { provider: target } = provider();
    const first = await target.listEvents("ft-old");
    const second = await target.listEvents("ft-old");
    expect(first.map((item) => item.id)).toEqual(second.map((item) => item.id));
    expect(new Set(first.map((item) => item.id)).size).toBe(3);
    expect(first[2]).toMatchObject({ level: "warn", metrics: { step: 3, trainLoss: 1.25 } });
    expect(await target.listEvents("ft-old", { after: first[0]?.id ?? "" })).toHaveLength(2);
  });
});

describe("listCheckpoints", () => {
  it("lists the intermediate and the final checkpoint, oldest step first", async () => {
    serve({ totalSteps: 10 });
    const { provider: target } = provider();
    const train = await upload(target);
    const { job } = await target.createJob({ model: MODEL, trainingFile: train.id });
    expect(await target.listCheckpoints(job.id)).toEqual([]);
    await target.retrieveJob(job.id);
    await target.retrieveJob(job.id);
    const checkpoints = await target.listCheckpoints(job.id);
    expect(checkpoints.map(({ step, model }) => ({ step, model }))).toEqual([
      { step: 5, model: `${job.id}:5` },
      { step: 10, model: job.id },
    ]);
    expect(new Set(checkpoints.map((checkpoint) => checkpoint.id)).size).toBe(2);
    expect(checkpoints[0]?.createdAt).toBeInstanceOf(Date);
  });
});

describe("listJobs", () => {
  it("lists newest first, a page at a time", async () => {
    serve();
    const { provider: target } = provider();
    const train = await upload(target);
    const ids: string[] = [];
    for (let index = 0; index < 3; index++) {
      ids.push((await target.createJob({ model: MODEL, trainingFile: train.id })).job.id);
    }
    const first = await target.listJobs({ limit: 2 });
    expect(first.data.map((job) => job.id)).toEqual([ids[2], ids[1]]);
    expect(first.nextCursor).toBe(ids[1]);
    const second = await target.listJobs({ after: first.nextCursor ?? "", limit: 2 });
    expect(second.data.map((job) => job.id)).toEqual([ids[0]]);
    expect(second.nextCursor).toBeUndefined();
  });
});

describe("Together, up to date", () => {
  it("from a checkpoint sends no model; a fractional LoRA alpha is refused by name", async () => {
    const fake = serve();
    const { provider: target } = provider();
    const train = await upload(target);
    const { job } = await target.createJob({
      model: MODEL,
      trainingFile: train.id,
      providerOptions: { from_checkpoint: "ft-abc:10" },
    });
    expect(fake.state.jobRequests.get(job.id)).not.toHaveProperty("model");
    expect(fake.state.jobRequests.get(job.id)).toMatchObject({ from_checkpoint: "ft-abc:10" });
    await expect(
      target.createJob({
        model: MODEL,
        trainingFile: train.id,
        hyperparameters: { lora: { r: 8, alpha: 16.5 } },
      }),
    ).rejects.toThrow(/LoRA alpha must be a whole number \(Together's lora_alpha is an integer\), got 16\.5/);
  });

  it("the estimate has two answers: unavailable with its reason, or available, perhaps without a price", async () => {
    const request = async (price: NonNullable<NonNullable<Parameters<typeof serve>[0]>["price"]>) => {
      serve({ price });
      const { provider: target } = provider();
      const train = await upload(target);
      return target.estimatePrice?.({ model: MODEL, trainingFile: train.id });
    };
    expect(await request({ unavailable: "multimodal_dataset" })).toMatchObject({
      available: false,
      unavailableReason: "multimodal_dataset",
    });
    const unpriced = await request({ totalUSD: null, trainTokens: 500 });
    expect(unpriced).toMatchObject({ available: true, trainingTokens: 500 });
    expect(unpriced).not.toHaveProperty("totalUSD");
  });

  it("a fine-tuned model without a dedicated endpoint: the error says so and what to do", async () => {
    serve();
    const { provider: target } = provider();
    const train = await upload(target);
    const { job } = await target.createJob({ model: MODEL, trainingFile: train.id, suffix: "support" });
    let info = await target.retrieveJob(job.id);
    while (info.status !== "succeeded") info = await target.retrieveJob(job.id);
    const error = await target
      .chat(info.fineTunedModel as string)
      .complete([{ role: "user", content: "hi" }])
      .catch((caught: unknown) => caught);
    expect((error as Error).message).toContain("Unable to access non-serverless model");
    expect((error as Error).message).toContain("dedicated endpoints, billed by the minute");
  });
});

describe("estimatePrice", () => {
  it("sends the estimate fields and reads Together's answer", async () => {
    const fake = serve({ price: { totalUSD: 4.2, trainTokens: 12_000, allowed: false } });
    const { provider: target } = provider();
    const train = await upload(target);
    const estimate = await target.estimatePrice?.({
      model: MODEL,
      trainingFile: train.id,
      hyperparameters: { epochs: 2, learningRate: 0.001, lora: { r: 8 } },
      suffix: "ignored-here",
    });
    expect(estimate).toMatchObject({
      available: true,
      totalUSD: 4.2,
      trainingTokens: 12_000,
      allowed: false,
    });
    expect(calls(fake, "POST", "/fine-tunes/estimate-price")[0]?.body).toEqual({
      model: MODEL,
      training_file: train.id,
      n_epochs: 2,
      training_type: {
        type: "Lora",
        lora_r: 8,
        lora_alpha: 16,
        lora_dropout: 0,
        lora_trainable_modules: "all-linear",
      },
      training_method: { method: "sft", train_on_inputs: "auto" },
    });
  });
});

describe("chat", () => {
  it("many calls with one signal leave no listener on it", async () => {
    serve({ chatReply: "ok" });
    const target = provider().provider.chat("my-org/model-ft");
    const controller = new AbortController();
    for (let index = 0; index < 12; index++)
      await target.complete([{ role: "user", content: `hi ${index}` }], { signal: controller.signal });
    expect(getEventListeners(controller.signal, "abort")).toHaveLength(0);
  });

  it("completes over the OpenAI-compatible endpoint", async () => {
    const fake = serve({ chatReply: (messages) => `you sent ${messages.length} messages` });
    const target = provider().provider.chat("my-org/model-ft");
    expect(target).toMatchObject({ provider: "together", modelId: "my-org/model-ft" });
    const answer = await target.complete(
      [
        { role: "user", content: "hi" },
        { role: "assistant", content: "hello", weight: 0 },
        { role: "user", content: "again" },
      ],
      { maxTokens: 20, temperature: 0 },
    );
    expect(answer.text).toBe("you sent 3 messages");
    expect(answer.usage?.promptTokens).toBeGreaterThan(0);
    expect(calls(fake, "POST", "/chat/completions")[0]?.body).toEqual({
      model: "my-org/model-ft",
      messages: [
        { role: "user", content: "hi" },
        { role: "assistant", content: "hello" },
        { role: "user", content: "again" },
      ],
      max_tokens: 20,
      temperature: 0,
    });
  });
});

describe("retries", () => {
  it("retries a 429 after the retry-after Together sends, creating the job once", async () => {
    const fake = serve({
      failures: [{ match: { method: "POST", path: "/fine-tunes" }, status: 429, retryAfter: 3 }],
    });
    const { provider: target, waits } = provider();
    const train = await upload(target);
    waits.length = 0;
    const { job } = await target.createJob({ model: MODEL, trainingFile: train.id });
    expect(waits).toEqual([3000]);
    expect(calls(fake, "POST", "/fine-tunes").map((request) => request.status)).toEqual([429, 200]);
    expect(fake.state.jobRequests.size).toBe(1);
    expect(job.status).toBe("queued");
  });

  it("retries 500s and dropped connections, on the upload storage too", async () => {
    const fake = serve({
      failures: [
        { match: { method: "POST", path: "/files" }, status: 500 },
        { match: { method: "PUT" }, status: "network" },
        { match: { method: "GET" }, status: 503, times: 2 },
      ],
    });
    const { provider: target, waits } = provider({ filePollInterval: 0 });
    const file = await upload(target);
    expect(file.status).toBe("processed");
    expect(fake.state.requests.map((request) => request.status)).toEqual([
      500, 302, 0, 200, 200, 503, 503, 200,
    ]);
    expect(waits.length).toBe(5);
  });

  it("gives up after two retries with the last error", async () => {
    const fake = serve({ failures: [{ status: 429, times: 10 }] });
    const error = await failure(provider().provider.retrieveJob("ft-x"));
    expect(error).toBeInstanceOf(RateLimitError);
    expect(error.message).toBe("together: Rate limit exceeded, please try again later");
    expect(fake.state.requests).toHaveLength(3);
  });

  it("fails a dropped connection that stays down with a ConnectionError", async () => {
    const fake = serve({ failures: [{ status: "network", times: 5 }] });
    const error = await failure(provider({ maxRetries: 1 }).provider.listEvents("ft-x"));
    expect(error).toBeInstanceOf(ConnectionError);
    expect(fake.state.requests).toHaveLength(2);
  });

  it("does not retry a wrong key", async () => {
    const fake = serve();
    const { waits } = provider();
    const error = await failure(together({ apiKey: "wrong-key", sleep: async () => {} }).retrieveJob("ft-x"));
    expect(error).toBeInstanceOf(AuthenticationError);
    expect(error.status).toBe(401);
    expect(fake.state.requests).toHaveLength(1);
    expect(waits).toEqual([]);
  });
});

describe("abort", () => {
  it("sends nothing when the signal already fired", async () => {
    const fake = serve();
    const controller = new AbortController();
    controller.abort();
    const error = await provider()
      .provider.listJobs({ signal: controller.signal })
      .catch((caught: unknown) => caught);
    expect((error as Error).name).toBe("AbortError");
    expect(fake.state.requests).toHaveLength(0);
  });

  it("stops retrying once the signal fires", async () => {
    const fake = serve({ failures: [{ status: 503, times: 5 }] });
    const controller = new AbortController();
    const target = together({
      apiKey: KEY,
      sleep: async (_ms, signal) => {
        controller.abort();
        signal?.throwIfAborted();
      },
    });
    const error = await target
      .retrieveJob("ft-x", { signal: controller.signal })
      .catch((caught: unknown) => caught);
    expect((error as Error).name).toBe("AbortError");
    expect(fake.state.requests).toHaveLength(1);
  });

  it("stops waiting for file processing once the signal fires", async () => {
    serve({ fileProcessingChecks: 100 });
    const controller = new AbortController();
    let polls = 0;
    const target = together({
      apiKey: KEY,
      sleep: async (_ms, signal) => {
        if (++polls === 3) controller.abort();
        signal?.throwIfAborted();
      },
    });
    const error = await target
      .uploadFile({ filename: "train.jsonl", data: DATA }, { signal: controller.signal })
      .catch((caught: unknown) => caught);
    expect((error as Error).name).toBe("AbortError");
    expect(polls).toBe(3);
  });
});

describe("the API key", () => {
  it("never appears in an error message", async () => {
    serve({ rejectFiles: `bad file uploaded with ${KEY}` });
    const echo = (message: string, status: number) => () =>
      HttpResponse.json({ error: { message: `${message} ${KEY}` } }, { status });
    server.use(
      http.get(`${BASE}/fine-tunes/ft-403`, echo("key has no access:", 403)),
      http.get(`${BASE}/fine-tunes/ft-500`, echo("crashed while using", 500)),
      http.get(
        `${BASE}/fine-tunes/ft-text`,
        () => new HttpResponse(`Bearer ${KEY} rejected`, { status: 400 }),
      ),
      http.get(`${BASE}/fine-tunes/ft-odd`, () => HttpResponse.json({ id: 7, status: KEY })),
      http.get(`${BASE}/fine-tunes/ft-down/events`, () => HttpResponse.error()),
    );
    const { provider: target } = provider({ maxRetries: 0 });
    const errors = [
      await failure(target.retrieveJob("ft-403")),
      await failure(target.retrieveJob("ft-500")),
      await failure(target.retrieveJob("ft-text")),
      await failure(target.retrieveJob("ft-odd")),
      await failure(target.listEvents("ft-down")),
      await failure(upload(target)),
      await failure(together({ apiKey: `${KEY}-wrong`, maxRetries: 0 }).listJobs()),
    ];
    expect(errors.map((error) => error.constructor.name)).toEqual([
      "PermissionDeniedError",
      "ProviderError",
      "BadRequestError",
      "ProviderError",
      "ConnectionError",
      "ProviderError",
      "AuthenticationError",
    ]);
    for (const error of errors) {
      expect(error.message).not.toContain(KEY);
      expect(String(error)).not.toContain(KEY);
    }
    expect(errors[0]?.message).toBe("together: key has no access: [redacted]");
  });
});
