import { spawn } from "node:child_process";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  DataFormatError,
  FineTuneFailedError,
  NotFoundError,
  ValidationError,
} from "../../src/core/errors.js";
import { Dataset } from "../../src/data/dataset.js";
import { DEFAULT_CHAT_TEMPLATE } from "../../src/engine/chat-template.js";
import { LocalModel } from "../../src/engine/local-model.js";
import type { FineTuneJobEvent } from "../../src/jobs/events.js";
import { FineTuneJob } from "../../src/jobs/fine-tune-job.js";
import { local } from "../../src/providers/local/index.js";
import type { LocalProvider } from "../../src/providers/local/provider.js";
import type { CreateJobRequest } from "../../src/providers/spec.js";
import { TINY_LLAMA, writeTinyModel } from "../../src/testing/tiny-model.js";
import { jsonl, ROOT } from "../helpers.js";
import { CONTRACT_ROWS, fineTuneJobContract } from "../jobs/contract.js";

/** Folders made here live for the whole file (the contract's jobs outlive single tests). */
const folders: string[] = [];
async function folder(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "tunekit-local-"));
  folders.push(dir);
  return dir;
}
let model = "";
let brokenModel = "";
beforeAll(async () => {
  model = await writeTinyModel(join(await folder(), "tiny"), TINY_LLAMA);
  // A model folder that passes the checks at creation and fails to load: its weights are cut short.
  brokenModel = await writeTinyModel(join(await folder(), "broken"), TINY_LLAMA);
  const weights = await readFile(join(brokenModel, "model.safetensors"));
  await writeFile(join(brokenModel, "model.safetensors"), weights.subarray(0, weights.length / 2));
});
afterAll(async () => {
  for (const dir of folders.splice(0)) await rm(dir, { recursive: true, force: true });
});

/** A few steps on the tiny model: 12 short conversations, blocks of 128 tokens, 2 blocks a step. */
const short = (epochs = 2) => ({
  hyperparameters: { epochs, batchSize: 2, learningRate: 1e-2 },
  providerOptions: { gradientAccumulation: 1, loggingSteps: 1, maxSeqLength: 128 },
});
const fast = { pollInterval: 1, maxPollInterval: 20 };

async function provider(outputDir?: string): Promise<LocalProvider> {
  return local({ outputDir: outputDir ?? (await folder()), quantization: "none", threads: 2 });
}

fineTuneJobContract("local() on a tiny model", {
  succeeding: async () => {
    const target = await provider();
    return { provider: target, model, options: short(), dispose: () => target[Symbol.asyncDispose]() };
  },
  longRunning: async () => {
    const target = await provider();
    return { provider: target, model, options: short(1000), dispose: () => target[Symbol.asyncDispose]() };
  },
  failing: async () => {
    const target = await provider();
    return {
      provider: target,
      model: brokenModel,
      options: short(),
      dispose: () => target[Symbol.asyncDispose](),
    };
  },
});

async function collect(job: FineTuneJob): Promise<FineTuneJobEvent[]> {
  const events: FineTuneJobEvent[] = [];
  for await (const event of job.events()) events.push(event);
  return events;
}

const messages = (events: FineTuneJobEvent[]) =>
  events.flatMap((event) => (event.type === "message" ? [event.message] : []));

/** The path of a job's record. */
const recordOf = (target: LocalProvider, id: string) => join(target.outputDir, "jobs", id, "job.json");

describe("local(): uploads", () => {
  it("stores the bytes under outputDir/files/<id>.jsonl, processed at once", async () => {
    await using target = await provider();
    const text = jsonl(CONTRACT_ROWS.slice(0, 2));
    const file = await target.uploadFile({ filename: "train.jsonl", data: new TextEncoder().encode(text) });
    expect(file).toMatchObject({ filename: "train.jsonl", bytes: text.length, status: "processed" });
    expect(file.id).toMatch(/^file-local-[0-9a-f]+$/);
    expect(await readFile(join(target.outputDir, "files", `${file.id}.jsonl`), "utf8")).toBe(text);
    expect((await readdir(join(target.outputDir, "files"))).filter((name) => name.endsWith(".tmp"))).toEqual(
      [],
    );
  });

  it("refuses a line that is not a JSON object, with its line number", async () => {
    await using target = await provider();
    const data = new TextEncoder().encode(`${JSON.stringify(CONTRACT_ROWS[0])}\n[1, 2]\n`);
    const error = await target
      .uploadFile({ filename: "train.jsonl", data })
      .catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(DataFormatError);
    expect((error as Error).message).toBe("train.jsonl:2: each line must be a JSON object");
  });
});

describe("local(): creating jobs", () => {
  async function request(
    target: LocalProvider,
    extra: Partial<CreateJobRequest> = {},
  ): Promise<CreateJobRequest> {
    const file = await target.uploadFile({
      filename: "train.jsonl",
      data: new TextEncoder().encode(jsonl(CONTRACT_ROWS)),
    });
    return { model, trainingFile: file.id, ...extra };
  }

  it("maps hyperparameters and providerOptions to the trainer, every default written down", async () => {
    await using target = await provider();
    const { job, warnings } = await target.createJob(
      await request(target, {
        hyperparameters: { epochs: 1, batchSize: 2, learningRate: 1e-3, warmupRatio: 0.1, lora: { r: 4 } },
        seed: 7,
        providerOptions: { gradientAccumulation: 1, maxSeqLength: 96, saveSteps: 2, scheduler: "cosine" },
      }),
    );
    expect(warnings).toEqual([]);
    expect(job).toMatchObject({ provider: "local", model, status: "queued", rawStatus: "queued" });
    expect(job.hyperparameters).toEqual({
      epochs: 1,
      batchSize: 2,
      learningRate: 1e-3,
      warmupRatio: 0.1,
      lora: { r: 4, alpha: 32, dropout: 0.05, targetModules: "all-linear" },
    });
    const record = JSON.parse(await readFile(recordOf(target, job.id), "utf8"));
    expect(record.train).toEqual({
      epochs: 1,
      batchSize: 2,
      learningRate: 1e-3,
      warmupRatio: 0.1,
      seed: 7,
      gradientAccumulation: 1,
      maxSeqLength: 96,
      saveSteps: 2,
      scheduler: "cosine",
      lora: { r: 4, alpha: 32, dropout: 0.05 },
    });
    expect(record.load).toEqual({ quantization: "none", threads: 2 });
    const attached = await FineTuneJob.attach(target, job.id, fast);
    expect((await attached.wait()).status).toBe("succeeded");
    expect((await target.listCheckpoints(job.id)).map((checkpoint) => checkpoint.step)).toEqual([2, 4, 6]);
  });

  it("reports what it cannot honour as warnings, as the cloud adapters do", async () => {
    await using target = await provider();
    const { job, warnings } = await target.createJob(
      await request(target, {
        hyperparameters: { epochs: "auto", batchSize: "max", learningRateMultiplier: 2 },
        suffix: "support",
        providerOptions: { maxSeqLength: 64, loggingSteps: 1 },
      }),
    );
    expect(warnings.map((warning) => [warning.type, warning.setting])).toEqual([
      ["unsupported-setting", "hyperparameters.epochs"],
      ["unsupported-setting", "hyperparameters.batchSize"],
      ["unsupported-setting", "hyperparameters.learningRateMultiplier"],
      ["unsupported-setting", "suffix"],
    ]);
    expect(warnings[0]?.message).toBe(
      'local training has no "auto" epochs; the trainer\'s default (3) applies',
    );
    expect(job.hyperparameters).toMatchObject({ epochs: 3, batchSize: 4, learningRate: 2e-4 });
    // The warnings are in the job's log too, for whoever attaches later.
    const logged = (await target.listEvents(job.id)).filter((event) => event.level === "warn");
    expect(logged.map((event) => event.message)).toEqual(warnings.map((warning) => warning.message));
    await target.cancelJob(job.id);
  });

  it("refuses what it cannot run, before anything starts", async () => {
    await using target = await provider();
    const base = await request(target);
    const refusal = (extra: Partial<CreateJobRequest>) =>
      target.createJob({ ...base, ...extra }).then(
        () => undefined,
        (caught: unknown) => caught as Error,
      );
    const dpo = await refusal({ method: { type: "dpo" } });
    expect(dpo).toBeInstanceOf(ValidationError);
    expect(dpo?.message).toBe(
      'method.type: local: local training is supervised fine-tuning only; it cannot run the "dpo" method',
    );
    expect((await refusal({ method: { type: "reinforcement", settings: {} } }))?.message).toContain(
      '"reinforcement"',
    );
    const unknown = await refusal({ providerOptions: { n_epochs: 3 } });
    expect(unknown?.message).toMatch(
      /^providerOptions: local: local training does not know n_epochs \(it takes epochs, /,
    );
    expect((await refusal({ providerOptions: { maxSeqLength: 0 } }))?.message).toMatch(
      /^providerOptions\.maxSeqLength: /,
    );
    expect((await refusal({ hyperparameters: { lora: { targetModules: ["qkv"] } } }))?.message).toMatch(
      /^hyperparameters\.lora\.targetModules\.0: local: Invalid option: expected one of "q_proj"/,
    );
    expect((await refusal({ providerOptions: { resumeFrom: "latest" } }))?.message).toContain(
      "pass the id of the job to continue",
    );
    expect((await refusal({ providerOptions: { computeDtype: "fp16" } }))?.message).toMatch(
      /^providerOptions\.computeDtype: local: Invalid option: expected one of "f32"\|"bf16"/,
    );
    expect(() => local({ outputDir: target.outputDir, computeDtype: "fp16" as "f32" })).toThrow(
      'local: computeDtype must be "f32" or "bf16", not "fp16"',
    );
    const missing = await refusal({ trainingFile: "file-local-00" });
    expect(missing).toBeInstanceOf(NotFoundError);
    expect(missing?.message).toMatch(/^trainingFile: local: no uploaded file file-local-00 in /);
    const noModel = await refusal({ model: join(target.outputDir, "nowhere") });
    expect(noModel?.message).toMatch(/is not a Hugging Face id \(owner\/name\)$/);
    expect(await readdir(target.outputDir)).toEqual(["files"]);
  });

  it("cancels a queued job at once, and disposing the provider stops the running one", async () => {
    const target = await provider();
    const first = await target.createJob(await request(target, short(1000)));
    const second = await target.createJob(await request(target, short(1000)));
    expect((await target.listEvents(second.job.id)).map((event) => event.message)).toContain(
      "Waiting for 1 earlier job(s): local jobs train one at a time",
    );
    const cancelled = await target.cancelJob(second.job.id);
    expect(cancelled).toMatchObject({ status: "cancelled", rawStatus: "cancelled" });
    const watcher = await FineTuneJob.attach(target, first.job.id, fast);
    for await (const event of watcher.events()) if (event.type === "metrics") break;
    await target[Symbol.asyncDispose]();
    const info = await target.retrieveJob(first.job.id);
    expect(info.status).toBe("cancelled");
    const checkpoints = await target.listCheckpoints(first.job.id);
    expect(checkpoints).toHaveLength(1);
    expect(messages(await collect(watcher)).at(-1)).toBe(
      `Cancelled at step ${checkpoints[0]?.step}; its checkpoint is ${checkpoints[0]?.model}: continue with a new job, providerOptions: { resumeFrom: "${first.job.id}" }`,
    );
    expect(() => target.chat(model)).toThrow("local: this provider has been disposed");
  });
});

describe("local(): jobs after a restart", () => {
  it("a new provider on the same outputDir lists the finished job and attaches to it", async () => {
    const outputDir = await folder();
    let id: string;
    let events: FineTuneJobEvent[];
    {
      await using first = await provider(outputDir);
      const job = await FineTuneJob.create({
        provider: first,
        model,
        training: Dataset.fromArray(CONTRACT_ROWS),
        ...short(),
        ...fast,
      });
      events = await collect(job);
      id = job.id;
    }
    await using second = await provider(outputDir);
    const listed = [];
    for await (const info of FineTuneJob.list(second)) listed.push(info);
    expect(listed.map((info) => [info.id, info.status])).toEqual([[id, "succeeded"]]);
    const attached = await FineTuneJob.attach(second, id, fast);
    const replay = await collect(attached);
    expect(messages(replay)).toEqual(messages(events));
    const result = await attached.wait();
    expect(result.fineTunedModel).toBe(join(outputDir, "jobs", id, "adapter"));
    expect(result.trainedTokens).toBeGreaterThan(0);
  });

  it("writes each record whole: a reader never sees a half-written one, and no temporary file stays", async () => {
    await using target = await provider();
    const job = await FineTuneJob.create({
      provider: target,
      model,
      training: Dataset.fromArray(CONTRACT_ROWS),
      ...short(4),
      ...fast,
    });
    const file = recordOf(target, job.id);
    let reads = 0;
    let done = false;
    const reader = (async () => {
      while (!done) {
        JSON.parse(await readFile(file, "utf8"));
        reads++;
      }
    })();
    await job.wait();
    done = true;
    await reader;
    expect(reads).toBeGreaterThan(10);
    const record = JSON.parse(await readFile(file, "utf8"));
    expect(record).toMatchObject({
      format: "tunekit-local-job",
      version: 1,
      id: job.id,
      status: "succeeded",
    });
    const names = await readdir(join(target.outputDir, "jobs", job.id));
    expect(names.filter((name) => name.endsWith(".tmp"))).toEqual([]);
  });

  it("a job whose process died reads as failed, and a new job resumes from its last checkpoint", {
    timeout: 60_000,
  }, async () => {
    const outputDir = await folder();
    const script = join(await folder(), "train.mts");
    const url = (path: string) => JSON.stringify(pathToFileURL(join(ROOT, path)).href);
    await writeFile(
      script,
      `import { Dataset } from ${url("src/data/dataset.ts")};
import { FineTuneJob } from ${url("src/jobs/fine-tune-job.ts")};
import { local } from ${url("src/providers/local/index.ts")};
const [outputDir, model, rows, options] = process.argv.slice(2).map((arg) => JSON.parse(arg));
const provider = local({ outputDir, quantization: "none", threads: 2 });
const job = await FineTuneJob.create({ provider, model, training: Dataset.fromArray(rows), ...options, pollInterval: 5 });
for await (const event of job.events()) if (event.type === "checkpoint-created") console.log(job.id);
`,
    );
    const options = short(1000);
    options.providerOptions = { ...options.providerOptions, saveSteps: 3 } as typeof options.providerOptions;
    const child = spawn(
      process.execPath,
      [
        "--import",
        "tsx",
        script,
        ...[outputDir, model, CONTRACT_ROWS, options].map((arg) => JSON.stringify(arg)),
      ],
      { cwd: ROOT, stdio: ["ignore", "pipe", "inherit"] },
    );
    const exited = new Promise((resolve) => child.on("exit", resolve));
    const id = await new Promise<string>((resolve, reject) => {
      child.stdout.on("data", (chunk: Buffer) => resolve(chunk.toString().trim().split("\n")[0] as string));
      exited.then((code) => reject(new Error(`the training process ended early (exit code ${code})`)));
    });
    child.kill("SIGKILL");
    await exited;

    await using target = await provider(outputDir);
    const info = await target.retrieveJob(id);
    expect(info).toMatchObject({
      status: "failed",
      rawStatus: "interrupted",
      error: { code: "process_ended" },
    });
    expect(info.error?.message).toMatch(
      new RegExp(
        `^the process running this job \\(pid ${child.pid}\\) ended before the job finished; its last checkpoint is .*checkpoint-\\d+: continue with a new job on the same data and settings, providerOptions: \\{ resumeFrom: "${id}" \\}$`,
      ),
    );
    const attached = await FineTuneJob.attach(target, id, fast);
    expect(await attached.wait().catch((caught: unknown) => caught)).toBeInstanceOf(FineTuneFailedError);
    // The verdict is written down: it holds even if the process id comes back.
    expect(JSON.parse(await readFile(recordOf(target, id), "utf8")).status).toBe("failed");

    const resumedFrom = Number(/checkpoint-(\d+):/.exec(info.error?.message ?? "")?.[1]);
    const resumed = await FineTuneJob.create({
      provider: target,
      model,
      training: Dataset.fromArray(CONTRACT_ROWS),
      hyperparameters: short().hyperparameters,
      providerOptions: { ...short().providerOptions, epochs: 3, resumeFrom: id },
      ...fast,
    });
    const events = await collect(resumed);
    const steps = events.flatMap((event) => (event.type === "metrics" ? [event.metrics.step] : []));
    expect(steps[0]).toBe(resumedFrom + 1);
    expect(events.at(-1)?.type).toBe("succeeded");

    // The same rules as LocalTrainer: adapter settings that contradict the checkpoint are refused
    // when the job is created, before any model loads.
    await expect(
      FineTuneJob.create({
        provider: target,
        model,
        training: Dataset.fromArray(CONTRACT_ROWS),
        hyperparameters: { ...short().hyperparameters, lora: { r: 3 } },
        providerOptions: { ...short().providerOptions, epochs: 4, resumeFrom: resumed.id },
        ...fast,
      }),
    ).rejects.toMatchObject({ code: "resume_mismatch", message: expect.stringContaining("(asked 3)") });
  });
});

describe("local(): evaluation and chat", () => {
  it("a validation file gives eval metrics: validation loss and token accuracy", async () => {
    await using target = await provider();
    const job = await FineTuneJob.create({
      provider: target,
      model,
      training: Dataset.fromArray(CONTRACT_ROWS),
      validation: Dataset.fromArray(CONTRACT_ROWS.slice(0, 3)),
      ...short(),
      ...fast,
    });
    const events = await collect(job);
    const evals = events.flatMap((event) =>
      event.type === "metrics" && event.metrics.validLoss !== undefined ? [event.metrics] : [],
    );
    expect(evals.map((metrics) => metrics.epoch)).toEqual([1, 2]);
    for (const metrics of evals) {
      expect(metrics.validLoss).toBeGreaterThan(0);
      expect(metrics.validTokenAccuracy).toBeGreaterThanOrEqual(0);
      expect(metrics.validTokenAccuracy).toBeLessThanOrEqual(1);
    }
    expect((await job.wait()).validationFile).toMatch(/^file-local-/);
  });

  it("chat on the adapter folder answers as the base model with the adapter loaded", async () => {
    await using target = await provider();
    const job = await FineTuneJob.create({
      provider: target,
      model,
      training: Dataset.fromArray(CONTRACT_ROWS),
      ...short(),
      ...fast,
    });
    const { fineTunedModel } = await job.wait();
    const question = [
      { role: "system" as const, content: "Be kind." },
      { role: "user" as const, content: "question 3" },
    ];
    const reply = await target
      .chat(fineTunedModel as string)
      .complete(question, { maxTokens: 12, temperature: 0 });
    await using reference = await LocalModel.load(model);
    await reference.loadAdapter(fineTunedModel as string);
    const prompt = reference.tokenizer.encode(
      reference.tokenizer.applyChatTemplate(question, {
        addGenerationPrompt: true,
        template: DEFAULT_CHAT_TEMPLATE,
      }),
      { addSpecialTokens: false },
    );
    const expected = await reference.generate(
      { inputIds: prompt },
      { maxTokens: 12, temperature: 0, stop: ["\nUser:"] },
    );
    expect(reply).toEqual({
      text: expected.text,
      finishReason: expected.finishReason,
      usage: { promptTokens: prompt.length, completionTokens: expected.tokenIds.length },
    });
    // A checkpoint folder is an adapter too.
    const [checkpoint] = await target.listCheckpoints(job.id);
    const fromCheckpoint = await target
      .chat(checkpoint?.model as string)
      .complete(question, { maxTokens: 4 });
    expect(fromCheckpoint.text).toEqual(expect.any(String));
  });
});
