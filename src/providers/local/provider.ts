/**
 * The `local` provider: tunekit's provider specification over `LocalTrainer`, so the `FineTuneJob`
 * code that runs a job on OpenAI or Together runs it on this machine. Jobs train in the background of
 * this process, one at a time, each in `outputDir/jobs/<id>/` (checkpoints, the final adapter and
 * `job.json`, the record any process reads back).
 */
import { randomBytes } from "node:crypto";
import { readdir, stat } from "node:fs/promises";
import { hostname } from "node:os";
import { join, resolve } from "node:path";
import {
  DataFormatError,
  DisposedError,
  type ErrorCode,
  NotFoundError,
  TunekitError,
  ValidationError,
} from "../../core/errors.js";
import { writeFileAtomically } from "../../core/files.js";
import { plural } from "../../core/plural.js";
import { Dataset } from "../../data/dataset.js";
import { readModelConfig } from "../../engine/config.js";
import type { LoraOptions } from "../../engine/lora.js";
import { modelFolder, modelReference } from "../../engine/model-source.js";
import { isCheckpoint, latestCheckpoint } from "../../local/run-folder.js";
import { LocalTrainer, type TrainOptions } from "../../local/trainer.js";
import type { TrainingRun, TrainingRunEvent } from "../../local/training-run.js";
import {
  type CallOptions,
  type ChatTarget,
  type Checkpoint,
  type CreateJobRequest,
  type FineTuningProvider,
  type JobInfo,
  type JobMetrics,
  type JobStatus,
  type Page,
  type ProviderEvent,
  type ProviderWarning,
  TERMINAL_STATUSES,
  type UploadedFile,
  type UploadRequest,
} from "../spec.js";
import { LocalChatModels } from "./chat.js";
import {
  type JobRecord,
  PROVIDER,
  RECORD_FORMAT,
  RecordWriter,
  readRecord,
  type StoredEvent,
  toCheckpoint,
  toJobInfo,
  toProviderEvent,
  writeRecord,
} from "./record.js";
import { defined, jobSettings, type LoadSettings, type TrainSettings } from "./settings.js";

/** Options of `local()`. */
export interface LocalProviderOptions {
  /** Where uploads (`files/`) and jobs (`jobs/<id>/`: record, checkpoints, adapter) are kept. */
  outputDir: string;
  /** How base models load: "nf4" (QLoRA) or "none" (LoRA on the source dtype). Default "nf4". */
  quantization?: "nf4" | "none";
  /**
   * "bf16": the frozen weights' matrix products take bf16 inputs with fp32 sums (see
   * `LoadOptions.computeDtype`; CPUs without AVX-512 BF16 compute in fp32). Default "f32".
   */
  computeDtype?: "f32" | "bf16";
  /** Compute threads. Default: all hardware threads. */
  threads?: number;
}

const JOB_ID = /^ftjob-local-[0-9a-z]+$/;
const FILE_ID = /^file-local-[0-9a-f]+$/;
const DEFAULT_PAGE = 20;

/** A job this process trains (or has queued). Its record in memory is the truth; the file follows. */
interface LiveJob {
  record: JobRecord;
  writer: RecordWriter;
  controller: AbortController;
  /** True once it left the queue. */
  started: boolean;
  run: TrainingRun | undefined;
  /** The step metrics of the last step event, for the checkpoint saved after it. */
  lastStep: JobMetrics | undefined;
  /** Settles when the job has ended and its record is written. */
  finished: Promise<void>;
}

export class LocalProvider implements FineTuningProvider, AsyncDisposable {
  readonly specificationVersion = "v1" as const;
  readonly name = PROVIDER;
  readonly validationTarget = "local" as const;
  /** The absolute `outputDir`. */
  readonly outputDir: string;
  readonly #load: LoadSettings;
  readonly #live = new Map<string, LiveJob>();
  readonly #chat: LocalChatModels;
  /** Jobs train one after another: two at once would share the CPU and double the memory. */
  #queue: Promise<void> = Promise.resolve();
  #lastCreated = 0;
  #disposed = false;

  constructor(options: LocalProviderOptions) {
    if (typeof options?.outputDir !== "string" || options.outputDir.trim() === "") {
      throw new ValidationError(
        "invalid_argument",
        "local: outputDir is needed: the folder for jobs and uploads",
        {
          location: { path: "outputDir" },
        },
      );
    }
    const quantization = options.quantization ?? "nf4";
    if (quantization !== "nf4" && quantization !== "none") {
      throw new ValidationError(
        "invalid_argument",
        `local: quantization must be "nf4" or "none", not ${JSON.stringify(quantization)}`,
        { location: { path: "quantization" } },
      );
    }
    const threads = options.threads;
    if (threads !== undefined && !(Number.isInteger(threads) && threads > 0)) {
      throw new ValidationError(
        "invalid_argument",
        `local: threads must be a whole number > 0, got ${threads}`,
        {
          location: { path: "threads" },
        },
      );
    }
    const computeDtype = options.computeDtype;
    if (computeDtype !== undefined && computeDtype !== "f32" && computeDtype !== "bf16") {
      throw new ValidationError(
        "invalid_argument",
        `local: computeDtype must be "f32" or "bf16", not ${JSON.stringify(computeDtype)}`,
        { location: { path: "computeDtype" } },
      );
    }
    this.outputDir = resolve(options.outputDir);
    this.#load = {
      quantization,
      ...(computeDtype !== undefined ? { computeDtype } : {}),
      ...(threads !== undefined ? { threads } : {}),
    };
    this.#chat = new LocalChatModels(this.#load);
  }

  /** Keeps the JSON Lines bytes under `outputDir/files/<id>.jsonl`; every line must be a JSON object. */
  async uploadFile(request: UploadRequest, options: CallOptions = {}): Promise<UploadedFile> {
    this.#open();
    if (typeof request?.filename !== "string" || request.filename.trim() === "")
      throw invalid("uploadFile needs a filename, like train.jsonl", "filename");
    if (!(request.data instanceof Uint8Array))
      throw invalid("uploadFile needs the file's bytes as a Uint8Array", "data");
    checkJsonLines(request.data, request.filename);
    options.signal?.throwIfAborted();
    const id = `file-local-${randomBytes(8).toString("hex")}`;
    await writeFileAtomically(this.#filePath(id), request.data);
    return {
      id,
      filename: request.filename,
      bytes: request.data.byteLength,
      status: "processed",
      rawStatus: "stored",
      createdAt: new Date(),
    };
  }

  /**
   * Checks the request (the model is a folder or a Hub id, the files exist, every setting is valid),
   * writes the job's record and queues the training; returns the job as `queued`.
   */
  async createJob(
    request: CreateJobRequest,
    options: CallOptions = {},
  ): Promise<{ job: JobInfo; warnings: ProviderWarning[] }> {
    this.#open();
    if (typeof request !== "object" || request === null)
      throw invalid("createJob needs a request", "request");
    const { settings, warnings } = jobSettings(request, this.#load);
    const model = await resolveModel(request.model);
    await this.#requireFile(request.trainingFile, "trainingFile");
    if (request.validationFile !== undefined)
      await this.#requireFile(request.validationFile, "validationFile");
    if (settings.train.resumeFrom !== undefined) {
      settings.train.resumeFrom = await this.#checkpointFor(settings.train.resumeFrom);
      // A resume that contradicts its checkpoint is refused now, not once the model has loaded.
      const dir = await modelFolder(model, {
        weights: false,
        ...(options.signal ? { signal: options.signal } : {}),
      });
      const config = await readModelConfig(join(dir, "config.json"));
      const { resumeFrom, lora } = settings.train;
      const point = await LocalTrainer.checkResume(
        { resumeFrom, ...(lora ? { lora: defined(lora) } : {}) },
        { name: model, config },
      );
      const adapter = point?.settings?.adapter;
      if (adapter)
        settings.hyperparameters.lora = {
          r: adapter.r,
          alpha: adapter.alpha,
          dropout: adapter.dropout,
          targetModules: adapter.targetModules,
        };
    }
    options.signal?.throwIfAborted();
    this.#open();

    // Strictly increasing creation times order the jobs of one provider even within a millisecond.
    const created = Math.max(Date.now(), this.#lastCreated + 1);
    this.#lastCreated = created;
    const id = `ftjob-local-${created.toString(36)}${randomBytes(4).toString("hex")}`;
    const now = new Date(created).toISOString();
    const record: JobRecord = {
      format: RECORD_FORMAT,
      version: 1,
      id,
      model,
      status: "queued",
      rawStatus: "queued",
      createdAt: now,
      updatedAt: now,
      trainingFile: request.trainingFile,
      ...(request.validationFile !== undefined ? { validationFile: request.validationFile } : {}),
      hyperparameters: settings.hyperparameters,
      train: settings.train,
      load: settings.load,
      ...(request.suffix !== undefined ? { suffix: request.suffix } : {}),
      ...(request.metadata !== undefined ? { metadata: { ...request.metadata } } : {}),
      owner: { pid: process.pid, hostname: hostname() },
      events: [],
      checkpoints: [],
    };
    const file = this.#recordPath(id);
    const live: LiveJob = {
      record,
      writer: new RecordWriter(file, record),
      controller: new AbortController(),
      started: false,
      run: undefined,
      lastStep: undefined,
      finished: Promise.resolve(),
    };
    addEvent(live, "info", `Created fine-tuning job ${id} of ${model} on ${request.trainingFile}`);
    for (const warning of warnings) addEvent(live, "warn", warning.message);
    const ahead = [...this.#live.values()].filter((job) => !TERMINAL_STATUSES.has(job.record.status)).length;
    if (ahead > 0)
      addEvent(live, "info", `Waiting for ${ahead} earlier job(s): local jobs train one at a time`);
    // The job exists once createJob returns: a fresh process can read it from here on.
    await writeRecord(file, record);
    this.#live.set(id, live);
    live.finished = this.#queue.then(() => this.#execute(live));
    this.#queue = live.finished;
    return { job: toJobInfo(record), warnings };
  }

  async retrieveJob(jobId: string, options: CallOptions = {}): Promise<JobInfo> {
    options.signal?.throwIfAborted();
    return toJobInfo(await this.#record(jobId));
  }

  /** Newest first; `after` is the id of the last job of the previous page. */
  async listJobs(options: CallOptions & { after?: string; limit?: number } = {}): Promise<Page<JobInfo>> {
    options.signal?.throwIfAborted();
    const limit = options.limit ?? DEFAULT_PAGE;
    if (!Number.isInteger(limit) || limit < 1)
      throw invalid(`limit must be a whole number > 0, got ${limit}`, "limit");
    const names = await readdir(join(this.outputDir, "jobs")).catch((error: NodeJS.ErrnoException) => {
      if (error.code === "ENOENT") return [] as string[];
      throw error;
    });
    const records: JobRecord[] = [];
    for (const name of names) {
      if (!JOB_ID.test(name)) continue;
      const live = this.#live.get(name);
      const record = live ? await settled(live) : await this.#stored(name);
      // A folder without a record is a job whose creation did not finish: no job.
      if (record) records.push(record);
    }
    records.sort((a, b) => b.createdAt.localeCompare(a.createdAt) || b.id.localeCompare(a.id));
    // A cursor that is no longer listed ends the listing rather than starting it over.
    const start =
      options.after === undefined
        ? 0
        : records.findIndex((record) => record.id === options.after) + 1 || records.length;
    const page = records.slice(start, start + limit);
    const last = page.at(-1);
    return {
      data: page.map(toJobInfo),
      ...(last && start + limit < records.length ? { nextCursor: last.id } : {}),
    };
  }

  /**
   * Stops a job of this process: a queued one at once; a training one after its current step, with a
   * final checkpoint. Resolves when it has stopped (`signal` stops waiting, not the cancel). A job
   * that already ended comes back as it is.
   */
  async cancelJob(jobId: string, options: CallOptions = {}): Promise<JobInfo> {
    const id = checkJobId(jobId);
    const live = this.#live.get(id);
    if (!live) {
      const record = await this.#record(id);
      if (TERMINAL_STATUSES.has(record.status)) return toJobInfo(record);
      throw new ValidationError(
        "not_owner",
        `local: job ${id} trains in another process (pid ${record.owner.pid} on ${record.owner.hostname}): cancel it there`,
      );
    }
    const record = live.record;
    if (!TERMINAL_STATUSES.has(record.status)) {
      if (live.started) {
        record.rawStatus = "cancelling";
        addEvent(
          live,
          "info",
          "Cancel requested: the run stops after the current step and saves a checkpoint",
        );
      } else {
        end(live, "cancelled", "Cancelled before training started");
      }
      save(live);
      live.controller.abort();
    }
    await untilAborted(live.started ? live.finished : live.writer.flush(), options.signal);
    return toJobInfo(live.record);
  }

  /** The job's events after the one with id `after` (all of them when it is not among them). */
  async listEvents(jobId: string, options: CallOptions & { after?: string } = {}): Promise<ProviderEvent[]> {
    options.signal?.throwIfAborted();
    const events = (await this.#record(jobId)).events;
    const after = options.after === undefined ? -1 : events.findIndex((event) => event.id === options.after);
    return events.slice(after + 1).map(toProviderEvent);
  }

  /** Every checkpoint saved, by step; `model` is the checkpoint folder (an adapter `chat()` takes). */
  async listCheckpoints(jobId: string, options: CallOptions = {}): Promise<Checkpoint[]> {
    options.signal?.throwIfAborted();
    const record = await this.#record(jobId);
    return [...record.checkpoints].sort((a, b) => a.step - b.step).map(toCheckpoint);
  }

  /**
   * A chat target over the local engine: `modelId` is a model folder, a Hub id, or an adapter folder
   * (a job's `fineTunedModel` or a checkpoint's `model`), which loads on its base model.
   */
  chat(modelId: string): ChatTarget {
    this.#open();
    return this.#chat.target(modelId);
  }

  /** Cancels the jobs of this process (each saves a checkpoint), waits for them, frees the chat models. */
  async [Symbol.asyncDispose](): Promise<void> {
    if (this.#disposed) return;
    this.#disposed = true;
    const jobs = [...this.#live.values()];
    for (const live of jobs) {
      if (TERMINAL_STATUSES.has(live.record.status)) continue;
      if (live.started) {
        live.record.rawStatus = "cancelling";
        addEvent(live, "info", "Cancel requested: the provider is being disposed");
      } else {
        end(live, "cancelled", "Cancelled before training started: the provider was disposed");
      }
      save(live);
      live.controller.abort();
    }
    await Promise.allSettled(jobs.map((live) => live.finished));
    await this.#chat.dispose();
  }

  /** Loads the model, trains, and keeps the record in step with the run's events. Never rejects. */
  async #execute(live: LiveJob): Promise<void> {
    const { record, controller } = live;
    const signal = controller.signal;
    let trainer: LocalTrainer | undefined;
    try {
      if (signal.aborted) return; // cancelled while it waited
      live.started = true;
      record.rawStatus = "loading";
      const load = record.load;
      const quantization = load.quantization ?? "nf4";
      addEvent(
        live,
        "info",
        `Loading ${record.model} (${quantization === "nf4" ? "NF4 weights: QLoRA" : "unquantized weights: LoRA"})`,
      );
      save(live);
      const started = performance.now();
      trainer = await LocalTrainer.load(record.model, {
        quantization,
        ...(load.doubleQuant !== undefined ? { doubleQuant: load.doubleQuant } : {}),
        ...(load.computeDtype !== undefined ? { computeDtype: load.computeDtype } : {}),
        ...(load.threads !== undefined ? { threads: load.threads } : {}),
        ...(load.revision !== undefined ? { revision: load.revision } : {}),
        signal,
      });
      addEvent(live, "info", `Loaded the model in ${((performance.now() - started) / 1000).toFixed(1)} s`);
      if (load.computeDtype === "bf16" && trainer.engine.computeDtype !== "bf16")
        addEvent(live, "warn", "computeDtype bf16: this CPU has no AVX-512 BF16; the job computes in fp32");
      save(live);
      signal.throwIfAborted();
      const training = await Dataset.fromFile(this.#filePath(record.trainingFile));
      const validation =
        record.validationFile !== undefined
          ? await Dataset.fromFile(this.#filePath(record.validationFile))
          : record.train.validation;
      const run = trainer.train(training, {
        ...trainOptions(record.train),
        ...(validation !== undefined ? { validation } : {}),
        outputDir: this.#jobDir(record.id),
        signal,
      });
      live.run = run;
      for await (const event of run) this.#onRunEvent(live, event);
    } catch (error) {
      if (!TERMINAL_STATUSES.has(record.status)) {
        if (signal.aborted) end(live, "cancelled", "Cancelled before training started");
        else fail(live, error);
      }
    } finally {
      // Should anything here have thrown while the run goes on, it stops before its model is freed.
      if (live.run) {
        controller.abort();
        await live.run.done().catch(() => undefined);
      }
      live.run = undefined;
      trainer?.dispose();
      if (!TERMINAL_STATUSES.has(record.status))
        fail(live, new TunekitError("engine_failed", "the training run ended without a result"));
      save(live);
      try {
        await live.writer.flush();
        this.#live.delete(record.id);
      } catch {
        // The record on disk is stale: this process keeps answering from memory.
      }
    }
  }

  /** One event of the training run as the job's state, events and checkpoints. */
  #onRunEvent(live: LiveJob, event: TrainingRunEvent): void {
    const record = live.record;
    switch (event.type) {
      case "run-start": {
        const plan = event.plan;
        record.plan = structuredClone(plan) as unknown as Record<string, unknown>;
        record.status = "running";
        record.rawStatus = "running";
        addEvent(
          live,
          "info",
          `Training started: ${plural(plan.examples, "example")} (${plan.trainedTokens} trained tokens an epoch), ${plural(plan.steps, "step")} over ${plural(plan.epochs, "epoch")}`,
          { type: event.type, data: { plan } },
        );
        if (plan.validation)
          addEvent(live, "info", `Evaluating on ${plan.validation.examples} held-out examples`);
        for (const warning of plan.warnings) addEvent(live, "warn", warning);
        break;
      }
      case "step": {
        const metrics: JobMetrics = {
          step: event.step,
          totalSteps: event.totalSteps,
          epoch: event.epoch,
          trainLoss: event.loss,
        };
        live.lastStep = metrics;
        record.estimatedFinish = new Date(Date.now() + event.eta * 1000).toISOString();
        addEvent(
          live,
          "info",
          `Step ${event.step}/${event.totalSteps}: training loss=${event.loss.toFixed(4)}`,
          {
            type: event.type,
            metrics,
            data: {
              learningRate: event.learningRate,
              gradNorm: event.gradNorm,
              tokensPerSecond: event.tokensPerSecond,
              eta: event.eta,
            },
          },
        );
        break;
      }
      case "eval": {
        const { loss, perplexity, tokenAccuracy } = event;
        // A job's eval points always have validation data.
        if (loss === undefined || perplexity === undefined || tokenAccuracy === undefined) break;
        const totalSteps = typeof record.plan?.steps === "number" ? record.plan.steps : undefined;
        const metrics: JobMetrics = {
          step: event.step,
          ...(totalSteps !== undefined ? { totalSteps } : {}),
          epoch: event.epoch,
          validLoss: loss,
          validTokenAccuracy: tokenAccuracy,
        };
        addEvent(
          live,
          "info",
          `Step ${event.step}${totalSteps !== undefined ? `/${totalSteps}` : ""}: validation loss=${loss.toFixed(4)}, perplexity=${perplexity.toFixed(2)}, token accuracy=${tokenAccuracy.toFixed(3)}`,
          { type: event.type, metrics, data: { perplexity: event.perplexity, tokens: event.tokens } },
        );
        break;
      }
      case "checkpoint-saved": {
        const path = resolve(event.path);
        const metrics = live.lastStep?.step === event.step ? { ...live.lastStep } : undefined;
        // An abort right after a scheduled save saves the same step again: one checkpoint, the newest.
        record.checkpoints = record.checkpoints.filter((checkpoint) => checkpoint.step !== event.step);
        record.checkpoints.push({
          id: `${record.id}-checkpoint-${event.step}`,
          step: event.step,
          createdAt: new Date().toISOString(),
          path,
          ...(metrics ? { metrics } : {}),
        });
        addEvent(live, "info", `Saved checkpoint at step ${event.step}: ${path}`, { type: event.type });
        break;
      }
      case "run-end": {
        const summary = event.summary;
        record.summary = structuredClone(summary) as unknown as Record<string, unknown>;
        if (summary.adapterPath !== undefined) record.fineTunedModel = resolve(summary.adapterPath);
        record.trainedTokens = summary.tokens;
        const loss =
          summary.finalLoss === undefined ? "" : `, final training loss ${summary.finalLoss.toFixed(4)}`;
        end(
          live,
          "succeeded",
          `Training finished in ${summary.seconds.toFixed(1)} s (${plural(summary.steps, "step")}${loss}): the adapter is in ${record.fineTunedModel}`,
        );
        break;
      }
      case "run-aborted": {
        const summary = event.summary;
        record.summary = structuredClone(summary) as unknown as Record<string, unknown>;
        const last = summary.checkpoints.at(-1);
        end(
          live,
          "cancelled",
          `Cancelled at step ${summary.steps}${last ? `; its checkpoint is ${resolve(last)}: continue with a new job, providerOptions: { resumeFrom: "${record.id}" }` : ""}`,
        );
        break;
      }
      case "run-failed":
        fail(live, event.error);
        break;
    }
    save(live);
  }

  /** A job's record: this process's own, else read from disk with its owner checked. */
  async #record(jobId: string): Promise<JobRecord> {
    const id = checkJobId(jobId);
    const live = this.#live.get(id);
    const record = live ? await settled(live) : await this.#stored(id);
    if (!record)
      throw new NotFoundError("not_found", `no fine-tuning job ${id} in ${this.outputDir}`, {
        provider: PROVIDER,
        status: 404,
      });
    return record;
  }

  /**
   * A record from disk. A job still running there whose process (on this host) is gone will never
   * move again: it reads as failed, with the checkpoint to resume from, and that verdict is written
   * back so that it holds even when the process id is reused later.
   */
  async #stored(id: string): Promise<JobRecord | undefined> {
    const file = this.#recordPath(id);
    const record = await readRecord(file);
    if (!record || TERMINAL_STATUSES.has(record.status) || this.#live.has(id)) return record;
    const { pid, hostname: host } = record.owner;
    if (host !== hostname() || processAlive(pid)) return record;
    const checkpoint = await latestCheckpoint(this.#jobDir(id));
    const resume = checkpoint
      ? `its last checkpoint is ${checkpoint}: continue with a new job on the same data and settings, providerOptions: { resumeFrom: "${id}" }`
      : "it saved no checkpoint: start a new job";
    const message = `the process running this job (pid ${pid}) ended before the job finished; ${resume}`;
    const now = new Date().toISOString();
    record.status = "failed";
    record.rawStatus = "interrupted";
    record.finishedAt = record.updatedAt;
    record.updatedAt = now;
    record.error = { code: "process_ended", message };
    delete record.estimatedFinish;
    record.events.push({
      id: `${id}-event-${record.events.length + 1}`,
      createdAt: now,
      level: "error",
      message,
    });
    // Best effort: a read-only folder still gets the verdict, just not kept.
    await writeRecord(file, record).catch(() => undefined);
    return record;
  }

  /** The folder of the latest checkpoint of a job id, or a checkpoint folder checked. */
  async #checkpointFor(resumeFrom: string): Promise<string> {
    if (JOB_ID.test(resumeFrom)) {
      const checkpoint = await latestCheckpoint(this.#jobDir(resumeFrom));
      if (checkpoint === undefined)
        throw invalid(`job ${resumeFrom} has no checkpoint to resume from`, "providerOptions.resumeFrom");
      return checkpoint;
    }
    const folder = resolve(resumeFrom);
    if (!(await isCheckpoint(folder)))
      throw invalid(
        `${folder} is not a checkpoint folder (no trainer_state.json): pass a job id or a checkpoint-N folder`,
        "providerOptions.resumeFrom",
      );
    return folder;
  }

  async #requireFile(fileId: unknown, path: string): Promise<void> {
    if (typeof fileId !== "string" || fileId.trim() === "")
      throw invalid(`${path} must be the id of an uploaded file`, path);
    if (!FILE_ID.test(fileId) || !(await stat(this.#filePath(fileId)).catch(() => undefined)))
      throw new NotFoundError("not_found", `no uploaded file ${fileId} in ${join(this.outputDir, "files")}`, {
        provider: PROVIDER,
        status: 404,
        location: { path },
      });
  }

  #open(): void {
    if (this.#disposed) throw new DisposedError("disposed", "local: this provider has been disposed");
  }

  #filePath(fileId: string): string {
    return join(this.outputDir, "files", `${fileId}.jsonl`);
  }

  #jobDir(jobId: string): string {
    return join(this.outputDir, "jobs", jobId);
  }

  #recordPath(jobId: string): string {
    return join(this.#jobDir(jobId), "job.json");
  }
}

/**
 * A live job's record; once it has ended, only after its record is on disk, so that a job seen as
 * ended is ended for every process (a script may exit as soon as `wait()` resolves).
 */
async function settled(live: LiveJob): Promise<JobRecord> {
  if (TERMINAL_STATUSES.has(live.record.status)) await live.writer.flush().catch(() => undefined);
  return live.record;
}

function addEvent(
  live: LiveJob,
  level: StoredEvent["level"],
  message: string,
  extra: Pick<StoredEvent, "type" | "metrics" | "data"> = {},
): void {
  const events = live.record.events;
  events.push({
    id: `${live.record.id}-event-${events.length + 1}`,
    createdAt: new Date().toISOString(),
    level,
    message,
    ...defined(extra),
  });
}

function save(live: LiveJob): void {
  live.record.updatedAt = new Date().toISOString();
  live.writer.save();
}

/** Ends a job in `status` with a closing event. */
function end(
  live: LiveJob,
  status: JobStatus & ("succeeded" | "cancelled" | "failed"),
  message: string,
): void {
  const record = live.record;
  record.status = status;
  record.rawStatus = status;
  record.finishedAt = new Date().toISOString();
  delete record.estimatedFinish;
  addEvent(live, status === "failed" ? "error" : "info", message);
}

function fail(live: LiveJob, error: unknown): void {
  const message = error instanceof Error ? error.message : String(error);
  const code = TunekitError.isInstance(error) ? error.code : "training_failed";
  live.record.error = { message, code };
  end(live, "failed", `Training failed: ${message}`);
}

/** The trainer's options from a job's stored settings. */
function trainOptions(train: TrainSettings): TrainOptions {
  const { lora, ...rest } = train;
  return {
    ...(defined(rest) as TrainOptions),
    ...(lora !== undefined ? { lora: defined(lora) as LoraOptions } : {}),
  };
}

function checkJobId(jobId: unknown): string {
  if (typeof jobId !== "string" || jobId.trim() === "")
    throw invalid("a job id is needed, like ftjob-local-…", "jobId");
  // Anything else names no job here (and never a path outside outputDir).
  if (!JOB_ID.test(jobId))
    throw new NotFoundError("not_found", `no fine-tuning job ${jobId}`, { provider: PROVIDER, status: 404 });
  return jobId;
}

/** An absolute model folder (with config.json), or a Hub id to download (or find in the cache). */
async function resolveModel(model: unknown): Promise<string> {
  const reference = await modelReference(model);
  return reference.kind === "folder" ? reference.path : reference.id;
}

/** Whether a process of this host is alive (EPERM: alive, but another user's). */
function processAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Every line that is not blank must be a JSON object: what `Dataset.fromFile` reads back. */
function checkJsonLines(data: Uint8Array, filename: string): void {
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(data);
  } catch (error) {
    throw new DataFormatError("bad_upload", "not UTF-8 text", { location: { file: filename }, cause: error });
  }
  const lines = text.split("\n");
  for (const [index, line] of lines.entries()) {
    if (line.trim() === "") continue;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch (error) {
      throw new DataFormatError("bad_upload", `not JSON (${(error as Error).message})`, {
        location: { file: filename, line: index + 1 },
        cause: error,
      });
    }
    if (typeof value !== "object" || value === null || Array.isArray(value))
      throw new DataFormatError("bad_upload", "each line must be a JSON object", {
        location: { file: filename, line: index + 1 },
      });
  }
}

/** The promise, or the signal's reason as soon as it aborts. */
function untilAborted<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return promise;
  return new Promise<T>((resolvePromise, reject) => {
    const onAbort = () => reject(signal.reason);
    if (signal.aborted) onAbort();
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(resolvePromise, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}

function invalid(message: string, path: string, code: ErrorCode = "invalid_argument"): ValidationError {
  return new ValidationError(code, `local: ${message}`, { location: { path } });
}
