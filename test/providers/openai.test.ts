import { getEventListeners } from "node:events";
import { HttpResponse, http } from "msw";
import { setupServer } from "msw/node";
import OpenAI, { APIConnectionError, APIError, toFile } from "openai";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import {
  AuthenticationError,
  BadRequestError,
  ConnectionError,
  DataFormatError,
  NotFoundError,
  ProviderError,
  RateLimitError,
  TunekitError,
  ValidationError,
} from "../../src/core/errors.js";
import { openai } from "../../src/providers/openai/index.js";
import { parseResultMetrics } from "../../src/providers/openai/results.js";
import type { CreateJobRequest, FineTuningProvider, JobInfo } from "../../src/providers/spec.js";
import {
  OPENAI_TEST_API_KEY,
  type OpenAIFineTuningHandlersOptions,
  type OpenAIRecordedRequest,
  openaiFineTuningHandlers,
  releaseResponseCopies,
} from "../../src/testing/openai.js";
import { chatRow, jsonl } from "../helpers.js";

const BASE = "https://api.openai.com/v1";
const MODEL = "gpt-4o-mini-2024-07-18";
const TRAINING = new TextEncoder().encode(jsonl([chatRow(), chatRow("ping", "pong")]));

const server = setupServer();
releaseResponseCopies(server);
beforeAll(() =>
  server.listen({
    // Every request must hit the fake, except the openai SDK's own probe of `fetch("data:,")` (it checks
    // FormData support once before the first upload), which msw cannot match with a handler.
    onUnhandledRequest: (request, print) => {
      if (!request.url.startsWith("data:")) print.error();
    },
  }),
);
beforeEach(() => {
  // The machine running the tests may have these set; the tests decide them.
  for (const name of [
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "OPENAI_ORG_ID",
    "OPENAI_PROJECT_ID",
    "OPENAI_LOG",
  ]) {
    vi.stubEnv(name, "");
  }
});
afterEach(() => {
  server.resetHandlers();
  vi.unstubAllEnvs();
});
afterAll(() => server.close());

function serve(options: OpenAIFineTuningHandlersOptions = {}) {
  const fake = openaiFineTuningHandlers(options);
  server.use(...fake.handlers);
  return fake;
}

function provider(options: Parameters<typeof openai>[0] = {}): FineTuningProvider {
  // A day before the base models' shutdown is near: their warnings have tests of their own.
  return openai({
    apiKey: OPENAI_TEST_API_KEY,
    filePollIntervalMs: 1,
    now: () => new Date("2026-06-01"),
    ...options,
  });
}

/** The official client against the fake, with retries fast enough for tests. */
function client(options: ConstructorParameters<typeof OpenAI>[0] = {}) {
  return new OpenAI({ apiKey: OPENAI_TEST_API_KEY, baseURL: BASE, ...options });
}

async function failure(promise: Promise<unknown>): Promise<Error> {
  const error = await promise.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(Error);
  return error as Error;
}

async function uploadTraining(target: FineTuningProvider, filename = "train.jsonl") {
  return target.uploadFile({ filename, data: TRAINING });
}

async function createJob(target: FineTuningProvider, request: Partial<CreateJobRequest> = {}) {
  const file = await uploadTraining(target);
  return target.createJob({ model: MODEL, trainingFile: file.id, ...request });
}

/** Retrieves until the job stops changing status or ends. */
async function runToEnd(target: FineTuningProvider, job: JobInfo): Promise<JobInfo[]> {
  const seen = [job];
  for (let index = 0; index < 20; index++) {
    const next = await target.retrieveJob(job.id);
    seen.push(next);
    if (["succeeded", "failed", "cancelled"].includes(next.status)) break;
  }
  return seen;
}

const requestsTo = (requests: OpenAIRecordedRequest[], method: string, path: RegExp | string) =>
  requests.filter(
    (request) =>
      request.method === method &&
      (typeof path === "string" ? request.path === path : path.test(request.path)),
  );

describe("the fake API, called with the official openai client", () => {
  it("takes a multipart upload with purpose fine-tune, processes it and serves its content", async () => {
    const fake = serve();
    const api = client();
    const created = await api.files.create({
      file: await toFile(TRAINING, "train.jsonl"),
      purpose: "fine-tune",
    });
    expect(created).toMatchObject({ object: "file", filename: "train.jsonl", bytes: TRAINING.byteLength });
    expect(created.id).toMatch(/^file-[A-Za-z0-9]{24}$/);
    expect(created.status).toBe("uploaded");
    expect((await api.files.retrieve(created.id)).status).toBe("processed");
    expect(await (await api.files.content(created.id)).text()).toBe(new TextDecoder().decode(TRAINING));

    const upload = requestsTo(fake.state.requests, "POST", "/files")[0];
    expect(upload?.headers["content-type"]).toMatch(/^multipart\/form-data; boundary=/);
    expect(upload?.body).toEqual({
      purpose: "fine-tune",
      file: expect.objectContaining({ filename: "train.jsonl", size: TRAINING.byteLength }),
    });
  });

  it("refuses uploads the API refuses: no purpose, an unknown one, a fine-tune file that is not .jsonl", async () => {
    serve();
    const api = client({ maxRetries: 0 });
    const file = await toFile(TRAINING, "train.csv");
    const notJsonl = await failure(api.files.create({ file, purpose: "fine-tune" }));
    expect(notJsonl).toBeInstanceOf(APIError);
    expect((notJsonl as APIError).status).toBe(400);
    expect(notJsonl.message).toContain("Must be .jsonl");
    const badPurpose = await failure(
      api.files.create({ file: await toFile(TRAINING, "a.jsonl"), purpose: "training" as "fine-tune" }),
    );
    expect((badPurpose as APIError).param).toBe("purpose");
  });

  it("runs a job through its statuses, logs events newest first and pages them with after and has_more", async () => {
    const fake = serve();
    const api = client();
    const file = await api.files.create({
      file: await toFile(TRAINING, "train.jsonl"),
      purpose: "fine-tune",
    });
    await api.files.retrieve(file.id);
    const job = await api.fineTuning.jobs.create({ model: MODEL, training_file: file.id, suffix: "support" });
    expect(job).toMatchObject({
      object: "fine_tuning.job",
      status: "validating_files",
      fine_tuned_model: null,
      organization_id: "org-tunekit",
      method: { type: "supervised", supervised: { hyperparameters: { n_epochs: "auto" } } },
    });
    const statuses = [job.status];
    for (let index = 0; index < 4; index++)
      statuses.push((await api.fineTuning.jobs.retrieve(job.id)).status);
    expect(statuses).toEqual(["validating_files", "queued", "running", "succeeded", "succeeded"]);
    const done = await api.fineTuning.jobs.retrieve(job.id);
    expect(done.fine_tuned_model).toMatch(new RegExp(`^ft:${MODEL}:personal:support:[A-Za-z0-9]{8}$`));
    expect(done.hyperparameters).toEqual({ n_epochs: 3, batch_size: 1, learning_rate_multiplier: 2 });
    expect(done.result_files).toHaveLength(1);

    const firstPage = await api.fineTuning.jobs.listEvents(job.id, { limit: 5 });
    expect(firstPage.data).toHaveLength(5);
    expect(firstPage.has_more).toBe(true);
    expect(firstPage.data[0]?.message).toBe("The job has successfully completed");
    const all = [];
    for await (const event of api.fineTuning.jobs.listEvents(job.id, { limit: 5 })) all.push(event);
    expect(all.at(-1)?.message).toBe(`Created fine-tuning job: ${job.id}`);
    expect(new Set(all.map((event) => event.id)).size).toBe(all.length);
    const cursors = requestsTo(fake.state.requests, "GET", /\/events$/).map((request) => request.query.after);
    expect(cursors.slice(1, 3)).toEqual([undefined, firstPage.data.at(-1)?.id]);
    const metrics = all.filter((event) => event.type === "metrics");
    expect(metrics).toHaveLength(6);
    expect(metrics.at(-1)?.data).toMatchObject({ step: 1, total_steps: 6, train_loss: 2.55 });
  });

  it("lists jobs newest first with cursor pages, and answers 404 for unknown ids", async () => {
    const fake = serve();
    const api = client({ maxRetries: 0 });
    const file = await api.files.create({
      file: await toFile(TRAINING, "train.jsonl"),
      purpose: "fine-tune",
    });
    await api.files.retrieve(file.id);
    const ids = [];
    for (let index = 0; index < 3; index++) {
      ids.push((await api.fineTuning.jobs.create({ model: MODEL, training_file: file.id })).id);
    }
    const listed = [];
    for await (const job of api.fineTuning.jobs.list({ limit: 2 })) listed.push(job.id);
    expect(listed).toEqual([...ids].reverse());
    expect(
      requestsTo(fake.state.requests, "GET", "/fine_tuning/jobs").map((request) => request.query),
    ).toEqual([{ limit: "2" }, { limit: "2", after: ids[1] }]);
    const missing = await failure(api.fineTuning.jobs.retrieve("ftjob-nope"));
    expect((missing as APIError).status).toBe(404);
    expect((missing as APIError).requestID).toMatch(/^req_[0-9a-f]{32}$/);
    const missingFile = await failure(api.files.retrieve("file-nope"));
    expect(missingFile.message).toContain("No such File object: file-nope");
  });

  it("refuses a job on a file that is not processed yet, or that does not exist", async () => {
    serve({ fileStatuses: ["uploaded", "uploaded", "processed"] });
    const api = client({ maxRetries: 0 });
    const file = await api.files.create({
      file: await toFile(TRAINING, "train.jsonl"),
      purpose: "fine-tune",
    });
    const early = await failure(api.fineTuning.jobs.create({ model: MODEL, training_file: file.id }));
    expect(early).toMatchObject({ status: 400, param: "training_file", code: "file_not_ready" });
    const unknown = await failure(
      api.fineTuning.jobs.create({ model: MODEL, training_file: "file-unknown" }),
    );
    expect(unknown).toMatchObject({ status: 400, param: "training_file" });
  });

  it("pauses, resumes and cancels, and refuses to cancel a finished job", async () => {
    serve({ statuses: ["running", "succeeded"] });
    const api = client({ maxRetries: 0 });
    const file = await api.files.create({
      file: await toFile(TRAINING, "train.jsonl"),
      purpose: "fine-tune",
    });
    await api.files.retrieve(file.id);
    const job = await api.fineTuning.jobs.create({ model: MODEL, training_file: file.id });
    expect((await api.fineTuning.jobs.pause(job.id)).status as string).toBe("paused");
    expect((await api.fineTuning.jobs.retrieve(job.id)).status as string).toBe("paused");
    expect((await api.fineTuning.jobs.resume(job.id)).status).toBe("running");
    expect((await api.fineTuning.jobs.cancel(job.id)).status).toBe("cancelled");
    const again = await failure(api.fineTuning.jobs.cancel(job.id));
    expect((again as APIError).status).toBe(400);
  });

  it("serves checkpoints newest first and the result CSV base64-encoded", async () => {
    serve({ statuses: ["succeeded"] });
    const api = client();
    const file = await api.files.create({
      file: await toFile(TRAINING, "train.jsonl"),
      purpose: "fine-tune",
    });
    await api.files.retrieve(file.id);
    const job = await api.fineTuning.jobs.create({ model: MODEL, training_file: file.id });
    const checkpoints = (await api.fineTuning.jobs.checkpoints.list(job.id)).data;
    expect(checkpoints.map((checkpoint) => checkpoint.step_number)).toEqual([6, 4, 2]);
    expect(checkpoints[0]).toMatchObject({
      object: "fine_tuning.job.checkpoint",
      fine_tuning_job_id: job.id,
      fine_tuned_model_checkpoint: `${job.fine_tuned_model}:ckpt-step-6`,
      metrics: { step: 6 },
    });
    const resultId = job.result_files[0] ?? "";
    const encoded = await (await api.files.content(resultId)).text();
    const csv = Buffer.from(encoded, "base64").toString("utf8");
    expect(csv.split("\n")[0]).toBe("step,train_loss,train_accuracy,valid_loss,valid_mean_token_accuracy");
    expect(csv.split("\n")[1]).toBe("1,2.55,0.575,,");
  });

  it("answers chat completions, for base models and the fine-tuned one, and 404 for unknown fine-tuned models", async () => {
    serve({ statuses: ["succeeded"] });
    const api = client({ maxRetries: 0 });
    const answer = await api.chat.completions.create({
      model: MODEL,
      messages: [{ role: "user", content: "hi" }],
    });
    expect(answer.choices[0]?.message.content).toBe("You said: hi");
    expect(answer.usage?.completion_tokens).toBeGreaterThan(0);
    const missing = await failure(
      api.chat.completions.create({
        model: "ft:gpt-4o-mini:x::y",
        messages: [{ role: "user", content: "hi" }],
      }),
    );
    expect(missing).toMatchObject({ status: 404, code: "model_not_found" });
  });

  it("answers 401 to a wrong or missing key, without repeating the key", async () => {
    serve();
    const key = "sk-wrong-key-0123456789-must-not-leak";
    const wrong = await failure(client({ apiKey: key, maxRetries: 0 }).files.retrieve("file-x"));
    expect(wrong).toMatchObject({ status: 401, code: "invalid_api_key" });
    expect(wrong.message).toContain("Incorrect API key provided: sk-");
    expect(wrong.message).not.toContain(key);
    const anonymous = await fetch(`${BASE}/fine_tuning/jobs`);
    expect(anonymous.status).toBe(401);
    expect(((await anonymous.json()) as { error: { message: string } }).error.message).toContain(
      "You didn't provide an API key",
    );
    const unknownPath = await failure(client({ maxRetries: 0 }).get("/nothing/here"));
    expect(unknownPath.message).toContain("Invalid URL (GET /v1/nothing/here)");
  });

  it("injects 429 with retry-after, 500 and dropped connections, which the client retries", async () => {
    const fake = serve({
      failures: [
        { request: "GET /fine_tuning/jobs", status: 429, retryAfter: 0.01 },
        { request: "GET /fine_tuning/jobs", status: 500, retryAfterMs: 1 },
        { request: /^GET \/files\//, drop: true },
      ],
    });
    const api = client({ maxRetries: 2 });
    expect((await api.fineTuning.jobs.list()).data).toEqual([]);
    expect(requestsTo(fake.state.requests, "GET", "/fine_tuning/jobs")).toHaveLength(3);
    const dropped = await failure(client({ maxRetries: 0 }).files.retrieve("file-x"));
    expect(dropped).toBeInstanceOf(APIConnectionError);
  });
});

describe("openai(): files", () => {
  it("uploads with purpose fine-tune and waits until the file is processed", async () => {
    const fake = serve({ fileStatuses: ["uploaded", "uploaded", "processed"] });
    const file = await uploadTraining(provider());
    expect(file).toMatchObject({ filename: "train.jsonl", bytes: TRAINING.byteLength, status: "processed" });
    expect(file.createdAt).toBeInstanceOf(Date);
    const upload = requestsTo(fake.state.requests, "POST", "/files")[0];
    expect(upload?.body).toEqual({
      purpose: "fine-tune",
      file: {
        filename: "train.jsonl",
        type: expect.any(String),
        size: TRAINING.byteLength,
        text: new TextDecoder().decode(TRAINING),
      },
    });
    expect(requestsTo(fake.state.requests, "GET", `/files/${file.id}`)).toHaveLength(2);
  });

  it("returns at once without waitForProcessing", async () => {
    const fake = serve();
    const file = await provider().uploadFile({
      filename: "train.jsonl",
      data: TRAINING,
      waitForProcessing: false,
    });
    expect(file).toMatchObject({ status: "uploaded", rawStatus: "uploaded" });
    expect(fake.state.requests).toHaveLength(1);
  });

  it("fails with the file's status_details when OpenAI cannot process it", async () => {
    serve({ fileStatuses: ["uploaded", "error"], fileStatusDetails: "Line 3 is not valid JSON." });
    const error = await failure(uploadTraining(provider()));
    expect(error).toBeInstanceOf(ProviderError);
    expect(error).toMatchObject({ code: "file_rejected" });
    expect(error.message).toContain("train.jsonl");
    expect(error.message).toContain("Line 3 is not valid JSON.");
  });

  it("gives up waiting after fileProcessingTimeoutMs", async () => {
    serve({ fileStatuses: ["uploaded"] });
    const error = await failure(
      provider({ filePollIntervalMs: 5, fileProcessingTimeoutMs: 30 }).uploadFile({
        filename: "train.jsonl",
        data: TRAINING,
      }),
    );
    expect(error).toMatchObject({ code: "file_processing_timeout" });
  });
});

describe("openai(): creating jobs", () => {
  it("sends the body the API expects: method with hyperparameters, suffix, seed, metadata, validation file", async () => {
    const fake = serve();
    const target = provider();
    const validation = await uploadTraining(target, "valid.jsonl");
    const { job, warnings } = await createJob(target, {
      validationFile: validation.id,
      hyperparameters: { epochs: 3, batchSize: "auto", learningRateMultiplier: 1.8 },
      suffix: "support",
      seed: 42,
      metadata: { team: "support" },
      providerOptions: { integrations: [{ type: "wandb", wandb: { project: "tunekit" } }] },
    });
    expect(warnings).toEqual([]);
    const body = requestsTo(fake.state.requests, "POST", "/fine_tuning/jobs")[0]?.body;
    expect(body).toEqual({
      model: MODEL,
      training_file: job.trainingFile,
      validation_file: validation.id,
      method: {
        type: "supervised",
        supervised: { hyperparameters: { n_epochs: 3, batch_size: "auto", learning_rate_multiplier: 1.8 } },
      },
      suffix: "support",
      seed: 42,
      metadata: { team: "support" },
      integrations: [{ type: "wandb", wandb: { project: "tunekit" } }],
    });
    expect(job).toMatchObject({
      provider: "openai",
      model: MODEL,
      status: "validating",
      rawStatus: "validating_files",
      validationFile: validation.id,
      hyperparameters: { epochs: 3, batchSize: "auto", learningRateMultiplier: 1.8 },
    });
    expect(job.id).toMatch(/^ftjob-/);
  });

  it("sends only the method type when nothing is set, and DPO with its beta", async () => {
    const fake = serve();
    const target = provider();
    await createJob(target);
    await createJob(target, { method: { type: "dpo", beta: 0.2 }, hyperparameters: { epochs: "auto" } });
    const bodies = requestsTo(fake.state.requests, "POST", "/fine_tuning/jobs").map(
      (request) => request.body,
    );
    expect(bodies[0]).toEqual({
      model: MODEL,
      training_file: expect.any(String),
      method: { type: "supervised" },
    });
    expect(bodies[1]).toMatchObject({
      method: { type: "dpo", dpo: { hyperparameters: { n_epochs: "auto", beta: 0.2 } } },
    });
  });

  it("passes reinforcement settings as they are, and lets providerOptions override the body", async () => {
    const fake = serve();
    const target = provider();
    const grader = {
      type: "string_check",
      name: "exact",
      input: "{{sample.output_text}}",
      operation: "eq",
      reference: "{{item.answer}}",
    };
    await createJob(target, {
      method: { type: "reinforcement", settings: { grader, hyperparameters: { reasoning_effort: "low" } } },
      hyperparameters: { epochs: 2 },
      providerOptions: { model: "o4-mini-2025-04-16" },
    });
    expect(requestsTo(fake.state.requests, "POST", "/fine_tuning/jobs")[0]?.body).toMatchObject({
      model: "o4-mini-2025-04-16",
      method: {
        type: "reinforcement",
        reinforcement: { grader, hyperparameters: { n_epochs: 2, reasoning_effort: "low" } },
      },
    });
  });

  it("warns about settings OpenAI cannot honour and leaves them out", async () => {
    const fake = serve();
    const { warnings } = await createJob(provider(), {
      hyperparameters: {
        epochs: 2,
        batchSize: "max",
        learningRate: 1e-4,
        warmupRatio: 0.1,
        lora: { r: 16, alpha: 32 },
      },
    });
    expect(warnings.map((warning) => warning.setting)).toEqual([
      "hyperparameters.batchSize",
      "hyperparameters.learningRate",
      "hyperparameters.warmupRatio",
      "hyperparameters.lora",
    ]);
    expect(
      warnings.every((warning) => warning.type === "unsupported-setting" && warning.message !== ""),
    ).toBe(true);
    expect(requestsTo(fake.state.requests, "POST", "/fine_tuning/jobs")[0]?.body).toMatchObject({
      method: { type: "supervised", supervised: { hyperparameters: { n_epochs: 2 } } },
    });
  });

  it("refuses a suffix over 64 characters before sending anything", async () => {
    const fake = serve();
    const error = await failure(
      provider().createJob({ model: MODEL, trainingFile: "file-abc", suffix: "x".repeat(65) }),
    );
    expect(error).toBeInstanceOf(ValidationError);
    expect(error.message).toContain("64");
    expect((error as ValidationError).location).toEqual({ path: "suffix" });
    expect(fake.state.requests).toEqual([]);
    // 64 is allowed.
    await expect(createJob(provider(), { suffix: "x".repeat(64) })).resolves.toBeDefined();
  });

  it("refuses hyperparameters OpenAI would refuse, naming the setting", async () => {
    serve();
    const error = await failure(
      provider().createJob({ model: MODEL, trainingFile: "file-abc", hyperparameters: { epochs: 0 } }),
    );
    expect(error).toBeInstanceOf(ValidationError);
    expect((error as ValidationError).location).toEqual({ path: "hyperparameters.epochs" });
  });
});

describe("openai(): job status", () => {
  it.each([
    ["validating_files", "validating"],
    ["queued", "queued"],
    ["running", "running"],
    ["succeeded", "succeeded"],
    ["failed", "failed"],
    ["cancelled", "cancelled"],
    ["paused", "paused"],
    ["pending_moderation", "running"],
  ] as const)("maps %s to %s and keeps the raw word", async (raw, status) => {
    serve({ statuses: [raw] });
    const { job } = await createJob(provider());
    expect(job).toMatchObject({ status, rawStatus: raw });
    const again = await provider().retrieveJob(job.id);
    expect(again).toMatchObject({ status, rawStatus: raw });
  });

  it("follows a job to success: model, result file, resolved hyperparameters, tokens, times", async () => {
    serve();
    const target = provider();
    const { job } = await createJob(target);
    const seen = await runToEnd(target, job);
    expect(seen.map((info) => info.status)).toEqual(["validating", "queued", "running", "succeeded"]);
    const done = seen.at(-1) as JobInfo;
    expect(done.fineTunedModel).toMatch(/^ft:gpt-4o-mini-2024-07-18:personal::/);
    expect(done.hyperparameters).toEqual({ epochs: 3, batchSize: 1, learningRateMultiplier: 2 });
    expect(done.trainedTokens).toBeGreaterThan(0);
    expect(done.finishedAt).toBeInstanceOf(Date);
    expect(done.resultFiles).toHaveLength(1);
    expect(done.error).toBeUndefined();
    expect(seen[0]?.error).toBeUndefined();
  });

  it("reports a failed job's error with code, message and param", async () => {
    serve({
      statuses: ["validating_files", "failed"],
      error: {
        code: "invalid_n_examples",
        message: "Training file has 2 example(s), but must have at least 10.",
        param: "training_file",
      },
    });
    const target = provider();
    const { job } = await createJob(target);
    const failed = (await runToEnd(target, job)).at(-1);
    expect(failed).toMatchObject({
      status: "failed",
      error: {
        code: "invalid_n_examples",
        message: "Training file has 2 example(s), but must have at least 10.",
        param: "training_file",
      },
    });
    const events = await target.listEvents(job.id);
    expect(events.at(-1)).toMatchObject({ level: "error", message: expect.stringContaining("at least 10") });
  });

  it("reads an error without a param, and leaves out an error whose fields are all null", async () => {
    server.use(
      http.get(`${BASE}/fine_tuning/jobs/:id`, ({ params }) =>
        HttpResponse.json({
          object: "fine_tuning.job",
          id: params.id,
          model: MODEL,
          created_at: 1_700_000_000,
          status: params.id === "ftjob-failed" ? "failed" : "running",
          error:
            params.id === "ftjob-failed"
              ? { code: "server_error", message: "Something went wrong", param: null }
              : { code: null, message: null, param: null },
          fine_tuned_model: null,
          finished_at: null,
          hyperparameters: { n_epochs: "auto", batch_size: null, learning_rate_multiplier: "auto" },
          organization_id: "org-x",
          result_files: [],
          seed: 1,
          trained_tokens: null,
          training_file: "file-a",
          validation_file: null,
        }),
      ),
    );
    const target = provider();
    expect((await target.retrieveJob("ftjob-failed")).error).toEqual({
      code: "server_error",
      message: "Something went wrong",
    });
    const running = await target.retrieveJob("ftjob-running");
    expect(running.error).toBeUndefined();
    expect(running.hyperparameters).toEqual({ epochs: "auto", learningRateMultiplier: "auto" });
  });

  it("pauses, resumes and cancels", async () => {
    serve({ statuses: ["running"] });
    const target = provider();
    const { job } = await createJob(target);
    expect(await target.pauseJob?.(job.id)).toMatchObject({ status: "paused", rawStatus: "paused" });
    expect(await target.resumeJob?.(job.id)).toMatchObject({ status: "running" });
    expect(await target.cancelJob(job.id)).toMatchObject({ status: "cancelled" });
    const error = await failure(target.cancelJob(job.id));
    expect(error).toBeInstanceOf(BadRequestError);
  });

  it("lists jobs newest first, a page at a time", async () => {
    serve();
    const target = provider();
    const ids = [];
    for (let index = 0; index < 3; index++) ids.push((await createJob(target)).job.id);
    const first = await target.listJobs({ limit: 2 });
    expect(first.data.map((job) => job.id)).toEqual([ids[2], ids[1]]);
    expect(first.nextCursor).toBe(ids[1]);
    const second = await target.listJobs({ limit: 2, after: first.nextCursor as string });
    expect(second.data.map((job) => job.id)).toEqual([ids[0]]);
    expect(second.nextCursor).toBeUndefined();
  });
});

describe("openai(): events, checkpoints, results", () => {
  it("returns events oldest first, each once, across pages, with metrics", async () => {
    const fake = serve({ steps: 250, statuses: ["succeeded"] });
    const target = provider();
    const { job } = await createJob(target);
    const events = await target.listEvents(job.id);
    const stored = fake.state.jobs.get(job.id)?.events ?? [];
    expect(stored.length).toBeGreaterThan(200);
    expect(events.map((event) => event.id)).toEqual(stored.map((event) => event.id));
    expect(events[0]?.message).toBe(`Created fine-tuning job: ${job.id}`);
    expect(events.at(-1)?.message).toBe("The job has successfully completed");
    expect(requestsTo(fake.state.requests, "GET", /\/events$/).length).toBeGreaterThanOrEqual(3);
    const metrics = events.flatMap((event) => (event.metrics ? [event.metrics] : []));
    expect(metrics.map((entry) => entry.step)).toEqual(Array.from({ length: 250 }, (_, index) => index + 1));
    expect(metrics[0]).toEqual({ step: 1, totalSteps: 250, trainLoss: 2.55, trainTokenAccuracy: 0.5018 });
  });

  it("returns only the events after `after`, also as the job moves on and across pages", async () => {
    serve({ steps: 240, statuses: ["validating_files", "running", "running", "succeeded"] });
    const target = provider();
    const { job } = await createJob(target);
    const collected = await target.listEvents(job.id);
    let last = collected.at(-1)?.id;
    for (let index = 0; index < 3; index++) {
      await target.retrieveJob(job.id);
      const fresh = await target.listEvents(job.id, last === undefined ? {} : { after: last });
      expect(fresh.length).toBeGreaterThan(0);
      collected.push(...fresh);
      last = collected.at(-1)?.id;
    }
    const all = await target.listEvents(job.id);
    expect(collected.map((event) => event.id)).toEqual(all.map((event) => event.id));
    expect(await target.listEvents(job.id, { after: all.at(-1)?.id as string })).toEqual([]);
    const middle = all[100]?.id as string;
    expect((await target.listEvents(job.id, { after: middle })).map((event) => event.id)).toEqual(
      all.slice(101).map((event) => event.id),
    );
  });

  it("reports validation metrics in events when the job has a validation file", async () => {
    serve({ statuses: ["succeeded"] });
    const target = provider();
    const validation = await uploadTraining(target, "valid.jsonl");
    const { job } = await createJob(target, { validationFile: validation.id });
    const metrics = (await target.listEvents(job.id)).flatMap((event) =>
      event.metrics ? [event.metrics] : [],
    );
    expect(metrics[0]).toMatchObject({ step: 1, validLoss: 2.65, validTokenAccuracy: 0.525 });
  });

  it("lists checkpoints by step with their models and metrics", async () => {
    serve({ statuses: ["succeeded"] });
    const target = provider();
    const validation = await uploadTraining(target, "valid.jsonl");
    const { job } = await createJob(target, { validationFile: validation.id });
    const checkpoints = await target.listCheckpoints(job.id);
    expect(checkpoints.map((checkpoint) => checkpoint.step)).toEqual([2, 4, 6]);
    expect(checkpoints[2]).toMatchObject({
      id: expect.stringMatching(/^ftckpt_/),
      model: `${job.fineTunedModel}:ckpt-step-6`,
      metrics: { step: 6, trainLoss: expect.any(Number), validLoss: expect.any(Number) },
    });
    expect(checkpoints[0]?.createdAt).toBeInstanceOf(Date);
    // A checkpoint model answers chat like the fine-tuned model.
    const reply = await target
      .chat(checkpoints[0]?.model as string)
      .complete([{ role: "user", content: "hello" }]);
    expect(reply.text).toBe("You said: hello");
  });

  it("parses the result CSV, base64-encoded as the API sends it, with empty cells left absent", async () => {
    serve({ statuses: ["succeeded"] });
    const target = provider();
    const { job } = await createJob(target);
    const rows = await target.resultMetrics?.(job);
    expect(rows).toHaveLength(6);
    expect(rows?.[0]).toEqual({ step: 1, trainLoss: 2.55, trainTokenAccuracy: 0.575 });
    expect(rows?.every((row) => row.validLoss === undefined)).toBe(true);
  });

  it("parses a plain CSV with validation columns", async () => {
    serve({ statuses: ["succeeded"], resultFileEncoding: "csv" });
    const target = provider();
    const validation = await uploadTraining(target, "valid.jsonl");
    const { job } = await createJob(target, { validationFile: validation.id });
    const rows = await target.resultMetrics?.(job);
    expect(rows?.[5]).toEqual({
      step: 6,
      trainLoss: 0.64326,
      trainTokenAccuracy: 0.95,
      validLoss: 0.74326,
      validTokenAccuracy: 0.9,
    });
  });

  it("returns no result metrics before the job has a result file", async () => {
    const fake = serve();
    const target = provider();
    const { job } = await createJob(target);
    const before = fake.state.requests.length;
    expect(await target.resultMetrics?.(job)).toEqual([]);
    expect(fake.state.requests).toHaveLength(before);
  });

  it("reads result files the way the fine-tuning guide shows them, and names a bad cell's line", () => {
    const guide =
      "step,train_loss,train_accuracy,valid_loss,valid_mean_token_accuracy\n1,1.52347,0.0,,\n2,0.57719,0.0,0.61,0.5\n";
    expect(parseResultMetrics(guide, "file-r")).toEqual([
      { step: 1, trainLoss: 1.52347, trainTokenAccuracy: 0 },
      { step: 2, trainLoss: 0.57719, trainTokenAccuracy: 0, validLoss: 0.61, validTokenAccuracy: 0.5 },
    ]);
    const newer =
      "step,train_loss,train_mean_token_accuracy,valid_loss,full_valid_loss,extra\r\n3,0.5,0.9,,0.7,x\r\n";
    expect(parseResultMetrics(Buffer.from(newer).toString("base64"), "file-r")).toEqual([
      { step: 3, trainLoss: 0.5, trainTokenAccuracy: 0.9, validLoss: 0.7 },
    ]);
    const bad = "step,train_loss\n1,0.5\n2,oops\n";
    const error = (() => {
      try {
        parseResultMetrics(bad, "file-r");
      } catch (caught) {
        return caught;
      }
    })();
    expect(error).toBeInstanceOf(DataFormatError);
    expect((error as DataFormatError).location).toEqual({ file: "file-r", line: 3, path: "train_loss" });
  });
});

describe("openai(): chat", () => {
  it("sends messages in the chat API's shape without training-only fields, and returns text and usage", async () => {
    const fake = serve();
    const target = provider().chat(MODEL);
    expect(target).toMatchObject({ provider: "openai", modelId: MODEL });
    const reply = await target.complete(
      [
        { role: "system", content: "Be brief." },
        { role: "user", content: "Where is my order?" },
        { role: "assistant", content: "Which order?", weight: 0 },
        { role: "user", content: [{ type: "text", text: "The last one." }] },
      ],
      { maxTokens: 50, temperature: 0 },
    );
    expect(reply.text).toBe("You said: The last one.");
    expect(reply.usage).toEqual({ promptTokens: expect.any(Number), completionTokens: 5 });
    expect(requestsTo(fake.state.requests, "POST", "/chat/completions")[0]?.body).toEqual({
      model: MODEL,
      messages: [
        { role: "system", content: "Be brief." },
        { role: "user", content: "Where is my order?" },
        { role: "assistant", content: "Which order?" },
        { role: "user", content: [{ type: "text", text: "The last one." }] },
      ],
      max_completion_tokens: 50,
      temperature: 0,
    });
  });

  it("many calls with one signal leave no listener on it (the SDK's go with each call)", async () => {
    serve();
    const target = provider().chat(MODEL);
    const controller = new AbortController();
    for (let index = 0; index < 12; index++)
      await target.complete([{ role: "user", content: `hi ${index}` }], { signal: controller.signal });
    expect(getEventListeners(controller.signal, "abort")).toHaveLength(0);
  });

  it("answers with the fine-tuned model once the job succeeded, and 404 before", async () => {
    serve({ statuses: ["running", "succeeded"], chatReply: "Order 42 ships today." });
    const target = provider();
    const { job } = await createJob(target);
    const done = await target.retrieveJob(job.id);
    const reply = await target
      .chat(done.fineTunedModel as string)
      .complete([{ role: "user", content: "hi" }]);
    expect(reply.text).toBe("Order 42 ships today.");
    const error = await failure(
      target.chat("ft:gpt-4o-mini:personal::nothere").complete([{ role: "user", content: "hi" }]),
    );
    expect(error).toBeInstanceOf(NotFoundError);
  });
});

describe("openai(): retries, errors and aborts", () => {
  it("retries a 429 after its retry-after, then succeeds", async () => {
    const fake = serve({ failures: [{ request: "GET /fine_tuning/jobs", status: 429, retryAfter: 0.05 }] });
    const page = await provider().listJobs();
    expect(page.data).toEqual([]);
    const tries = requestsTo(fake.state.requests, "GET", "/fine_tuning/jobs");
    expect(tries).toHaveLength(2);
    expect((tries[1]?.at ?? 0) - (tries[0]?.at ?? 0)).toBeGreaterThanOrEqual(45);
    expect(tries[1]?.headers["x-stainless-retry-count"]).toBe("1");
  });

  it("gives up after maxRetries with a RateLimitError that keeps the request id and the SDK error", async () => {
    const fake = serve({ failures: [{ status: 429, retryAfterMs: 1, times: 5 }] });
    const error = await failure(provider({ maxRetries: 3 }).listJobs());
    expect(error).toBeInstanceOf(RateLimitError);
    expect(error).toMatchObject({ code: "rate_limited", status: 429, provider: "openai" });
    expect((error as ProviderError).requestId).toMatch(/^req_/);
    expect(error.cause).toBeInstanceOf(APIError);
    expect(error.message).toContain("rate_limit_exceeded");
    expect(fake.state.requests).toHaveLength(4);
  });

  it("retries 500s with the SDK's backoff: about 0.5 s, then 1 s", async () => {
    const fake = serve({ failures: [{ request: "GET /fine_tuning/jobs", status: 500, times: 2 }] });
    await provider().listJobs();
    const at = requestsTo(fake.state.requests, "GET", "/fine_tuning/jobs").map((request) => request.at);
    expect(at).toHaveLength(3);
    const [first = 0, second = 0, third = 0] = at;
    // 0.5 s and 1 s, each less up to 25 % jitter.
    expect(second - first).toBeGreaterThanOrEqual(370);
    expect(second - first).toBeLessThan(700);
    expect(third - second).toBeGreaterThanOrEqual(740);
    expect(third - second).toBeLessThan(1300);
  });

  it("retries a dropped connection, and reports one that stays down as a ConnectionError", async () => {
    const fake = serve({ failures: [{ request: "POST /fine_tuning/jobs", drop: true }] });
    const target = provider();
    const { job } = await createJob(target);
    expect(job.status).toBe("validating");
    expect(requestsTo(fake.state.requests, "POST", "/fine_tuning/jobs")).toHaveLength(2);
    expect(fake.state.jobs.size).toBe(1);

    fake.fail({ drop: true, times: 2 });
    const error = await failure(provider({ maxRetries: 1 }).retrieveJob(job.id));
    expect(error).toBeInstanceOf(ConnectionError);
    expect(error).toMatchObject({ code: "connection_failed", status: undefined });
    expect(error.cause).toBeInstanceOf(APIConnectionError);
  });

  it("does not retry a 401, and answers a ProviderError with status 401", async () => {
    const fake = serve();
    const error = await failure(provider({ apiKey: "sk-not-the-right-key-00000000" }).listJobs());
    expect(error).toBeInstanceOf(AuthenticationError);
    expect(error).toMatchObject({ status: 401, code: "authentication" });
    expect(error.message).toContain("invalid_api_key");
    expect(fake.state.requests).toHaveLength(1);
  });

  it("answers 404 for an unknown job as a NotFoundError", async () => {
    serve();
    const error = await failure(provider().retrieveJob("ftjob-missing"));
    expect(error).toBeInstanceOf(NotFoundError);
    expect(error.message).toContain("ftjob-missing");
  });

  it("aborts: before sending, in flight, while waiting for a retry and while waiting for processing", async () => {
    const fake = serve({ fileStatuses: ["uploaded"] });
    const target = provider({ filePollIntervalMs: 10_000 });
    const reason = new Error("stop");
    const before = await failure(target.listJobs({ signal: AbortSignal.abort(reason) }));
    expect(before).toBe(reason);
    expect(fake.state.requests).toHaveLength(0);

    const processing = new AbortController();
    const upload = target.uploadFile(
      { filename: "train.jsonl", data: TRAINING },
      { signal: processing.signal },
    );
    setTimeout(() => processing.abort(), 50);
    const started = Date.now();
    expect((await failure(upload)).name).toBe("AbortError");
    expect(Date.now() - started).toBeLessThan(2000);

    server.resetHandlers();
    serve({ latencyMs: 5000 });
    const inFlight = new AbortController();
    setTimeout(() => inFlight.abort(), 50);
    const flightStart = Date.now();
    expect((await failure(target.listJobs({ signal: inFlight.signal }))).name).toBe("AbortError");
    expect(Date.now() - flightStart).toBeLessThan(2000);

    server.resetHandlers();
    serve({ failures: [{ status: 429, retryAfter: 60 }] });
    const retrying = new AbortController();
    setTimeout(() => retrying.abort(), 50);
    const retryStart = Date.now();
    expect((await failure(target.listJobs({ signal: retrying.signal }))).name).toBe("AbortError");
    expect(Date.now() - retryStart).toBeLessThan(2000);
  });

  it("never puts the API key in an error message", async () => {
    const key = "sk-proj-secretKeyThatMustNeverLeak0123456789";
    const errors: Error[] = [];
    // The key is wrong for this server: 401.
    serve();
    errors.push(await failure(openai({ apiKey: key }).listJobs()));
    server.resetHandlers();
    // The key is right: 404, 429 after retries, 500 after retries, a dropped connection, a rejected file.
    const fake = serve({ apiKey: key, fileStatuses: ["uploaded", "error"] });
    const target = openai({ apiKey: key, maxRetries: 0, filePollIntervalMs: 1 });
    errors.push(await failure(target.retrieveJob("ftjob-missing")));
    fake.fail({ status: 429, retryAfterMs: 1 }, { status: 500 }, { drop: true });
    errors.push(await failure(target.listJobs()));
    errors.push(await failure(target.listJobs()));
    errors.push(await failure(target.listJobs()));
    errors.push(await failure(target.uploadFile({ filename: "train.jsonl", data: TRAINING })));
    // A server (or a proxy) that echoes the key back.
    server.use(
      http.get(`${BASE}/fine_tuning/jobs`, () =>
        HttpResponse.json(
          {
            error: {
              message: `Incorrect API key provided: ${key}`,
              type: "invalid_request_error",
              code: "invalid_api_key",
              param: null,
            },
          },
          { status: 401 },
        ),
      ),
    );
    errors.push(await failure(target.listJobs()));

    expect(errors.map((error) => (error as TunekitError).code)).toEqual([
      "authentication",
      "not_found",
      "rate_limited",
      "server_error",
      "connection_failed",
      "file_rejected",
      "authentication",
    ]);
    for (const error of errors) {
      expect(TunekitError.isInstance(error)).toBe(true);
      const texts = [error.message, String(error), error.stack ?? ""];
      const cause = error.cause;
      if (cause instanceof Error) texts.push(cause.message, cause.stack ?? "");
      for (const text of texts) expect(text).not.toContain(key);
    }
    expect(errors.at(-1)?.message).toContain("[redacted]");
  });

  it("reads the key from OPENAI_API_KEY on the first call, and says so when there is none", async () => {
    const fake = serve();
    const missing = await failure(openai().listJobs());
    expect(missing).toBeInstanceOf(AuthenticationError);
    expect(missing).toMatchObject({ code: "missing_api_key" });
    expect(missing.message).toContain("OPENAI_API_KEY");
    expect(fake.state.requests).toHaveLength(0);

    vi.stubEnv("OPENAI_API_KEY", OPENAI_TEST_API_KEY);
    await expect(openai().listJobs()).resolves.toEqual({ data: [] });
    expect(fake.state.requests[0]?.headers.authorization).toBe(`Bearer ${OPENAI_TEST_API_KEY}`);
  });

  it("uses a ready client as it is, and refuses settings beside it", async () => {
    const fake = serve({ baseURL: "https://proxy.example.com/openai/v1" });
    const ready = new OpenAI({ apiKey: OPENAI_TEST_API_KEY, baseURL: "https://proxy.example.com/openai/v1" });
    const target = openai({ client: ready });
    expect(target).toMatchObject({ name: "openai", validationTarget: "openai", specificationVersion: "v1" });
    await expect(target.listJobs()).resolves.toEqual({ data: [] });
    expect(fake.state.requests[0]?.path).toBe("/fine_tuning/jobs");
    expect(() => openai({ client: ready, apiKey: "sk-other" })).toThrow(ValidationError);
    expect(() => openai({ maxRetries: -1 })).toThrow(ValidationError);
  });

  it("sends the organization, which the API checks against the key", async () => {
    const fake = serve({ organization: "org-acme" });
    await provider({ organization: "org-acme" }).listJobs();
    expect(fake.state.requests[0]?.headers["openai-organization"]).toBe("org-acme");
    const error = await failure(provider({ organization: "org-other" }).listJobs());
    expect(error).toBeInstanceOf(AuthenticationError);
    expect(error.message).toContain("mismatched_organization");
  });
});
