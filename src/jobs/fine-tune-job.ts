import { basename } from "node:path";
import { FineTuneFailedError, TunekitError, ValidationError } from "../core/errors.js";
import { EventLog, sleep } from "../core/event-log.js";
import { isRetryableError } from "../core/http.js";
import { Dataset } from "../data/dataset.js";
import type {
  CallOptions,
  Checkpoint,
  CreateJobRequest,
  DownloadedAdapter,
  DownloadOptions,
  FineTuningProvider,
  Hyperparameters,
  JobInfo,
  JobMetrics,
  ProviderWarning,
  TrainingMethod,
} from "../providers/spec.js";
import { TERMINAL_STATUSES } from "../providers/spec.js";
import type { ValidationReport } from "../validate/report.js";
import { InvalidDatasetError, toUploadRecord, Validator } from "../validate/validator.js";
import type { FineTuneJobEvent } from "./events.js";

/** Training data: a Dataset, a file path, or a file already uploaded to the provider. */
export type TrainingInput = Dataset | string | { fileId: string };

export interface WatchOptions {
  /** Milliseconds between polls while things change. Default 5000. */
  pollInterval?: number;
  /** Polls slow down to this while nothing changes. Default 60000. */
  maxPollInterval?: number;
  /** Aborting stops watching (and ends `events()` readers); the job itself runs on. */
  signal?: AbortSignal;
}

export interface CreateFineTuneJobOptions extends WatchOptions {
  provider: FineTuningProvider;
  /** The base model, e.g. `gpt-4o-mini-2024-07-18`. */
  model: string;
  training: TrainingInput;
  validation?: TrainingInput;
  method?: TrainingMethod;
  hyperparameters?: Hyperparameters;
  suffix?: string;
  seed?: number;
  metadata?: Record<string, string>;
  /** Provider-only settings, passed to the provider's API as they are. */
  providerOptions?: Record<string, unknown>;
}

/** The end of a job that succeeded. */
export interface FineTuneResult extends JobInfo {
  /** Step metrics from the provider's result files, when it has them. */
  resultMetrics: JobMetrics[];
}

/**
 * One fine-tuning job on any provider. Watching starts when the job is created or attached: every
 * `events()` reader gets all events from the start, then the live ones, in order and each once; the
 * same events go to `on(type, listener)`. `wait()` resolves when the job succeeds.
 */
export class FineTuneJob {
  readonly provider: FineTuningProvider;
  readonly id: string;
  /** Settings the provider could not honour. */
  readonly warnings: readonly ProviderWarning[];
  /** The validation report of the training data, when tunekit validated it. */
  readonly validation: ValidationReport | undefined;

  #info: JobInfo;
  readonly #log = new EventLog<FineTuneJobEvent>();
  readonly #seenEvents = new Set<string>();
  readonly #seenCheckpoints = new Set<string>();
  #lastEventId: string | undefined;
  #pollInterval: number;
  readonly #maxPollInterval: number;
  readonly #stop = new AbortController();
  #consumers = 0;
  #wakeWatcher: (() => void) | undefined;
  readonly #finished: Promise<JobInfo>;

  private constructor(provider: FineTuningProvider, info: JobInfo, options: JobSetup) {
    this.provider = provider;
    this.id = info.id;
    this.#info = info;
    this.warnings = options.warnings ?? [];
    this.validation = options.validation;
    this.#pollInterval = positive(options.pollInterval, 5000, "pollInterval");
    this.#maxPollInterval = Math.max(
      this.#pollInterval,
      positive(options.maxPollInterval, 60_000, "maxPollInterval"),
    );
    options.signal?.addEventListener("abort", () => this.stop(), { once: true });
    this.#log.push({
      type: "status-changed",
      status: info.status,
      previous: undefined,
      rawStatus: info.rawStatus,
      job: info,
    });
    this.#finished = this.#watch();
    this.#finished.catch(() => {}); // failures reach wait() and readers; never an unhandled rejection
  }

  /**
   * Validates and uploads the data (unless given as `{ fileId }`), then creates the job. A dataset
   * with validation errors is refused here with `InvalidDatasetError` and its report: nothing is uploaded.
   */
  static async create(options: CreateFineTuneJobOptions): Promise<FineTuneJob> {
    const { provider, model, signal } = options;
    const call: CallOptions = signal ? { signal } : {};
    const training = await prepare(options.training, "training", provider, model);
    const validation = options.validation
      ? await prepare(options.validation, "validation", provider, model)
      : undefined;
    const upload = async (prepared: Prepared) =>
      "fileId" in prepared
        ? prepared.fileId
        : (await provider.uploadFile({ filename: prepared.filename, data: prepared.data }, call)).id;
    const request: CreateJobRequest = { model, trainingFile: await upload(training) };
    if (validation) request.validationFile = await upload(validation);
    if (options.method) request.method = options.method;
    if (options.hyperparameters) request.hyperparameters = options.hyperparameters;
    if (options.suffix !== undefined) request.suffix = options.suffix;
    if (options.seed !== undefined) request.seed = options.seed;
    if (options.metadata) request.metadata = options.metadata;
    if (options.providerOptions) request.providerOptions = options.providerOptions;
    const { job, warnings } = await provider.createJob(request, call);
    const watch: JobSetup = { warnings };
    if ("report" in training) watch.validation = training.report;
    if (options.pollInterval !== undefined) watch.pollInterval = options.pollInterval;
    if (options.maxPollInterval !== undefined) watch.maxPollInterval = options.maxPollInterval;
    if (signal) watch.signal = signal;
    return new FineTuneJob(provider, job, watch);
  }

  /** Watches a job that already exists, e.g. after a restart. Events start from the job's first. */
  static async attach(
    provider: FineTuningProvider,
    jobId: string,
    options: WatchOptions = {},
  ): Promise<FineTuneJob> {
    const info = await provider.retrieveJob(jobId, options.signal ? { signal: options.signal } : {});
    return new FineTuneJob(provider, info, options);
  }

  /** The provider's jobs, newest first, fetched page by page as you iterate. */
  static async *list(
    provider: FineTuningProvider,
    options: CallOptions & { limit?: number } = {},
  ): AsyncGenerator<JobInfo> {
    let after: string | undefined;
    do {
      const page = await provider.listJobs({ ...options, ...(after ? { after } : {}) });
      yield* page.data;
      after = page.nextCursor;
    } while (after);
  }

  /** The job as last seen. */
  get info(): JobInfo {
    return this.#info;
  }

  get status(): JobInfo["status"] {
    return this.#info.status;
  }

  /**
   * All events from the start, then live ones until the job ends. `pollInterval` changes how often
   * the job is polled; aborting `signal` ends this reader only.
   */
  async *events(
    options: { pollInterval?: number; signal?: AbortSignal } = {},
  ): AsyncGenerator<FineTuneJobEvent> {
    if (options.pollInterval !== undefined)
      this.#pollInterval = positive(options.pollInterval, 5000, "pollInterval");
    this.#consumers++;
    this.#wakeWatcher?.();
    try {
      yield* this.#log.read(options.signal);
    } finally {
      this.#consumers--;
    }
  }

  on<T extends FineTuneJobEvent["type"]>(
    type: T,
    listener: (event: Extract<FineTuneJobEvent, { type: T }>) => void,
  ): this {
    this.#log.on(type, listener);
    return this;
  }

  off<T extends FineTuneJobEvent["type"]>(
    type: T,
    listener: (event: Extract<FineTuneJobEvent, { type: T }>) => void,
  ): this {
    this.#log.off(type, listener);
    return this;
  }

  /**
   * Resolves with the final job when it succeeds (with the step metrics of its result files), rejects
   * with `FineTuneFailedError` when it fails, and with a `TunekitError` when it is cancelled or
   * watching breaks. `signal` stops waiting, not the job.
   */
  async wait(options: CallOptions = {}): Promise<FineTuneResult> {
    this.#consumers++;
    this.#wakeWatcher?.();
    try {
      const stopped = options.signal
        ? new Promise<never>((_, reject) => {
            const fail = () => reject(new TunekitError("aborted", `stopped waiting for job ${this.id}`));
            if (options.signal?.aborted) fail();
            options.signal?.addEventListener("abort", fail, { once: true });
          })
        : undefined;
      const info = await (stopped ? Promise.race([this.#finished, stopped]) : this.#finished);
      const resultMetrics = this.provider.resultMetrics
        ? await this.provider.resultMetrics(info, options)
        : [];
      return { ...info, resultMetrics };
    } finally {
      this.#consumers--;
    }
  }

  /** Asks the provider to cancel; the `cancelled` event follows when the provider confirms. */
  async cancel(options: CallOptions = {}): Promise<JobInfo> {
    const info = await this.provider.cancelJob(this.id, options);
    this.#observe(info);
    return info;
  }

  async pause(options: CallOptions = {}): Promise<JobInfo> {
    if (!this.provider.pauseJob)
      throw new ValidationError("unsupported", `${this.provider.name} cannot pause jobs`);
    const info = await this.provider.pauseJob(this.id, options);
    this.#observe(info);
    return info;
  }

  async resume(options: CallOptions = {}): Promise<JobInfo> {
    if (!this.provider.resumeJob)
      throw new ValidationError("unsupported", `${this.provider.name} cannot resume jobs`);
    const info = await this.provider.resumeJob(this.id, options);
    this.#observe(info);
    return info;
  }

  /**
   * Downloads the trained adapter (the last checkpoint's, or `step`'s) into `dir`, checked as a PEFT
   * adapter, for `LocalModel.loadAdapter`, `tunekit serve` or a GGUF export; `kind: "merged"` brings
   * the merged model where the provider makes one (Together). Providers that let the weights out
   * (Together, Fireworks, Nebius); others refuse with `unsupported`.
   */
  async downloadAdapter(dir: string, options: DownloadOptions = {}): Promise<DownloadedAdapter> {
    if (!this.provider.downloadAdapter)
      throw new ValidationError(
        "unsupported",
        `${this.provider.name} does not let a job's weights be downloaded`,
      );
    return this.provider.downloadAdapter(this.id, dir, options);
  }

  /** Fetches the job now (between polls). */
  async refresh(options: CallOptions = {}): Promise<JobInfo> {
    const info = await this.provider.retrieveJob(this.id, options);
    this.#observe(info);
    return info;
  }

  /** Stops watching; the job runs on at the provider. Readers end after the events so far. */
  stop(): void {
    this.#stop.abort();
  }

  /** Records a fresh view of the job: a status change becomes an event. */
  #observe(info: JobInfo): void {
    const previous = this.#info.status;
    this.#info = info;
    if (info.status !== previous) {
      this.#log.push({
        type: "status-changed",
        status: info.status,
        previous,
        rawStatus: info.rawStatus,
        job: info,
      });
    }
  }

  /** One poll: new events, the job, new checkpoints. True when anything changed. */
  async #poll(signal: AbortSignal): Promise<boolean> {
    const before = this.#log.snapshot().length;
    const call = { signal };
    const info = await this.provider.retrieveJob(this.id, call);
    const events = await this.provider.listEvents(
      this.id,
      this.#lastEventId ? { ...call, after: this.#lastEventId } : call,
    );
    for (const event of events) {
      this.#lastEventId = event.id;
      if (this.#seenEvents.has(event.id)) continue;
      this.#seenEvents.add(event.id);
      if (event.metrics)
        this.#log.push({ type: "metrics", id: event.id, metrics: event.metrics, createdAt: event.createdAt });
      else
        this.#log.push({
          type: "message",
          id: event.id,
          level: event.level,
          message: event.message,
          createdAt: event.createdAt,
        });
    }
    // Providers whose events carry no loss serve the metrics apart; each step is reported once.
    if (this.provider.listMetrics && (info.status === "running" || TERMINAL_STATUSES.has(info.status))) {
      for (const metrics of await this.provider.listMetrics(this.id, call)) {
        const id = `metrics:${metrics.step}:${metrics.validLoss === undefined ? "train" : "eval"}`;
        if (this.#seenEvents.has(id)) continue;
        this.#seenEvents.add(id);
        this.#log.push({ type: "metrics", id, metrics, createdAt: new Date() });
      }
    }
    if (events.length > 0 || TERMINAL_STATUSES.has(info.status)) {
      const checkpoints = await this.provider.listCheckpoints(this.id, call);
      const fresh = checkpoints.filter((checkpoint) => !this.#seenCheckpoints.has(checkpoint.id));
      for (const checkpoint of fresh.sort((a: Checkpoint, b: Checkpoint) => a.step - b.step)) {
        this.#seenCheckpoints.add(checkpoint.id);
        this.#log.push({ type: "checkpoint-created", checkpoint });
      }
    }
    this.#observe(info);
    return this.#log.snapshot().length > before;
  }

  /** Polls until the job ends, backing off while nothing changes and on transient failures. */
  async #watch(): Promise<JobInfo> {
    const signal = this.#stop.signal;
    let interval = this.#pollInterval;
    let failures = 0;
    // A job attached after its end is polled once all the same: its events are still to replay.
    let polled = false;
    try {
      while (!polled || !TERMINAL_STATUSES.has(this.#info.status)) {
        if (signal.aborted) throw new TunekitError("watch_stopped", `stopped watching job ${this.id}`);
        try {
          const changed = await this.#poll(signal);
          polled = true;
          failures = 0;
          interval = changed ? this.#pollInterval : Math.min(interval * 1.5, this.#maxPollInterval);
        } catch (error) {
          if (signal.aborted) continue;
          if (!isRetryableError(error) || ++failures > 8) throw error;
          interval = Math.min(this.#pollInterval * 2 ** failures, this.#maxPollInterval);
        }
        if (TERMINAL_STATUSES.has(this.#info.status)) break;
        await new Promise<void>((resolve) => {
          this.#wakeWatcher = resolve;
          // Hold the process open only while someone waits for this job.
          sleep(interval, signal, { ref: this.#consumers > 0 }).then(resolve);
        });
        this.#wakeWatcher = undefined;
      }
    } catch (error) {
      // Stopping on purpose ends the readers quietly; only wait() hears about it.
      this.#log.close(signal.aborted ? undefined : error);
      throw error;
    }
    const info = this.#info;
    if (info.status === "succeeded") this.#log.push({ type: "succeeded", job: info });
    else if (info.status === "failed") this.#log.push({ type: "failed", job: info, error: info.error });
    else this.#log.push({ type: "cancelled", job: info });
    this.#log.close();
    if (info.status === "failed") throw new FineTuneFailedError(this.id, info.error);
    if (info.status === "cancelled")
      throw new TunekitError("fine_tune_cancelled", `fine-tuning job ${this.id} was cancelled`);
    return info;
  }
}

type JobSetup = WatchOptions & { warnings?: ProviderWarning[]; validation?: ValidationReport };

type Prepared = { fileId: string } | { filename: string; data: Uint8Array; report: ValidationReport };

/** Validates a dataset for the provider and serializes it as the provider's upload file. */
async function prepare(
  input: TrainingInput,
  what: "training" | "validation",
  provider: FineTuningProvider,
  model: string,
): Promise<Prepared> {
  if (typeof input === "object" && "fileId" in input) return { fileId: input.fileId };
  const dataset = typeof input === "string" ? await Dataset.fromFile(input) : input;
  const target = provider.validationTarget;
  const report = await new Validator({ target, model }).validate(dataset);
  if (!report.ok) throw new InvalidDatasetError(what, report);
  const lines: string[] = [];
  for await (const example of dataset) lines.push(JSON.stringify(toUploadRecord(target, example)));
  const filename =
    typeof input === "string" ? basename(input).replace(/\.[^.]*$/, ".jsonl") : `${what}.jsonl`;
  return { filename, data: Buffer.from(`${lines.join("\n")}\n`), report };
}

function positive(value: number | undefined, fallback: number, name: string): number {
  if (value === undefined) return fallback;
  if (!(Number.isFinite(value) && value > 0))
    throw new ValidationError("invalid_argument", `${name} must be > 0, got ${value}`);
  return value;
}
