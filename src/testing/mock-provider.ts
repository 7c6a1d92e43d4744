import { NotFoundError } from "../core/errors.js";
import { type ChatMessage, contentText } from "../data/example.js";
import type {
  Checkpoint,
  CreateJobRequest,
  FineTuningProvider,
  JobError,
  JobInfo,
  JobMetrics,
  JobStatus,
  Page,
  ProviderEvent,
  ProviderWarning,
  UploadedFile,
  UploadRequest,
} from "../providers/spec.js";
import { TERMINAL_STATUSES } from "../providers/spec.js";
import type { ValidationTarget } from "../validate/validator.js";
import { MockChatTarget } from "./mock-chat-target.js";

/** A value, a list of values taken one per call (the last repeats), or a function of the call. */
export type Scripted<Argument, Result> =
  | Result
  | Result[]
  | ((argument: Argument, call: number) => Result | Promise<Result>);

/** How one mock job plays out. Each `retrieveJob` moves it one status further. */
export interface MockJobScript {
  /** Statuses in order, one per retrieve. Default: validating, queued, running ×3, succeeded. */
  statuses?: JobStatus[];
  /** Events, each visible from status index `at` on (default: spread over the run). */
  events?: Array<{ at?: number; message?: string; level?: "info" | "warn" | "error"; metrics?: JobMetrics }>;
  checkpoints?: Array<{ at?: number; step: number; model?: string; metrics?: JobMetrics }>;
  /** Name of the model once succeeded. Default `ft:<model>:mock::<job id>`. */
  fineTunedModel?: string;
  /** The reason given when the last status is `failed`. */
  error?: JobError;
  trainedTokens?: number;
  resultMetrics?: JobMetrics[];
  warnings?: ProviderWarning[];
}

export interface MockProviderOptions {
  name?: string;
  validationTarget?: ValidationTarget;
  /** The script of each created job. Default: a short successful run with three metrics steps. */
  jobs?: Scripted<CreateJobRequest, MockJobScript>;
  /** Replies of `chat(model).complete(messages)`. Default: echoes the last user message. */
  chat?: Scripted<{ model: string; messages: ChatMessage[] }, string>;
  /** Milliseconds between the deltas of a `chat(model).completeStream`. Default 0. */
  chatStreamDelayMs?: number;
  /** Whether `pauseJob` / `resumeJob` exist. Default true. */
  pausable?: boolean;
}

/** One recorded call of the provider. */
export interface MockCall {
  method: string;
  args: unknown[];
}

const DEFAULT_SCRIPT: Required<Pick<MockJobScript, "statuses" | "events">> = {
  statuses: ["validating", "queued", "running", "running", "running", "succeeded"],
  events: [
    { at: 0, message: "Validating training file" },
    { at: 1, message: "Fine-tuning job started" },
    { at: 2, metrics: { step: 1, totalSteps: 3, trainLoss: 2.1, trainTokenAccuracy: 0.52 } },
    { at: 3, metrics: { step: 2, totalSteps: 3, trainLoss: 1.4, trainTokenAccuracy: 0.64 } },
    { at: 4, metrics: { step: 3, totalSteps: 3, trainLoss: 0.9, trainTokenAccuracy: 0.75 } },
    { at: 5, message: "The job has successfully completed" },
  ],
};

function lastUser(messages: ChatMessage[]): string {
  const last = [...messages].reverse().find((message) => message.role === "user");
  return last ? contentText(last.content) : "";
}

async function pick<A, R>(script: Scripted<A, R>, argument: A, call: number): Promise<R> {
  if (typeof script === "function")
    return (script as (argument: A, call: number) => R | Promise<R>)(argument, call);
  if (Array.isArray(script)) return script[Math.min(call, script.length - 1)] as R;
  return script;
}

interface MockJob {
  request: CreateJobRequest;
  script: MockJobScript & typeof DEFAULT_SCRIPT;
  /** Index into the script's statuses. */
  position: number;
  /** Set by cancel or pause; overrides the script. */
  override: JobStatus | undefined;
  createdAt: Date;
}

/**
 * A scripted fine-tuning provider for unit tests of code that uses tunekit: jobs walk through the
 * statuses of their script, one per `retrieveJob`, revealing events and checkpoints on the way; every
 * call is recorded in `calls`, every upload in `uploads`. No network, no timers.
 */
export class MockProvider implements FineTuningProvider {
  readonly specificationVersion = "v1" as const;
  readonly name: string;
  readonly validationTarget: ValidationTarget;
  readonly calls: MockCall[] = [];
  readonly uploads: Array<{ id: string; filename: string; text: string }> = [];
  readonly pauseJob?: NonNullable<FineTuningProvider["pauseJob"]>;
  readonly resumeJob?: NonNullable<FineTuningProvider["resumeJob"]>;
  readonly #options: MockProviderOptions;
  readonly #jobs = new Map<string, MockJob>();
  #chats = 0;

  constructor(options: MockProviderOptions = {}) {
    this.#options = options;
    this.name = options.name ?? "mock";
    this.validationTarget = options.validationTarget ?? "openai";
    if (options.pausable ?? true) {
      this.pauseJob = async (jobId) =>
        this.#record("pauseJob", [jobId], () => this.#override(jobId, "paused"));
      this.resumeJob = async (jobId) =>
        this.#record("resumeJob", [jobId], () => this.#override(jobId, undefined));
    }
  }

  /** The calls of one method. */
  callsOf(method: string): unknown[][] {
    return this.calls.filter((call) => call.method === method).map((call) => call.args);
  }

  async #record<T>(method: string, args: unknown[], run: () => T | Promise<T>): Promise<T> {
    this.calls.push({ method, args });
    return run();
  }

  uploadFile(request: UploadRequest): Promise<UploadedFile> {
    return this.#record("uploadFile", [request], () => {
      const id = `file-mock-${this.uploads.length + 1}`;
      this.uploads.push({ id, filename: request.filename, text: Buffer.from(request.data).toString("utf8") });
      return {
        id,
        filename: request.filename,
        bytes: request.data.byteLength,
        status: "processed",
        rawStatus: "processed",
        createdAt: new Date(0),
      };
    });
  }

  createJob(request: CreateJobRequest) {
    return this.#record("createJob", [request], async () => {
      const script = await pick(this.#options.jobs ?? {}, request, this.#jobs.size);
      const id = `ftjob-mock-${this.#jobs.size + 1}`;
      const job: MockJob = {
        request,
        script: { ...DEFAULT_SCRIPT, ...script },
        position: 0,
        override: undefined,
        createdAt: new Date(Date.UTC(2026, 0, 1, 0, this.#jobs.size)),
      };
      this.#jobs.set(id, job);
      return { job: this.#info(id, job), warnings: script.warnings ?? [] };
    });
  }

  retrieveJob(jobId: string): Promise<JobInfo> {
    return this.#record("retrieveJob", [jobId], () => {
      const job = this.#job(jobId);
      if (!job.override && job.position < job.script.statuses.length - 1) job.position++;
      return this.#info(jobId, job);
    });
  }

  listJobs(options: { after?: string; limit?: number } = {}): Promise<Page<JobInfo>> {
    return this.#record("listJobs", [options], () => {
      const ids = [...this.#jobs.keys()].reverse();
      const start = options.after ? ids.indexOf(options.after) + 1 : 0;
      const slice = ids.slice(start, start + (options.limit ?? 20));
      const page: Page<JobInfo> = { data: slice.map((id) => this.#info(id, this.#job(id))) };
      const last = slice[slice.length - 1];
      if (last && start + slice.length < ids.length) page.nextCursor = last;
      return page;
    });
  }

  cancelJob(jobId: string): Promise<JobInfo> {
    return this.#record("cancelJob", [jobId], () => this.#override(jobId, "cancelled"));
  }

  listEvents(jobId: string, options: { after?: string } = {}): Promise<ProviderEvent[]> {
    return this.#record("listEvents", [jobId, options], () => {
      const job = this.#job(jobId);
      const visible = job.script.events
        .map((event, index) => ({ event, index }))
        .filter(({ event, index }) => (event.at ?? index) <= job.position)
        .map(({ event, index }): ProviderEvent => {
          const result: ProviderEvent = {
            id: `${jobId}-event-${index + 1}`,
            createdAt: new Date(job.createdAt.getTime() + (index + 1) * 1000),
            level: event.level ?? "info",
            message:
              event.message ??
              (event.metrics ? `Step ${event.metrics.step}: training loss=${event.metrics.trainLoss}` : ""),
            raw: event,
          };
          if (event.metrics) result.metrics = event.metrics;
          return result;
        });
      const after = options.after ? visible.findIndex((event) => event.id === options.after) : -1;
      return visible.slice(after + 1);
    });
  }

  listCheckpoints(jobId: string): Promise<Checkpoint[]> {
    return this.#record("listCheckpoints", [jobId], () => {
      const job = this.#job(jobId);
      return (job.script.checkpoints ?? [])
        .filter((checkpoint) => (checkpoint.at ?? 0) <= job.position)
        .map((checkpoint) => {
          const result: Checkpoint = {
            id: `${jobId}-checkpoint-${checkpoint.step}`,
            step: checkpoint.step,
            createdAt: new Date(job.createdAt.getTime() + checkpoint.step * 1000),
            raw: checkpoint,
          };
          if (checkpoint.model) result.model = checkpoint.model;
          if (checkpoint.metrics) result.metrics = checkpoint.metrics;
          return result;
        });
    });
  }

  resultMetrics(job: JobInfo): Promise<JobMetrics[]> {
    return this.#record("resultMetrics", [job], () => {
      const script = this.#job(job.id).script;
      return script.resultMetrics ?? script.events.flatMap((event) => (event.metrics ? [event.metrics] : []));
    });
  }

  /** A `MockChatTarget` answering with `options.chat`; each call is recorded here as "chat" too. */
  chat(modelId: string): MockChatTarget {
    const script = this.#options.chat;
    return new MockChatTarget({
      provider: this.name,
      modelId,
      ...(this.#options.chatStreamDelayMs !== undefined ? { delayMs: this.#options.chatStreamDelayMs } : {}),
      reply: async ({ messages }) => {
        this.calls.push({ method: "chat", args: [modelId, messages] });
        const call = this.#chats++;
        return script === undefined
          ? `echo: ${lastUser(messages)}`
          : pick(script, { model: modelId, messages }, call);
      },
    });
  }

  #job(jobId: string): MockJob {
    const job = this.#jobs.get(jobId);
    if (!job)
      throw new NotFoundError("not_found", `no fine-tuning job ${jobId}`, {
        provider: this.name,
        status: 404,
      });
    return job;
  }

  #override(jobId: string, status: JobStatus | undefined): JobInfo {
    const job = this.#job(jobId);
    if (!TERMINAL_STATUSES.has(this.#status(job))) job.override = status;
    return this.#info(jobId, job);
  }

  #status(job: MockJob): JobStatus {
    return job.override ?? (job.script.statuses[job.position] as JobStatus);
  }

  #info(id: string, job: MockJob): JobInfo {
    const status = this.#status(job);
    const info: JobInfo = {
      id,
      provider: this.name,
      model: job.request.model,
      status,
      rawStatus: status,
      createdAt: job.createdAt,
      trainingFile: job.request.trainingFile,
      hyperparameters: job.request.hyperparameters ?? {},
      raw: { id, status },
    };
    if (job.request.validationFile) info.validationFile = job.request.validationFile;
    if (TERMINAL_STATUSES.has(status)) info.finishedAt = new Date(job.createdAt.getTime() + 60_000);
    if (status === "succeeded") {
      const suffix = job.request.suffix ?? "";
      info.fineTunedModel = job.script.fineTunedModel ?? `ft:${job.request.model}:mock:${suffix}:${id}`;
      if (job.script.trainedTokens !== undefined) info.trainedTokens = job.script.trainedTokens;
    }
    if (status === "failed") info.error = job.script.error ?? { message: "the job failed" };
    return info;
  }
}
