/**
 * Together AI's fine-tuning API as msw handlers, for tests of code that fine-tunes on Together without
 * the network. The answers take their shapes from Together's official SDKs and API reference, not from
 * tunekit's adapter: together-typescript src/resources/fine-tuning.ts (jobs, events, checkpoints, price)
 * and src/resources/files.ts (files), together-py src/together/lib/resources/files.py (the upload
 * protocol) and src/together/lib/types/fine_tuning.py (statuses), docs.together.ai/reference.
 */
import { randomUUID } from "node:crypto";
import { HttpResponse, http, type RequestHandler } from "msw";
import { ValidationError } from "../core/errors.js";
import { gzipBytes, tarArchive, zstdStore } from "./archive.js";
import { answerChat, type FakeModelReply } from "./chat-completions.js";

/** One injected failure: it answers matching requests in place of the service, `times` times. */
export interface TogetherFailure {
  /**
   * Which requests: method and path below the base URL (`/fine-tunes`, `/files/file-…`); the PUT of an
   * upload matches by its method and the path of the pre-signed URL. Default: any request.
   */
  match?: { method?: string; path?: string | RegExp };
  /** The HTTP status to answer, or "network" for a dropped connection. */
  status: number | "network";
  /** How many matching requests fail. Default 1. */
  times?: number;
  /** The `retry-after` header: seconds, or an HTTP date. */
  retryAfter?: number | string;
  /** The `retry-after-ms` header. */
  retryAfterMs?: number;
  /** The error's message. Default: one for the status. */
  message?: string;
}

export interface TogetherFineTuningOptions {
  /** The only API key accepted; any other, or none, answers 401. Default "together-test-key". */
  apiKey?: string;
  /** Default https://api.together.ai/v1 (pass the old https://api.together.xyz/v1 to serve that one). */
  baseURL?: string;
  /** Where the pre-signed upload URLs point. Default https://together-uploads.test. */
  uploadURL?: string;
  /** `GET /files/{id}` answers that say RUNNING before processing ends. Default 0. */
  fileProcessingChecks?: number;
  /** Rejects every uploaded file with this reason (`INVALID_FORMAT`). Lines that are not JSON are always rejected. */
  rejectFiles?: string;
  /**
   * The statuses a job goes through: it is created in the first and moves one step at each
   * `GET /fine-tunes/{id}`. Default ["queued", "running", "completed"].
   */
  statuses?: string[];
  /** Ends jobs in failure: the final status becomes `status` (default "error") and `message` its error event. */
  failure?: { message: string; status?: "error" | "user_error" };
  /** Training steps of a job; a checkpoint is saved halfway. Default 10. */
  totalSteps?: number;
  /**
   * The answer of `POST /fine-tunes/estimate-price`. Default: $0.50 per million training tokens (bytes
   * / 4 per epoch). `totalUSD: null` leaves the price out of an available estimate; `{ unavailable }`
   * answers `estimation_available: false` with that `unavailable_reason`.
   */
  price?: { totalUSD?: number | null; trainTokens?: number; allowed?: boolean } | { unavailable: string };
  /**
   * Fine-tuned models (a job's `model_output_name`) that have a dedicated endpoint and so answer chat;
   * the others answer 400 "Unable to access non-serverless model …", as Together does. Default: none.
   */
  endpoints?: string[] | "all";
  /**
   * The reply of `POST /chat/completions` (text, or tool calls of tools the request offers); cut by
   * `max_tokens` and `stop`, streamed with `stream: true` (see `answerChat`). Default "Hello from Together.".
   */
  chatReply?: string | ((messages: unknown[], model: string) => FakeModelReply);
  /** Milliseconds before each chunk of a streamed chat answer. Default 0. */
  chatStreamDelayMs?: number;
  /** Failures answered before the service sees the request, the first matching one first. */
  failures?: TogetherFailure[];
  /**
   * What a job's `GET /finetune/download` holds, by file name: `adapter` (a PEFT adapter's
   * `adapter_config.json` and `adapter_model.safetensors`, say) for `checkpoint=adapter`, `merged` (a
   * model folder) for `checkpoint=merged` and a full fine-tune's `model_output_path`. Every
   * checkpoint's download holds the same files. Default: none (the download answers 404).
   */
  weights?: { adapter?: Record<string, Uint8Array | string>; merged?: Record<string, Uint8Array | string> };
  /** How downloads are packed: "zstd" (`tar.zst`, Together's) or "gzip". Default "zstd". */
  archive?: "zstd" | "gzip";
  /** Where the download redirects point. Default https://together-downloads.test. */
  downloadURL?: string;
  /** Cuts each download's body after this many bytes, as a dropped connection does. */
  cutDownloadsAt?: number;
}

/** A request the fake service saw. */
export interface TogetherRecordedRequest {
  method: string;
  /** Below the base URL (`/fine-tunes`), or the full URL of an upload. */
  path: string;
  query: Record<string, string>;
  /** JSON bodies parsed, form bodies as an object, uploaded bytes as a Uint8Array. */
  body: unknown;
  /** Whether it carried the right API key. */
  authorized: boolean;
  /** The status it was answered with; 0 for a dropped connection. */
  status: number;
}

/** What the fake service holds, for assertions. */
export interface TogetherState {
  readonly requests: readonly TogetherRecordedRequest[];
  /** Uploaded file contents by file id. */
  readonly uploads: ReadonlyMap<string, Uint8Array>;
  /** The body of each accepted `POST /fine-tunes`, by job id. */
  readonly jobRequests: ReadonlyMap<string, Record<string, unknown>>;
}

/** The handlers and the state they record. */
export interface TogetherFineTuningServer {
  /** Pass to msw: `setupServer(...server.handlers)`. */
  handlers: RequestHandler[];
  state: TogetherState;
}

interface StoredFile {
  id: string;
  filename: string;
  purpose: string;
  fileType: string;
  signature: string;
  createdAt: number;
  bytes: Uint8Array | undefined;
  preprocessed: boolean;
  checks: number;
}

interface StoredJob {
  id: string;
  request: Record<string, unknown>;
  statuses: string[];
  step: number;
  cancel: "requested" | "done" | undefined;
  createdAt: string;
  updatedAt: string;
  events: Record<string, unknown>[];
  checkpoints: Record<string, unknown>[];
  /** `GET /fine-tunes/{id}/metrics` entries, logged as training goes. */
  metrics: Record<string, unknown>[];
  tokens: number;
}

const DEFAULT_KEY = "together-test-key";
const DEFAULT_BASE = "https://api.together.ai/v1";
const DEFAULT_UPLOADS = "https://together-uploads.test";
const DEFAULT_DOWNLOADS = "https://together-downloads.test";
const TERMINAL = new Set(["completed", "cancelled", "error", "user_error"]);
const LORA_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];

/**
 * msw handlers for Together's fine-tuning API and its upload storage, plus the state they record:
 * `const together = togetherFineTuningHandlers(); setupServer(...together.handlers)`. Each call makes
 * a fresh, empty service.
 */
export function togetherFineTuningHandlers(
  options: TogetherFineTuningOptions = {},
): TogetherFineTuningServer {
  const service = new FakeTogether(options);
  return {
    handlers: [
      http.all(`${service.baseURL}/*`, ({ request }) => service.api(request)),
      http.put(`${service.uploadURL}/*`, ({ request }) => service.store(request)),
      http.get(`${service.downloadURL}/*`, ({ request }) => service.fetchDownload(request)),
    ],
    state: service.state,
  };
}

class FakeTogether {
  readonly baseURL: string;
  readonly uploadURL: string;
  readonly downloadURL: string;
  readonly state: {
    requests: TogetherRecordedRequest[];
    uploads: Map<string, Uint8Array>;
    jobRequests: Map<string, Record<string, unknown>>;
  };
  readonly #options: TogetherFineTuningOptions;
  readonly #key: string;
  readonly #basePath: string;
  readonly #failures: Array<TogetherFailure & { left: number }>;
  readonly #files = new Map<string, StoredFile>();
  readonly #jobs = new Map<string, StoredJob>();
  /** Archives behind the pre-signed download URLs, by path, with their signatures. */
  readonly #downloads = new Map<string, { signature: string; body: Uint8Array; type: string }>();
  #lastTime = 0;

  constructor(options: TogetherFineTuningOptions) {
    this.baseURL = (options.baseURL ?? DEFAULT_BASE).replace(/\/+$/, "");
    this.uploadURL = (options.uploadURL ?? DEFAULT_UPLOADS).replace(/\/+$/, "");
    this.downloadURL = (options.downloadURL ?? DEFAULT_DOWNLOADS).replace(/\/+$/, "");
    this.#basePath = new URL(this.baseURL).pathname.replace(/\/+$/, "");
    this.#key = options.apiKey ?? DEFAULT_KEY;
    const statuses = options.statuses ?? ["queued", "running", "completed"];
    if (statuses.length === 0) invalid("statuses must name at least one status");
    const steps = options.totalSteps ?? 10;
    if (!Number.isInteger(steps) || steps < 1) invalid("totalSteps must be a whole number > 0");
    this.#options = { ...options, statuses, totalSteps: steps };
    this.#failures = (options.failures ?? []).map((failure) => ({ ...failure, left: failure.times ?? 1 }));
    this.state = { requests: [], uploads: new Map(), jobRequests: new Map() };
  }

  /** Every call below the base URL. */
  async api(request: Request): Promise<Response> {
    const url = new URL(request.url);
    const path = url.pathname.slice(this.#basePath.length) || "/";
    const record = await this.#record(request, path, url);
    const response = this.#injected(request.method, path) ?? (await this.#route(request, path, url, record));
    record.status = response.type === "error" ? 0 : response.status;
    return response;
  }

  /** The storage behind the pre-signed URLs: no API key, but the URL's signature must match. */
  async store(request: Request): Promise<Response> {
    const url = new URL(request.url);
    const record = await this.#record(request, url.href, url);
    const response = this.#injected("PUT", url.pathname) ?? this.#put(url, record.body);
    record.status = response.type === "error" ? 0 : response.status;
    return response;
  }

  /** The storage behind the download redirects: no API key, but the signature must match. */
  async fetchDownload(request: Request): Promise<Response> {
    const url = new URL(request.url);
    const record = await this.#record(request, url.href, url);
    const stored = this.#downloads.get(url.pathname);
    const response =
      this.#injected("GET", url.pathname) ??
      (stored && url.searchParams.get("X-Amz-Signature") === stored.signature
        ? this.#archiveResponse(stored)
        : new HttpResponse(
            "<Error><Code>SignatureDoesNotMatch</Code><Message>The request signature we calculated does not match the signature you provided.</Message></Error>",
            { status: 403, headers: { "Content-Type": "application/xml" } },
          ));
    record.status = response.type === "error" ? 0 : response.status;
    return response;
  }

  #archiveResponse(stored: { body: Uint8Array; type: string }): Response {
    const cut = this.#options.cutDownloadsAt;
    const headers = { "Content-Type": stored.type, "Content-Length": String(stored.body.length) };
    if (cut === undefined) return new HttpResponse(stored.body, { status: 200, headers });
    // The body stops short of what Content-Length promised, as when the connection drops.
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(stored.body.slice(0, cut));
        controller.error(new TypeError("terminated"));
      },
    });
    return new HttpResponse(body, { status: 200, headers });
  }

  #put(url: URL, body: unknown): Response {
    const id = decodeURIComponent(url.pathname.split("/").at(-1) ?? "");
    const file = this.#files.get(id);
    if (!file || url.searchParams.get("X-Amz-Signature") !== file.signature) {
      return new HttpResponse(
        "<Error><Code>SignatureDoesNotMatch</Code><Message>The request signature we calculated does not match the signature you provided.</Message></Error>",
        { status: 403, headers: { "Content-Type": "application/xml" } },
      );
    }
    file.bytes = body instanceof Uint8Array ? body : new Uint8Array();
    this.state.uploads.set(id, file.bytes);
    return new HttpResponse(null, {
      status: 200,
      headers: { ETag: `"${randomUUID().replaceAll("-", "")}"` },
    });
  }

  async #route(request: Request, path: string, url: URL, record: TogetherRecordedRequest): Promise<Response> {
    if (!record.authorized) {
      return apiError(
        401,
        "Invalid API key provided. You can find your API key at https://api.together.xyz/settings/api-keys.",
        "invalid_api_key",
      );
    }
    const method = request.method.toUpperCase();
    const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
    const [resource, id, action] = parts;
    if (resource === "files") {
      if (parts.length === 1 && method === "POST") return this.#startUpload(url, record.body);
      if (parts.length === 2 && method === "GET" && id) return this.#retrieveFile(id);
      if (parts.length === 3 && method === "POST" && id && action === "preprocess")
        return this.#preprocess(id);
    }
    if (resource === "fine-tunes") {
      if (parts.length === 1 && method === "POST") return this.#createJob(record.body);
      if (parts.length === 1 && method === "GET") {
        return HttpResponse.json({
          data: [...this.#jobs.values()].map((job) => this.#jobObject(job, false)),
        });
      }
      if (id === "estimate-price" && parts.length === 2 && method === "POST")
        return this.#estimate(record.body);
      if (id === "models" && action === "limits" && method === "GET") return this.#limits(url);
      const job = id ? this.#jobs.get(id) : undefined;
      if (id && !job) return apiError(404, `Fine-tune job ${id} not found`, "not_found");
      if (job && parts.length === 2 && method === "GET") {
        this.#advance(job);
        return HttpResponse.json(this.#jobObject(job, true));
      }
      if (job && parts.length === 3 && method === "POST" && action === "cancel") return this.#cancel(job);
      if (job && parts.length === 3 && method === "GET" && action === "events") {
        return HttpResponse.json({ object: "list", data: job.events });
      }
      if (job && parts.length === 3 && method === "GET" && action === "metrics") {
        return HttpResponse.json({ metrics: job.metrics });
      }
      if (job && parts.length === 3 && method === "GET" && action === "checkpoints") {
        return HttpResponse.json({ data: job.checkpoints });
      }
    }
    if (path === "/chat/completions" && method === "POST") return this.#chat(record.body);
    if (path === "/finetune/download" && method === "GET") return this.#download(url);
    return apiError(404, `Unknown route ${method} ${path}`, "not_found");
  }

  /**
   * `GET /finetune/download?ft_id=…&checkpoint=adapter|merged|model_output_path[&checkpoint_step=N]`
   * (together-typescript `FineTuneDownloadParams`, together-python `FineTuning.download`): a 302 to a
   * pre-signed URL that serves the weights as a tar.zst (`application/zstd`).
   */
  #download(url: URL): Response {
    const id = url.searchParams.get("ft_id");
    if (!id) return apiError(400, "ft_id is required", "invalid_request");
    const job = this.#jobs.get(id);
    if (!job) return apiError(404, `Fine-tune job ${id} not found`, "not_found");
    const checkpoint = url.searchParams.get("checkpoint") ?? "merged";
    if (!["adapter", "merged", "model_output_path"].includes(checkpoint))
      return apiError(400, `Invalid checkpoint type ${checkpoint}`, "invalid_request");
    const full = (job.request.training_type as Record<string, unknown> | undefined)?.type === "Full";
    if (full && checkpoint !== "model_output_path")
      return apiError(
        400,
        "Only the model_output_path checkpoint exists for full training",
        "invalid_request",
      );
    const stepText = url.searchParams.get("checkpoint_step");
    const step = stepText === null ? undefined : Number(stepText);
    if (step === undefined && this.#statusOf(job) !== "completed")
      return apiError(400, `Fine-tune job ${id} has not completed`, "invalid_request");
    if (step !== undefined && !job.checkpoints.some((entry) => entry.step === step))
      return apiError(404, `No checkpoint at step ${stepText} for ${id}`, "not_found");
    const files = checkpoint === "adapter" ? this.#options.weights?.adapter : this.#options.weights?.merged;
    if (!files) return apiError(404, `No ${checkpoint} weights stored for ${id}`, "not_found");
    const tar = tarArchive(files, { folder: outputName(job).split("/").at(-1) ?? id });
    const gz = this.#options.archive === "gzip";
    const path = `/${id}/${checkpoint}${step === undefined ? "" : `-${step}`}.tar.${gz ? "gz" : "zst"}`;
    const signature = randomUUID().replaceAll("-", "");
    this.#downloads.set(new URL(`${this.downloadURL}${path}`).pathname, {
      signature,
      body: gz ? gzipBytes(tar) : zstdStore(tar),
      type: gz ? "application/x-tar" : "application/zstd",
    });
    const location = `${this.downloadURL}${path}?X-Amz-Expires=3600&X-Amz-Signature=${signature}`;
    return new HttpResponse(null, { status: 302, headers: { Location: location } });
  }

  /** `POST /files`: 302 to a pre-signed URL, the file id in `X-Together-File-Id`. */
  #startUpload(url: URL, body: unknown): Response {
    const form = typeof body === "object" && body !== null ? (body as Record<string, unknown>) : {};
    const field = (name: string) =>
      url.searchParams.get(name) ?? (typeof form[name] === "string" ? form[name] : null);
    const filename = field("file_name");
    const purpose = field("purpose") ?? "fine-tune";
    const fileType = field("file_type") ?? "jsonl";
    if (!filename) return apiError(400, "file_name is required", "invalid_request");
    if (!["fine-tune", "eval", "batch-api"].includes(purpose)) {
      return apiError(400, `invalid purpose ${purpose}`, "invalid_request");
    }
    if (!["jsonl", "parquet", "csv"].includes(fileType)) {
      return apiError(400, `invalid file_type ${fileType}`, "invalid_request");
    }
    const id = `file-${randomUUID()}`;
    const signature = randomUUID().replaceAll("-", "");
    this.#files.set(id, {
      id,
      filename,
      purpose,
      fileType,
      signature,
      createdAt: Math.floor(Date.now() / 1000),
      bytes: undefined,
      preprocessed: false,
      checks: 0,
    });
    const location = `${this.uploadURL}/${encodeURIComponent(id)}?X-Amz-Expires=3600&X-Amz-Signature=${signature}`;
    return new HttpResponse(null, { status: 302, headers: { Location: location, "X-Together-File-Id": id } });
  }

  #preprocess(id: string): Response {
    const file = this.#files.get(id);
    if (!file) return apiError(404, `File ${id} not found`, "not_found");
    if (!file.bytes) return apiError(400, `File ${id} has not been uploaded`, "invalid_request");
    file.preprocessed = true;
    return HttpResponse.json(this.#fileObject(file, "PENDING"));
  }

  #retrieveFile(id: string): Response {
    const file = this.#files.get(id);
    if (!file) return apiError(404, `File ${id} not found`, "not_found");
    if (!file.preprocessed) return HttpResponse.json(this.#fileObject(file, "PENDING"));
    file.checks++;
    if (file.checks <= (this.#options.fileProcessingChecks ?? 0)) {
      return HttpResponse.json(this.#fileObject(file, "RUNNING"));
    }
    const problem = this.#options.rejectFiles ?? problemOf(file.bytes ?? new Uint8Array());
    return HttpResponse.json(
      this.#fileObject(file, problem === undefined ? "COMPLETED" : "INVALID_FORMAT", problem),
    );
  }

  /** `FileResponse` (together-typescript src/resources/files.ts). */
  #fileObject(file: StoredFile, status: string, problem?: string): Record<string, unknown> {
    const lines = lineCount(file.bytes);
    const settled = status === "COMPLETED" || status === "INVALID_FORMAT";
    return {
      id: file.id,
      object: "file",
      created_at: file.createdAt,
      filename: file.filename,
      bytes: file.bytes?.byteLength ?? 0,
      purpose: file.purpose,
      Processed: file.bytes !== undefined,
      FileType: file.fileType,
      LineCount: lines,
      processing_status: status,
      ...(settled
        ? {
            validation_report:
              problem === undefined
                ? { valid: true, file_id: file.id, nlines: lines, dataset_format: "CONVERSATION" }
                : {
                    valid: false,
                    file_id: file.id,
                    nlines: lines,
                    error: problem,
                    error_type: "INVALID_FORMAT",
                  },
          }
        : {}),
    };
  }

  #createJob(body: unknown): Response {
    if (typeof body !== "object" || body === null || Array.isArray(body)) {
      return apiError(400, "the request body must be a JSON object", "invalid_request");
    }
    const request = body as Record<string, unknown>;
    const problem = this.#checkJobRequest(request);
    if (problem) return apiError(400, problem, "invalid_request");
    const trainingFile = this.#files.get(request.training_file as string);
    const id = `ft-${randomUUID()}`;
    const now = this.#time();
    const statuses = this.#statusesOf();
    const epochs = typeof request.n_epochs === "number" ? request.n_epochs : 1;
    const job: StoredJob = {
      id,
      request,
      statuses,
      step: 0,
      cancel: undefined,
      createdAt: now,
      updatedAt: now,
      events: [],
      metrics: [],
      checkpoints: [],
      tokens: Math.ceil((trainingFile?.bytes?.byteLength ?? 0) / 4) * epochs,
    };
    this.#jobs.set(id, job);
    this.state.jobRequests.set(id, request);
    this.#enter(job, statuses[0] ?? "queued");
    return HttpResponse.json(this.#jobObject(job, false));
  }

  #checkJobRequest(request: Record<string, unknown>): string | undefined {
    // A job from a checkpoint names no model (together-python refuses both at once).
    if (request.from_checkpoint !== undefined) {
      if (request.model !== undefined) return "model and from_checkpoint cannot both be given";
    } else if (typeof request.model !== "string" || request.model === "") return "model is required";
    if (typeof request.training_file !== "string") return "training_file is required";
    const file = this.#files.get(request.training_file);
    if (!file?.preprocessed) return `training_file ${request.training_file} not found`;
    const validation = request.validation_file;
    if (typeof validation === "string" && validation !== "" && !this.#files.get(validation)?.preprocessed) {
      return `validation_file ${validation} not found`;
    }
    const epochs = request.n_epochs;
    if (epochs !== undefined && (!Number.isInteger(epochs) || (epochs as number) < 1)) {
      return "n_epochs must be a positive integer";
    }
    const batch = request.batch_size;
    if (batch !== undefined && batch !== "max" && (!Number.isInteger(batch) || (batch as number) < 1)) {
      return 'batch_size must be a positive integer or "max"';
    }
    const type = request.training_type as Record<string, unknown> | undefined;
    if (type !== undefined && type !== null) {
      if (type.type !== "Lora" && type.type !== "Full") return "training_type.type must be Lora or Full";
      if (type.type === "Lora" && (!Number.isInteger(type.lora_r) || !Number.isInteger(type.lora_alpha))) {
        return "training_type.lora_r and training_type.lora_alpha are required integers for LoRA";
      }
    }
    const method = request.training_method as Record<string, unknown> | undefined;
    if (method !== undefined && method !== null && method.method !== "sft" && method.method !== "dpo") {
      return "training_method.method must be sft or dpo";
    }
    return undefined;
  }

  #statusesOf(): string[] {
    const statuses = [...(this.#options.statuses ?? [])];
    const failure = this.#options.failure;
    if (failure && !statuses.some((status) => status === "error" || status === "user_error")) {
      statuses[statuses.length - 1] = failure.status ?? "error";
    }
    return statuses;
  }

  /** One step further, at each retrieve; a requested cancel ends the job instead. */
  #advance(job: StoredJob): void {
    if (job.cancel === "requested") {
      job.cancel = "done";
      this.#enter(job, "cancelled");
      return;
    }
    if (job.cancel === "done" || job.step >= job.statuses.length - 1) return;
    job.step++;
    this.#enter(job, job.statuses[job.step] ?? "completed");
  }

  #cancel(job: StoredJob): Response {
    const status = this.#statusOf(job);
    if (TERMINAL.has(status))
      return apiError(400, `Fine-tune job ${job.id} is already ${status}`, "invalid_request");
    if (job.cancel === undefined) {
      job.cancel = "requested";
      this.#enter(job, "cancel_requested");
    }
    return HttpResponse.json(this.#jobObject(job, false));
  }

  #statusOf(job: StoredJob): string {
    if (job.cancel === "requested") return "cancel_requested";
    if (job.cancel === "done") return "cancelled";
    return job.statuses[job.step] ?? "completed";
  }

  /**
   * Metrics of steps `from`…`to` as Together logs them (W&B-style keys; docs.together.ai reference
   * get-fine-tunes-id-metrics): a falling training loss, and an evaluation entry at the last step
   * when the job has a validation file.
   */
  #logMetrics(job: StoredJob, from: number, to: number, total: number): void {
    const rate = typeof job.request.learning_rate === "number" ? job.request.learning_rate : 0.00001;
    for (let step = from; step <= to; step++) {
      job.metrics.push({
        "train/loss": Number((2.5 / (1 + step / 4)).toFixed(4)),
        "train/learning_rate": rate,
        "train/global_step": step,
        "train/epoch": Number(((step / total) * Number(job.request.n_epochs ?? 1)).toFixed(3)),
      });
    }
    if (to === total && job.request.validation_file)
      job.metrics.push({
        "eval/loss": Number((2.5 / (1 + total / 3)).toFixed(4)),
        "eval/global_step": total,
      });
  }

  /** The events (and checkpoints) of reaching a status, appended oldest first. */
  #enter(job: StoredJob, status: string): void {
    const total = this.#options.totalSteps ?? 10;
    const event = (type: string, message: string, extra: Record<string, unknown> = {}) =>
      job.events.push(this.#event(type, message, total, extra));
    job.updatedAt = this.#time();
    if (status === "pending" || status === "queued") {
      if (job.events.length === 0) event("job_pending", "Fine-tune request created");
    } else if (status === "running") {
      event("job_start", "Job started");
      event("training_start", "Training started");
      const half = Math.max(1, Math.floor(total / 2));
      const path = `s3://together-finetune/${job.id}/checkpoint-${half}`;
      this.#logMetrics(job, 1, half, total);
      event("checkpoint_save", `New checkpoint saved at step ${half}`, { step: half, checkpoint_path: path });
      job.checkpoints.push({ checkpoint_type: "Intermediate", created_at: this.#time(), path, step: half });
      this.#logMetrics(job, half + 1, total, total);
      event("epoch_complete", `Epoch completed, at step ${total}`, { step: total });
    } else if (status === "compressing") {
      event("model_compressing", "Compressing output model");
    } else if (status === "uploading") {
      event("model_uploading", "Uploading output model");
    } else if (status === "completed") {
      event("training_complete", "Training completed", { step: total });
      event("model_upload_complete", "Model upload complete", { model_path: outputName(job) });
      job.checkpoints.push({
        checkpoint_type: "Final",
        created_at: this.#time(),
        path: `s3://together-finetune/${job.id}/final`,
        step: total,
      });
      event("job_complete", `Job finished. Model: ${outputName(job)}`);
    } else if (status === "error" || status === "user_error") {
      const message = this.#options.failure?.message ?? "Training failed";
      event(status === "user_error" ? "job_user_error" : "job_error", message, { level: "error" });
    } else if (status === "cancel_requested") {
      event("cancel_requested", "Cancel requested");
    } else if (status === "cancelled") {
      event("job_stopped", "Job cancelled");
    }
  }

  /** `FinetuneEvent`: every documented field present, `created_at` a string. */
  #event(
    type: string,
    message: string,
    total: number,
    extra: Record<string, unknown>,
  ): Record<string, unknown> {
    const { level = "info", ...fields } = extra;
    return {
      object: "fine-tune-event",
      created_at: this.#time(),
      level,
      message,
      type,
      param_count: 0,
      token_count: 0,
      total_steps: total,
      wandb_url: "",
      step: 0,
      checkpoint_path: "",
      model_path: "",
      training_offset: 0,
      hash: randomUUID().replaceAll("-", ""),
      ...fields,
    };
  }

  /** `FinetuneResponse`; the truncated form (create, list, cancel) leaves out the events. */
  #jobObject(job: StoredJob, full: boolean): Record<string, unknown> {
    const request = job.request;
    const status = this.#statusOf(job);
    const method = (request.training_method as Record<string, unknown> | undefined) ?? {
      method: "sft",
      train_on_inputs: "auto",
    };
    return {
      id: job.id,
      status,
      model: request.model,
      model_output_name: outputName(job),
      created_at: job.createdAt,
      updated_at: job.updatedAt,
      training_file: request.training_file,
      validation_file: request.validation_file ?? "",
      n_epochs: request.n_epochs ?? 1,
      n_checkpoints: request.n_checkpoints ?? 1,
      n_evals: request.n_evals ?? 0,
      batch_size: request.batch_size ?? "max",
      learning_rate: request.learning_rate ?? 0.00001,
      warmup_ratio: request.warmup_ratio ?? 0,
      // Without training_type the API trains LoRA (FineTuningCreateParams.training_type).
      training_type: request.training_type ?? {
        type: "Lora",
        lora_r: 64,
        lora_alpha: 128,
        lora_dropout: 0,
        lora_trainable_modules: "all-linear",
      },
      training_method: method,
      suffix: request.suffix,
      token_count: job.tokens,
      total_price: 0,
      epochs_completed: status === "completed" ? (request.n_epochs ?? 1) : 0,
      queue_depth: status === "queued" || status === "pending" ? 1 : 0,
      ...(full ? { events: job.events } : {}),
    };
  }

  #estimate(body: unknown): Response {
    const request = (typeof body === "object" && body !== null ? body : {}) as Record<string, unknown>;
    const file =
      typeof request.training_file === "string" ? this.#files.get(request.training_file) : undefined;
    if (!file)
      return apiError(400, `training_file ${String(request.training_file)} not found`, "invalid_request");
    const price = this.#options.price;
    if (price && "unavailable" in price)
      return HttpResponse.json({ estimation_available: false, unavailable_reason: price.unavailable });
    const epochs = typeof request.n_epochs === "number" ? request.n_epochs : 1;
    const tokens = price?.trainTokens ?? Math.ceil((file.bytes?.byteLength ?? 0) / 4) * epochs;
    const total = price?.totalUSD === undefined ? (tokens / 1_000_000) * 0.5 : price.totalUSD;
    return HttpResponse.json({
      estimation_available: true,
      ...(total === null ? {} : { estimated_total_price: total }),
      estimated_train_token_count: tokens,
      estimated_eval_token_count: 0,
      allowed_to_proceed: price?.allowed ?? true,
      user_limit: 100,
    });
  }

  /** `FinetuneTrainingLimits`: the same limits for every model. */
  #limits(url: URL): Response {
    if (!url.searchParams.get("model_name"))
      return apiError(400, "model_name is required", "invalid_request");
    return HttpResponse.json({
      max_num_epochs: 20,
      max_learning_rate: 1,
      min_learning_rate: 0,
      min_max_seq_length: 1024,
      max_seq_length_sft: 8192,
      max_seq_length_dpo: 8192,
      full_training: { max_batch_size: 96, min_batch_size: 8 },
      lora_training: { max_batch_size: 128, min_batch_size: 8, max_rank: 64, target_modules: LORA_MODULES },
      supports_vision: false,
    });
  }

  #chat(body: unknown): Response {
    const request = (typeof body === "object" && body !== null ? body : {}) as Record<string, unknown>;
    const messages = request.messages;
    if (typeof request.model !== "string" || !Array.isArray(messages) || messages.length === 0) {
      return apiError(400, "model and messages are required", "invalid_request");
    }
    // A fine-tuned model answers only on a dedicated endpoint.
    const tuned = [...this.#jobs.values()].some((job) => outputName(job) === request.model);
    const endpoints = this.#options.endpoints ?? [];
    if (tuned && endpoints !== "all" && !endpoints.includes(request.model))
      return apiError(
        400,
        `Unable to access non-serverless model ${request.model}. Please visit https://api.together.ai/models/${request.model} to create and start a new dedicated endpoint for the model.`,
        "invalid_request_error",
      );
    const reply = this.#options.chatReply ?? "Hello from Together.";
    return answerChat(request, {
      dialect: "together",
      ...(this.#options.chatStreamDelayMs !== undefined
        ? { streamDelayMs: this.#options.chatStreamDelayMs }
        : {}),
      reply: typeof reply === "function" ? ({ messages: list, model }) => reply(list, model) : reply,
    });
  }

  #injected(method: string, path: string): Response | undefined {
    const failure = this.#failures.find(
      (candidate) =>
        candidate.left > 0 &&
        (candidate.match?.method === undefined ||
          candidate.match.method.toUpperCase() === method.toUpperCase()) &&
        (candidate.match?.path === undefined ||
          (typeof candidate.match.path === "string"
            ? candidate.match.path === path
            : candidate.match.path.test(path))),
    );
    if (!failure) return undefined;
    failure.left--;
    if (failure.status === "network") return HttpResponse.error();
    const headers: Record<string, string> = {};
    if (failure.retryAfter !== undefined) headers["retry-after"] = String(failure.retryAfter);
    if (failure.retryAfterMs !== undefined) headers["retry-after-ms"] = String(failure.retryAfterMs);
    const message = failure.message ?? defaultMessage(failure.status);
    return apiError(
      failure.status,
      message,
      failure.status === 429 ? "rate_limit_exceeded" : "server_error",
      headers,
    );
  }

  async #record(request: Request, path: string, url: URL): Promise<TogetherRecordedRequest> {
    const sent = /^Bearer\s+(.+)$/i.exec(request.headers.get("authorization") ?? "")?.[1]?.trim();
    const entry: TogetherRecordedRequest = {
      method: request.method.toUpperCase(),
      path,
      query: Object.fromEntries(url.searchParams),
      body: await readBody(request),
      authorized: sent === this.#key,
      status: 0,
    };
    this.state.requests.push(entry);
    return entry;
  }

  /** ISO times that always move forward, so events sort as they happened. */
  #time(): string {
    this.#lastTime = Math.max(Date.now(), this.#lastTime + 1);
    return new Date(this.#lastTime).toISOString();
  }
}

/** Together's error envelope (OpenAI-compatible). */
function apiError(
  status: number,
  message: string,
  code: string,
  headers: Record<string, string> = {},
): Response {
  const type =
    status === 429 ? "rate_limit_exceeded" : status >= 500 ? "server_error" : "invalid_request_error";
  return HttpResponse.json({ error: { message, type, param: null, code } }, { status, headers });
}

function defaultMessage(status: number): string {
  if (status === 429) return "Rate limit exceeded, please try again later";
  if (status >= 500) return "Internal server error";
  return `Request failed with status ${status}`;
}

async function readBody(request: Request): Promise<unknown> {
  if (request.method === "GET" || request.method === "HEAD") return undefined;
  const bytes = new Uint8Array(await request.arrayBuffer());
  if (bytes.byteLength === 0) return undefined;
  const type = request.headers.get("content-type") ?? "";
  if (type.includes("application/json")) {
    try {
      return JSON.parse(new TextDecoder().decode(bytes)) as unknown;
    } catch {
      return new TextDecoder().decode(bytes);
    }
  }
  if (type.includes("application/x-www-form-urlencoded")) {
    return Object.fromEntries(new URLSearchParams(new TextDecoder().decode(bytes)));
  }
  return bytes;
}

/** The first line that is not a JSON object, as Together's validation would report it. */
function problemOf(bytes: Uint8Array): string | undefined {
  const lines = new TextDecoder().decode(bytes).split("\n");
  let records = 0;
  for (const [index, line] of lines.entries()) {
    if (line.trim() === "") continue;
    try {
      const value: unknown = JSON.parse(line);
      if (typeof value !== "object" || value === null || Array.isArray(value)) {
        return `Line ${index + 1} is not a JSON object`;
      }
      records++;
    } catch {
      return `Line ${index + 1} is not valid JSON`;
    }
  }
  return records === 0 ? "The file has no examples" : undefined;
}

function lineCount(bytes: Uint8Array | undefined): number {
  if (!bytes) return 0;
  return new TextDecoder()
    .decode(bytes)
    .split("\n")
    .filter((line) => line.trim() !== "").length;
}

/** `{account}/{model}-{suffix}-{id}`, the shape of Together's output model names. */
function outputName(job: StoredJob): string {
  const model = String(job.request.model).split("/").at(-1) ?? "model";
  const suffix = typeof job.request.suffix === "string" && job.request.suffix ? `-${job.request.suffix}` : "";
  return `tunekit-test/${model}${suffix}-${job.id.slice(3, 11)}`;
}

function invalid(message: string): never {
  throw new ValidationError("invalid_argument", `togetherFineTuningHandlers: ${message}`);
}
