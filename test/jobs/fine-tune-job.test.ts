import { describe, expect, it } from "vitest";
import {
  AuthenticationError,
  ConnectionError,
  FineTuneFailedError,
  RateLimitError,
} from "../../src/core/errors.js";
import { Dataset } from "../../src/data/dataset.js";
import type { FineTuneJobEvent } from "../../src/jobs/events.js";
import { FineTuneJob } from "../../src/jobs/fine-tune-job.js";
import { MockProvider } from "../../src/testing/mock-provider.js";
import { InvalidDatasetError } from "../../src/validate/validator.js";
import { chatRow, jsonl, tempFile } from "../helpers.js";

const rows = Array.from({ length: 12 }, (_, index) =>
  chatRow(`question ${index}`, `answer ${index}`, "Be kind."),
);
const fast = { pollInterval: 1, maxPollInterval: 2 };

async function collect(job: FineTuneJob, signal?: AbortSignal): Promise<FineTuneJobEvent[]> {
  const events: FineTuneJobEvent[] = [];
  for await (const event of job.events(signal ? { signal } : {})) events.push(event);
  return events;
}

const summary = (events: FineTuneJobEvent[]) =>
  events.map((event) => {
    switch (event.type) {
      case "status-changed":
        return `status:${event.status}`;
      case "message":
        return `message:${event.message}`;
      case "metrics":
        return `metrics:${event.metrics.step}`;
      case "checkpoint-created":
        return `checkpoint:${event.checkpoint.step}`;
      default:
        return event.type;
    }
  });

describe("FineTuneJob", () => {
  it("validates, uploads, creates, and reports the whole lifecycle in order", async () => {
    const provider = new MockProvider({ jobs: { checkpoints: [{ at: 4, step: 2, model: "ft:ckpt-2" }] } });
    const job = await FineTuneJob.create({
      provider,
      model: "gpt-4o-mini-2024-07-18",
      training: Dataset.fromArray(rows),
      hyperparameters: { epochs: 3 },
      suffix: "customer-support",
      ...fast,
    });
    expect(job.validation?.ok).toBe(true);
    expect(provider.uploads).toHaveLength(1);
    expect(provider.uploads[0]?.text).toBe(jsonl(rows));
    expect(provider.callsOf("createJob")[0]?.[0]).toEqual({
      model: "gpt-4o-mini-2024-07-18",
      trainingFile: "file-mock-1",
      hyperparameters: { epochs: 3 },
      suffix: "customer-support",
    });
    const events = await collect(job);
    expect(summary(events)).toEqual([
      "status:validating",
      "message:Validating training file",
      "message:Fine-tuning job started",
      "status:queued",
      "metrics:1",
      "status:running",
      "metrics:2",
      "metrics:3",
      "checkpoint:2",
      "message:The job has successfully completed",
      "status:succeeded",
      "succeeded",
    ]);
    const result = await job.wait();
    expect(result.fineTunedModel).toBe(`ft:gpt-4o-mini-2024-07-18:mock:customer-support:${job.id}`);
    expect(result.resultMetrics.map((metrics) => metrics.trainLoss)).toEqual([2.1, 1.4, 0.9]);
    // A reader that starts after the end still gets every event, in the same order.
    expect(await collect(job)).toEqual(events);
  });

  it("emits the same events on the emitter", async () => {
    const provider = new MockProvider();
    const job = await FineTuneJob.create({
      provider,
      model: "m",
      training: Dataset.fromArray(rows),
      ...fast,
    });
    const losses: number[] = [];
    job.on("metrics", (event) => losses.push(event.metrics.trainLoss ?? Number.NaN));
    await job.wait();
    expect(losses).toEqual([2.1, 1.4, 0.9]);
  });

  it("refuses an invalid dataset before uploading anything, with the report", async () => {
    const provider = new MockProvider();
    const bad = [...rows.slice(0, 9), { messages: [{ role: "user", content: "no reply" }] }];
    const error = await FineTuneJob.create({
      provider,
      model: "gpt-4o-mini",
      training: Dataset.fromArray(bad),
    }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(InvalidDatasetError);
    expect((error as InvalidDatasetError).report.counts).toEqual({ example_missing_assistant_message: 1 });
    expect((error as Error).message).toBe(
      "the training data has 1 error for openai (first: line 10: no assistant message to learn from)",
    );
    expect(provider.calls).toEqual([]);
  });

  it("takes a file path or an uploaded file id", async () => {
    const provider = new MockProvider();
    const path = await tempFile("support.jsonl", jsonl(rows));
    await FineTuneJob.create({
      provider,
      model: "m",
      training: path,
      validation: { fileId: "file-val" },
      ...fast,
    });
    expect(provider.uploads.map((upload) => upload.filename)).toEqual(["support.jsonl"]);
    const job = await FineTuneJob.create({ provider, model: "m", training: { fileId: "file-abc" }, ...fast });
    expect(provider.uploads).toHaveLength(1);
    expect(provider.callsOf("createJob")[1]?.[0]).toMatchObject({ trainingFile: "file-abc" });
    expect(provider.callsOf("createJob")[0]?.[0]).toMatchObject({ validationFile: "file-val" });
    await job.wait();
  });

  it("a failed job rejects wait() with the provider's error and ends the events with `failed`", async () => {
    const provider = new MockProvider({
      jobs: {
        statuses: ["queued", "running", "failed"],
        error: { code: "invalid_training_file", message: "line 3 is bad" },
      },
    });
    const job = await FineTuneJob.create({
      provider,
      model: "m",
      training: Dataset.fromArray(rows),
      ...fast,
    });
    const error = await job.wait().catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(FineTuneFailedError);
    expect(error).toMatchObject({
      jobId: job.id,
      error: { code: "invalid_training_file", message: "line 3 is bad" },
    });
    const events = await collect(job);
    expect(events.at(-1)).toMatchObject({ type: "failed", error: { message: "line 3 is bad" } });
  });

  it("cancel ends the job with `cancelled`", async () => {
    const provider = new MockProvider({
      jobs: { statuses: ["queued", "running", "running", "running", "succeeded"] },
    });
    const job = await FineTuneJob.create({
      provider,
      model: "m",
      training: Dataset.fromArray(rows),
      ...fast,
    });
    await job.cancel();
    await expect(job.wait()).rejects.toMatchObject({ code: "fine_tune_cancelled" });
    expect((await collect(job)).at(-1)?.type).toBe("cancelled");
  });

  it("pause and resume where the provider has them", async () => {
    const provider = new MockProvider({ jobs: { statuses: ["running", "running", "running", "succeeded"] } });
    const job = await FineTuneJob.attach(
      provider,
      (await provider.createJob({ model: "m", trainingFile: "f" })).job.id,
      { pollInterval: 1000 },
    );
    expect((await job.pause()).status).toBe("paused");
    expect((await job.resume()).status).toBe("running");
    job.stop();
    const statuses = summary(await collect(job)).filter((entry) => entry.startsWith("status"));
    expect(statuses).toEqual(["status:running", "status:paused", "status:running"]);
    await expect(FineTuneJob.attach(new MockProvider({ pausable: false }), "x")).rejects.toMatchObject({
      code: "not_found",
    });
  });

  it("attach watches an existing job from its first event", async () => {
    const provider = new MockProvider();
    const { job: created } = await provider.createJob({ model: "m", trainingFile: "f" });
    for (let step = 0; step < 3; step++) await provider.retrieveJob(created.id);
    const job = await FineTuneJob.attach(provider, created.id, fast);
    const events = summary(await collect(job));
    expect(events.slice(0, 4)).toEqual([
      "status:running",
      "message:Validating training file",
      "message:Fine-tuning job started",
      "metrics:1",
    ]);
    expect(events.at(-1)).toBe("succeeded");
  });

  it("survives transient failures without losing or repeating events", async () => {
    const provider = new MockProvider();
    const retrieve = provider.retrieveJob.bind(provider);
    const list = provider.listEvents.bind(provider);
    let calls = 0;
    provider.retrieveJob = async (id) => {
      calls++;
      if (calls === 2) throw new ConnectionError("connection_failed", "socket hang up", { provider: "mock" });
      if (calls === 4)
        throw new RateLimitError("rate_limited", "slow down", { provider: "mock", status: 429 });
      return retrieve(id);
    };
    // A provider that ignores `after` and repeats the whole log: events must still arrive once.
    provider.listEvents = async (id) => list(id);
    const job = await FineTuneJob.create({
      provider,
      model: "m",
      training: Dataset.fromArray(rows),
      ...fast,
    });
    const events = summary(await collect(job));
    expect(events.filter((entry) => entry.startsWith("metrics"))).toEqual([
      "metrics:1",
      "metrics:2",
      "metrics:3",
    ]);
    expect(events).toEqual(
      summary(
        await collect(
          await FineTuneJob.create({
            provider: new MockProvider(),
            model: "m",
            training: { fileId: "f" },
            ...fast,
          }),
        ),
      ),
    );
  });

  it("a permanent failure ends watching with that error", async () => {
    const provider = new MockProvider();
    provider.retrieveJob = async () => {
      throw new AuthenticationError("authentication", "bad key", { provider: "mock", status: 401 });
    };
    const job = await FineTuneJob.create({
      provider,
      model: "m",
      training: Dataset.fromArray(rows),
      ...fast,
    });
    await expect(job.wait()).rejects.toBeInstanceOf(AuthenticationError);
    await expect(collect(job)).rejects.toBeInstanceOf(AuthenticationError);
  });

  it("aborting a reader's signal ends that reader only; aborting the job's signal stops watching", async () => {
    const provider = new MockProvider({
      jobs: { statuses: ["running", "running", "running", "running", "succeeded"] },
    });
    const controller = new AbortController();
    const job = await FineTuneJob.create({
      provider,
      model: "m",
      training: Dataset.fromArray(rows),
      ...fast,
    });
    const reader = new AbortController();
    const seen: string[] = [];
    for await (const event of job.events({ signal: reader.signal })) {
      seen.push(event.type);
      reader.abort();
    }
    expect(seen).toEqual(["status-changed"]);
    expect((await job.wait()).status).toBe("succeeded");

    const stopped = await FineTuneJob.create({
      provider,
      model: "m",
      training: { fileId: "f" },
      signal: controller.signal,
      pollInterval: 5,
    });
    controller.abort();
    await expect(stopped.wait()).rejects.toMatchObject({ code: "watch_stopped" });
    expect(provider.callsOf("cancelJob")).toEqual([]);
  });

  it("list pages through every job, newest first", async () => {
    const provider = new MockProvider();
    for (let index = 0; index < 45; index++)
      await provider.createJob({ model: `m${index}`, trainingFile: "f" });
    const models: string[] = [];
    for await (const info of FineTuneJob.list(provider)) models.push(info.model);
    expect(models).toHaveLength(45);
    expect(models[0]).toBe("m44");
    expect(provider.callsOf("listJobs")).toHaveLength(3);
  });
});
