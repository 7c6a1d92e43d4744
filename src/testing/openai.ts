/**
 * OpenAI's fine-tuning API as msw handlers, for tests of code that fine-tunes through OpenAI without
 * the network. It answers the way the API does: the shapes of its objects follow the API reference
 * (https://platform.openai.com/docs/api-reference/files, …/fine-tuning, …/chat) and the official SDK's
 * types (`openai/resources/files.d.ts` `FileObject`, `fine-tuning/jobs/jobs.d.ts` `FineTuningJob` and
 * `FineTuningJobEvent`, `fine-tuning/jobs/checkpoints.d.ts` `FineTuningJobCheckpoint`,
 * `chat/completions/completions.d.ts` `ChatCompletion`), which this file is type-checked against.
 * Errors come as `{ error: { message, type, param, code } }` with an `x-request-id` header, as the API
 * sends them. Where the reference gives no wording (some 400 and 404 messages), the wording here is
 * close to what the API says but not promised to match it.
 */
import { createHash } from "node:crypto";
import { delay, HttpResponse, http, type JsonBodyType, type RequestHandler } from "msw";
import type { FileObject } from "openai/resources/files";
import type { FineTuningJobCheckpoint } from "openai/resources/fine-tuning/jobs/checkpoints";
import type { FineTuningJob, FineTuningJobEvent } from "openai/resources/fine-tuning/jobs/jobs";
import { ValidationError } from "../core/errors.js";
import { answerChat, type FakeChatRequest, type FakeModelReply } from "./chat-completions.js";

/** The API key `openaiFineTuningHandlers` accepts when none is given. */
export const OPENAI_TEST_API_KEY = "sk-test-tunekit-0123456789abcdefghijklmnop";

/**
 * A job status as the API words it. `paused` shows in the API's examples of the pause and resume
 * endpoints though not in its status enum; any other word stands for one OpenAI may add later.
 */
export type OpenAIJobStatus =
  | "validating_files"
  | "queued"
  | "running"
  | "succeeded"
  | "failed"
  | "cancelled"
  | "paused"
  | (string & {});

/** A failure to inject: an HTTP error with OpenAI's body, or a connection dropped without an answer. */
export interface OpenAIFailure {
  /**
   * The requests it hits: `"POST /fine_tuning/jobs"` (method and path below the base URL), a path alone
   * (`"/files"`), or a RegExp tried on `"METHOD /path"`. Default: every request.
   */
  request?: string | RegExp;
  /** Answer with this status (429, 500, 503, …). */
  status?: number;
  /** Drop the connection instead (the client sees a network error). */
  drop?: boolean;
  /** `retry-after` header, in seconds (fractions allowed). */
  retryAfter?: number;
  /** `retry-after-ms` header, in milliseconds. */
  retryAfterMs?: number;
  /** How many matching requests fail. Default 1. */
  times?: number;
}

/** The `error` of a failed job: `FineTuningJob.Error`. */
export interface OpenAIJobError {
  code: string;
  message: string;
  param?: string | null;
}

export interface OpenAIFineTuningHandlersOptions {
  /** The only key accepted as `Authorization: Bearer …`; others get 401. Default `OPENAI_TEST_API_KEY`. */
  apiKey?: string;
  /** Default `https://api.openai.com/v1`. */
  baseURL?: string;
  /** The key's organization, answered as `organization_id`; another `OpenAI-Organization` header gets 401. Default "org-tunekit". */
  organization?: string;
  /**
   * The statuses a job goes through, one more at each retrieve (`GET /fine_tuning/jobs/{id}`); the last
   * one stays. Default `["validating_files", "queued", "running", "succeeded"]`. Repeat "running" for
   * more retrieves while it trains; end with "failed" for a failure.
   */
  statuses?: OpenAIJobStatus[];
  /** The error of a job that reaches "failed". Default: an `invalid_training_file` error on `training_file`. */
  error?: OpenAIJobError;
  /** Training steps of a job, each reported by a `metrics` event while it runs. Default 6. */
  steps?: number;
  /** The statuses of an upload, one more at each retrieve. Default `["uploaded", "processed"]`. */
  fileStatuses?: Array<"uploaded" | "processed" | "error">;
  /** `status_details` of an upload that ends in "error". */
  fileStatusDetails?: string;
  /**
   * How `GET /files/{id}/content` sends a job's result CSV. The API sends it base64-encoded (OpenAI's
   * cookbook decodes it with `base64.b64decode`); "csv" sends it plain. Default "base64".
   */
  resultFileEncoding?: "base64" | "csv";
  /**
   * The assistant's answer in `POST /chat/completions` (text, or tool calls of tools the request
   * offers); cut by `max_completion_tokens` and `stop`, streamed with `stream: true` (see
   * `answerChat`). Default: "You said: " and the last user message.
   */
  chatReply?: string | ((request: FakeChatRequest) => FakeModelReply);
  /** Milliseconds before each chunk of a streamed chat answer. Default 0. */
  chatStreamDelayMs?: number;
  /** Failures to inject, tried in order; `fail()` adds more later. */
  failures?: OpenAIFailure[];
  /** Wait this long before each answer, e.g. to abort a request in flight. Default 0. */
  latencyMs?: number;
  /**
   * Whether `POST /fine_tuning/jobs` creates jobs ("open", the default) or refuses them with 403, as
   * OpenAI does for organisations its wind-down of fine-tuning has shut out ("closed").
   */
  jobCreation?: "open" | "closed";
  /**
   * Fine-tunes the organisation already owns: each a succeeded job (with its training file, a
   * validation file when given, a result file and checkpoints) and a fine-tuned model in `GET /models`.
   */
  fineTunes?: OpenAIExistingFineTune[];
  /**
   * `shutdown_date` (YYYY-MM-DD) that `GET /models` reports, by base model id; a fine-tune of one
   * reports its base's. Default: none reported.
   */
  shutdownDates?: Record<string, string>;
  /**
   * File purposes whose content `GET /files/{id}/content` refuses (400 "Not allowed to download files
   * of purpose: …"). Default `["assistants", "user_data"]`.
   */
  refusedContentPurposes?: string[];
  /**
   * Files each checkpoint lists as its weights (`result_files`, as Nebius's checkpoints do), by file
   * name: a PEFT adapter's `adapter_config.json` and `adapter_model.safetensors`, say. Default: none.
   */
  checkpointFiles?: Record<string, Uint8Array | string>;
}

/** A fine-tune that exists before the test starts (see `fineTunes`). */
export interface OpenAIExistingFineTune {
  /** Its base model. Default `gpt-4o-mini-2024-07-18`. */
  model?: string;
  suffix?: string;
  /** The training file's JSONL. */
  training: string;
  validation?: string;
  /** Its hyperparameters. Default: 3 epochs, batch size 1, learning rate multiplier 2. */
  hyperparameters?: { n_epochs?: number; batch_size?: number; learning_rate_multiplier?: number };
}

/** The base models `GET /models` lists besides the fine-tunes (the ones tunekit's table knows). */
const BASE_MODELS = [
  "gpt-4.1-2025-04-14",
  "gpt-4.1-mini-2025-04-14",
  "gpt-4o-2024-08-06",
  "gpt-4o-mini-2024-07-18",
  "gpt-3.5-turbo-0125",
];

/** A file field of a recorded multipart body. */
export interface OpenAIRecordedFile {
  filename: string;
  type: string;
  size: number;
  text: string;
}

/** A request as the fake received it. */
export interface OpenAIRecordedRequest {
  method: string;
  /** Below the base URL: `/fine_tuning/jobs`. */
  path: string;
  query: Record<string, string>;
  /** Header names in lower case. */
  headers: Record<string, string>;
  /** Parsed JSON, a multipart form as `{ field: string | OpenAIRecordedFile }`, or undefined without a body. */
  body: unknown;
  /** `Date.now()` when it arrived. */
  at: number;
}

/** A job as the API returns it; `status` also takes words beyond the SDK's enum (see `OpenAIJobStatus`). */
export type OpenAIJobObject = Omit<FineTuningJob, "status"> & {
  status: OpenAIJobStatus;
  user_provided_suffix?: string | null;
};

/** What the fake holds, to inspect in tests. */
export interface OpenAIFakeState {
  /** Every request, in order, also those answered with an injected failure or an error. */
  readonly requests: OpenAIRecordedRequest[];
  readonly files: ReadonlyMap<string, { object: FileObject; content: Uint8Array }>;
  /** Each job with its events and checkpoints, oldest first. */
  readonly jobs: ReadonlyMap<
    string,
    { object: OpenAIJobObject; events: FineTuningJobEvent[]; checkpoints: FineTuningJobCheckpoint[] }
  >;
}

export interface OpenAIFineTuningFake {
  /** For `setupServer(...fake.handlers)` or `server.use(...fake.handlers)`. */
  handlers: RequestHandler[];
  state: OpenAIFakeState;
  /** Injects more failures, after those already waiting. */
  fail(...failures: OpenAIFailure[]): void;
}

const DEFAULT_BASE_URL = "https://api.openai.com/v1";
const DEFAULT_STATUSES: OpenAIJobStatus[] = ["validating_files", "queued", "running", "succeeded"];
const DEFAULT_ERROR: OpenAIJobError = {
  code: "invalid_training_file",
  message:
    "The job failed due to an invalid training file. Expected file to have JSONL format, where every line is a valid JSON dictionary. Line 1 is not a dictionary.",
  param: "training_file",
};
const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);
/** `FilePurpose` in the SDK's `files.d.ts`. */
const PURPOSES = new Set(["assistants", "batch", "fine-tune", "vision", "user_data", "evals"]);
/** What the API resolves "auto" to; the numbers of the job printed in OpenAI's cookbook. */
const RESOLVED = { n_epochs: 3, batch_size: 1, learning_rate_multiplier: 2, beta: 0.1 };
/** Properties of a chat message the API accepts; it refuses others (such as a training file's `weight`). */
const MESSAGE_KEYS = new Set([
  "role",
  "content",
  "name",
  "tool_calls",
  "tool_call_id",
  "refusal",
  "audio",
  "function_call",
]);
const DEFAULT_LIMIT = 20;
const MAX_LIMIT = 100;
const ALPHANUMERIC = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/**
 * OpenAI's fine-tuning API as msw handlers: `const fake = openaiFineTuningHandlers();
 * server.use(...fake.handlers)`. It holds files and jobs across requests. A job moves through
 * `options.statuses`, one step per retrieve, and logs events as it goes (messages, a `metrics` event
 * per training step, checkpoints for the last three epochs); a job that succeeds gets a fine-tuned
 * model, a result CSV and checkpoints. Pause, resume and cancel work on jobs that allow them (400
 * otherwise). Lists page with `after`/`limit`/`has_more`, newest first. Unknown ids get 404, a wrong
 * key 401, and `failures` inject 429 (with `retry-after`), 5xx or a dropped connection. For the SDK's
 * retries to work under msw 2.15, call `releaseResponseCopies(server)` once. Before its first upload the
 * SDK fetches `data:,` (a check of FormData support) which no handler can match: let it pass in a
 * custom `onUnhandledRequest` if you use "error".
 */
export function openaiFineTuningHandlers(
  options: OpenAIFineTuningHandlersOptions = {},
): OpenAIFineTuningFake {
  const fake = new FakeOpenAI(options);
  const base = (options.baseURL ?? DEFAULT_BASE_URL).replace(/\/+$/, "");
  const route = (method: "get" | "post", path: string, answer: Answer): RequestHandler =>
    http[method](`${base}${path}`, async ({ request, params }) =>
      fake.serve(request, base, (context) =>
        answer({ ...context, params: params as Record<string, string> }),
      ),
    );
  return {
    handlers: [
      route("post", "/files", (context) => fake.createFile(context)),
      route("get", "/files/:id", ({ params }) => fake.retrieveFile(params.id ?? "")),
      route("get", "/files/:id/content", ({ params }) => fake.fileContent(params.id ?? "")),
      route("post", "/fine_tuning/jobs", (context) => fake.createJob(context)),
      route("get", "/fine_tuning/jobs", (context) => fake.listJobs(context)),
      route("get", "/fine_tuning/jobs/:id", ({ params }) => fake.retrieveJob(params.id ?? "")),
      route("post", "/fine_tuning/jobs/:id/cancel", ({ params }) => fake.cancelJob(params.id ?? "")),
      route("post", "/fine_tuning/jobs/:id/pause", ({ params }) => fake.pauseJob(params.id ?? "")),
      route("post", "/fine_tuning/jobs/:id/resume", ({ params }) => fake.resumeJob(params.id ?? "")),
      route("get", "/fine_tuning/jobs/:id/events", (context) => fake.listEvents(context)),
      route("get", "/fine_tuning/jobs/:id/checkpoints", (context) => fake.listCheckpoints(context)),
      route("post", "/chat/completions", (context) => fake.chat(context)),
      route("get", "/models", () => fake.listModels()),
      route("get", "/models/:id", ({ params }) => fake.retrieveModel(params.id ?? "")),
      // Anything else below the base URL, as the API answers it.
      http.all(`${base}/*`, ({ request }) =>
        fake.serve(request, base, ({ method, path }) =>
          apiError(404, `Invalid URL (${method} ${new URL(base).pathname}${path})`, "invalid_request_error"),
        ),
      ),
    ],
    state: fake.state,
    fail: (...failures) => fake.addFailures(failures),
  };
}

/** What `releaseResponseCopies` needs of an msw server (`setupServer()` or `setupWorker()`). */
export interface MockServerEvents {
  events: { on(type: "response:mocked", listener: (event: { response: Response }) => void): unknown };
}

/**
 * Lets clients cancel the body of a mocked error response, which the openai SDK does before each
 * retry. msw hands a copy (a `tee`) of every mocked response to its `response:mocked` listeners, and a
 * stream's cancel settles only once both copies are cancelled or read, so with msw 2.15
 * (`@mswjs/interceptors` 0.41; mswjs/interceptors#799, fixed by #833) every retry of a 429 or 5xx hangs.
 * This cancels msw's copy of each mocked 4xx/5xx answer; call it once per server. Your own
 * `response:mocked` listeners then see those bodies empty.
 */
export function releaseResponseCopies(server: MockServerEvents): void {
  server.events.on("response:mocked", ({ response }) => {
    if (response.status >= 400) response.body?.cancel().catch(() => {});
  });
}

interface Context {
  method: string;
  path: string;
  query: URLSearchParams;
  body: unknown;
  /** The upload of a multipart body, with its bytes. */
  upload: { file: File | undefined; bytes: Uint8Array | undefined };
  params: Record<string, string>;
}

type Answer = (context: Context) => Response | Promise<Response>;

interface JobRecord {
  object: OpenAIJobObject;
  events: FineTuningJobEvent[];
  checkpoints: FineTuningJobCheckpoint[];
  /** Index into the statuses the job goes through. */
  stage: number;
  /** Steps reported so far. */
  stepsDone: number;
  /** The status a paused job returns to. */
  pausedFrom: OpenAIJobStatus | undefined;
  hasValidation: boolean;
  /** The numbers behind `metrics` events and the result file, by step. */
  metrics: StepMetrics[];
}

interface StepMetrics {
  step: number;
  train_loss: number;
  train_mean_token_accuracy: number;
  valid_loss?: number;
  valid_mean_token_accuracy?: number;
  full_valid_loss?: number;
  full_valid_mean_token_accuracy?: number;
}

interface FileRecord {
  object: FileObject;
  content: Uint8Array;
  stage: number;
}

class FakeOpenAI {
  readonly state: OpenAIFakeState;
  readonly #requests: OpenAIRecordedRequest[] = [];
  readonly #files = new Map<string, FileRecord>();
  readonly #jobs = new Map<string, JobRecord>();
  readonly #failures: Array<OpenAIFailure & { left: number }> = [];
  readonly #apiKey: string;
  readonly #organization: string;
  readonly #statuses: OpenAIJobStatus[];
  readonly #error: OpenAIJobError;
  readonly #steps: number;
  readonly #fileStatuses: Array<"uploaded" | "processed" | "error">;
  readonly #options: OpenAIFineTuningHandlersOptions;
  #counter = 0;

  constructor(options: OpenAIFineTuningHandlersOptions) {
    const {
      apiKey = OPENAI_TEST_API_KEY,
      organization = "org-tunekit",
      statuses = DEFAULT_STATUSES,
      steps = 6,
      fileStatuses = ["uploaded", "processed"],
    } = options;
    if (apiKey.trim() === "") invalid("apiKey must not be empty");
    if (statuses.length === 0) invalid("statuses needs at least one status");
    if (!Number.isSafeInteger(steps) || steps < 1) invalid("steps must be a whole number of at least 1");
    if (fileStatuses.length === 0) invalid("fileStatuses needs at least one status");
    if (options.latencyMs !== undefined && !(options.latencyMs >= 0)) invalid("latencyMs must be 0 or more");
    if (options.baseURL !== undefined && !URL.canParse(options.baseURL)) invalid("baseURL must be a URL");
    this.#apiKey = apiKey;
    this.#organization = organization;
    this.#statuses = [...statuses];
    this.#error = options.error ?? DEFAULT_ERROR;
    this.#steps = steps;
    this.#fileStatuses = [...fileStatuses];
    this.#options = options;
    this.addFailures(options.failures ?? []);
    for (const existing of options.fineTunes ?? []) this.#seedFineTune(existing);
    this.state = {
      requests: this.#requests,
      files: this.#files,
      jobs: this.#jobs,
    };
  }

  addFailures(failures: OpenAIFailure[]): void {
    for (const failure of failures) {
      if ((failure.status === undefined) === (failure.drop !== true)) {
        invalid("a failure needs either a status or drop: true");
      }
      if (failure.status !== undefined && (failure.status < 400 || failure.status > 599)) {
        invalid(`a failure's status must be 4xx or 5xx, got ${failure.status}`);
      }
      const times = failure.times ?? 1;
      if (!Number.isSafeInteger(times) || times < 1)
        invalid("a failure's times must be a whole number of at least 1");
      this.#failures.push({ ...failure, left: times });
    }
  }

  /** Records the request, then answers with an injected failure, 401, or the route's answer. */
  async serve(request: Request, base: string, answer: (context: Context) => Response | Promise<Response>) {
    const url = new URL(request.url);
    const path = url.pathname.slice(new URL(base).pathname.replace(/\/+$/, "").length) || "/";
    const { body, upload } = await readBody(request);
    this.#requests.push({
      method: request.method,
      path,
      query: Object.fromEntries(url.searchParams),
      headers: Object.fromEntries(request.headers),
      body,
      at: Date.now(),
    });
    if (this.#options.latencyMs) await delay(this.#options.latencyMs);
    const response =
      this.#takeFailure(request.method, path) ??
      this.#authenticate(request) ??
      (await answer({ method: request.method, path, query: url.searchParams, body, upload, params: {} }));
    // Every answer of the API names its request; a dropped connection has no headers to set.
    if (response.type !== "error") response.headers.set("x-request-id", this.#requestId());
    return response;
  }

  /** `req_` and 32 hex digits, as the API's `x-request-id`. */
  #requestId(): string {
    return `req_${createHash("md5")
      .update(`request ${this.#requests.length}:${++this.#counter}`)
      .digest("hex")}`;
  }

  #takeFailure(method: string, path: string): Response | undefined {
    const target = `${method} ${path}`;
    const failure = this.#failures.find(({ request, left }) => {
      if (left <= 0) return false;
      if (request === undefined) return true;
      if (request instanceof RegExp) return request.test(target);
      return request === target || request === path;
    });
    if (!failure) return undefined;
    failure.left--;
    if (failure.drop) return HttpResponse.error() as Response;
    const headers = new Headers();
    if (failure.retryAfter !== undefined) headers.set("retry-after", String(failure.retryAfter));
    if (failure.retryAfterMs !== undefined) headers.set("retry-after-ms", String(failure.retryAfterMs));
    const status = failure.status ?? 500;
    // The bodies the API sends for these statuses (see the API reference's "Error codes" guide).
    if (status === 429) {
      return apiError(429, "Rate limit reached for requests. Please try again later.", "requests", {
        code: "rate_limit_exceeded",
        headers,
      });
    }
    if (status === 503) {
      return apiError(503, "The engine is currently overloaded, please try again later.", "server_error", {
        headers,
      });
    }
    if (status >= 500) {
      return apiError(
        status,
        "The server had an error while processing your request. Sorry about that!",
        "server_error",
        { headers },
      );
    }
    return apiError(status, `Injected error ${status}`, "invalid_request_error", { headers });
  }

  #authenticate(request: Request): Response | undefined {
    const header = request.headers.get("authorization") ?? "";
    const key = /^Bearer\s+(.+)$/i.exec(header)?.[1]?.trim();
    if (!key) {
      return apiError(
        401,
        "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY). You can obtain an API key from https://platform.openai.com/account/api-keys.",
        "invalid_request_error",
      );
    }
    if (key !== this.#apiKey) {
      return apiError(
        401,
        `Incorrect API key provided: ${maskKey(key)}. You can find your API key at https://platform.openai.com/account/api-keys.`,
        "invalid_request_error",
        { code: "invalid_api_key" },
      );
    }
    const organization = request.headers.get("openai-organization");
    if (organization !== null && organization !== this.#organization) {
      return apiError(
        401,
        "OpenAI-Organization header should match organization for API key",
        "invalid_request_error",
        { code: "mismatched_organization" },
      );
    }
    return undefined;
  }

  // --- Files -----------------------------------------------------------------------------------

  createFile({ body, upload }: Context): Response {
    const form = isRecord(body) ? body : {};
    const { file, bytes } = upload;
    if (!file || !bytes)
      return apiError(400, "'file' is a required property", "invalid_request_error", { param: "file" });
    const purpose = form.purpose;
    if (typeof purpose !== "string") {
      return apiError(400, "'purpose' is a required property", "invalid_request_error", { param: "purpose" });
    }
    if (!PURPOSES.has(purpose)) {
      return apiError(
        400,
        `'${purpose}' is not one of ${JSON.stringify([...PURPOSES])} - 'purpose'`,
        "invalid_request_error",
        { param: "purpose" },
      );
    }
    if (purpose === "fine-tune" && !file.name.endsWith(".jsonl")) {
      return apiError(
        400,
        "Invalid file format for Fine-Tuning API. Must be .jsonl",
        "invalid_request_error",
        {
          param: "file",
        },
      );
    }
    const id = this.#id("file-", 24);
    const object: FileObject = {
      object: "file",
      id,
      purpose: purpose as FileObject["purpose"],
      filename: file.name,
      bytes: bytes.byteLength,
      created_at: now(),
      status: this.#fileStatuses[0] ?? "processed",
    };
    const record: FileRecord = { object, content: bytes, stage: 0 };
    this.#settleFile(record);
    this.#files.set(id, record);
    return json(object);
  }

  retrieveFile(id: string): Response {
    const record = this.#files.get(id);
    if (!record) return noSuchFile(id);
    if (record.stage < this.#fileStatuses.length - 1 && record.object.purpose === "fine-tune") {
      record.stage++;
      record.object.status = this.#fileStatuses[record.stage] ?? record.object.status;
      this.#settleFile(record);
    }
    return json(record.object);
  }

  #settleFile(record: FileRecord): void {
    if (record.object.status === "error") {
      record.object.status_details =
        this.#options.fileStatusDetails ??
        'Invalid file format. Example 1 is missing key "messages". Each line must be a JSON object with a "messages" list.';
    }
  }

  fileContent(id: string): Response {
    const record = this.#files.get(id);
    if (!record) return noSuchFile(id);
    const refused = this.#options.refusedContentPurposes ?? ["assistants", "user_data"];
    if (refused.includes(record.object.purpose))
      return apiError(
        400,
        `Not allowed to download files of purpose: ${record.object.purpose}`,
        "invalid_request_error",
        {
          param: "file_id",
        },
      );
    const content = record.content;
    return new HttpResponse(content.slice().buffer, {
      headers: { "content-type": "application/octet-stream" },
    });
  }

  // --- Jobs ------------------------------------------------------------------------------------

  createJob({ body }: Context): Response {
    if (this.#options.jobCreation === "closed")
      return apiError(
        403,
        "You do not have access to create fine-tuning jobs: OpenAI is no longer accepting new fine-tuning jobs from this organization.",
        "invalid_request_error",
        { code: "permission_denied" },
      );
    if (!isRecord(body))
      return apiError(400, "We could not parse the JSON body of your request.", "invalid_request_error");
    const { model, training_file, validation_file, suffix, seed, metadata, integrations } = body;
    if (typeof model !== "string" || model === "") {
      return apiError(400, "Missing required parameter: 'model'.", "invalid_request_error", {
        param: "model",
        code: "missing_required_parameter",
      });
    }
    if (typeof training_file !== "string") {
      return apiError(400, "Missing required parameter: 'training_file'.", "invalid_request_error", {
        param: "training_file",
        code: "missing_required_parameter",
      });
    }
    for (const [param, fileId] of [
      ["training_file", training_file],
      ["validation_file", validation_file],
    ] as const) {
      if (fileId === undefined || fileId === null) continue;
      const file = typeof fileId === "string" ? this.#files.get(fileId) : undefined;
      if (file?.object.purpose !== "fine-tune") {
        return apiError(400, `invalid ${param}: ${String(fileId)}`, "invalid_request_error", { param });
      }
      if (file.object.status !== "processed") {
        return apiError(
          400,
          `File ${fileId} is not ready for fine-tuning: its status is ${file.object.status}`,
          "invalid_request_error",
          {
            param,
            code: "file_not_ready",
          },
        );
      }
    }
    if (suffix !== undefined && suffix !== null) {
      if (typeof suffix !== "string")
        return apiError(400, "Invalid type for 'suffix': expected a string.", "invalid_request_error", {
          param: "suffix",
        });
      if (suffix.length > 64) {
        return apiError(
          400,
          `Invalid 'suffix': string too long. Expected a string with maximum length 64, but got a string with length ${suffix.length} instead.`,
          "invalid_request_error",
          { param: "suffix", code: "string_above_max_length" },
        );
      }
    }
    const method = parseMethod(body.method, body.hyperparameters);
    if (typeof method === "string")
      return apiError(400, method, "invalid_request_error", { param: "method" });

    const record = this.#newJob({
      model,
      method,
      trainingFile: training_file,
      validationFile: typeof validation_file === "string" ? validation_file : null,
      seed: typeof seed === "number" ? seed : undefined,
      suffix: typeof suffix === "string" ? suffix : null,
      metadata: isRecord(metadata) ? (metadata as Record<string, string>) : null,
      integrations: (Array.isArray(integrations) ? integrations : []) as NonNullable<
        OpenAIJobObject["integrations"]
      >,
      status: this.#statuses[0] ?? "queued",
      stage: 0,
    });
    const object = record.object;
    this.#enter(record, object.status);
    return json(object);
  }

  /** A new job and its record, as creation leaves it ("Created fine-tuning job" logged). */
  #newJob(settings: {
    model: string;
    method: NonNullable<OpenAIJobObject["method"]>;
    trainingFile: string;
    validationFile: string | null;
    seed?: number | undefined;
    suffix: string | null;
    metadata: Record<string, string> | null;
    integrations: NonNullable<OpenAIJobObject["integrations"]>;
    status: OpenAIJobStatus;
    stage: number;
  }): JobRecord {
    const id = this.#id("ftjob-", 24);
    const object: OpenAIJobObject = {
      object: "fine_tuning.job",
      id,
      model: settings.model,
      created_at: now(),
      error: null,
      fine_tuned_model: null,
      finished_at: null,
      hyperparameters: topLevelHyperparameters(settings.method),
      organization_id: this.#organization,
      result_files: [],
      seed: settings.seed ?? 1_000_000 + this.#counter,
      status: settings.status,
      trained_tokens: null,
      training_file: settings.trainingFile,
      validation_file: settings.validationFile,
      estimated_finish: null,
      integrations: settings.integrations,
      metadata: settings.metadata,
      method: settings.method,
      user_provided_suffix: settings.suffix,
    };
    const record: JobRecord = {
      object,
      events: [],
      checkpoints: [],
      stage: settings.stage,
      stepsDone: 0,
      pausedFrom: undefined,
      hasValidation: settings.validationFile !== null,
      metrics: [],
    };
    this.#jobs.set(id, record);
    this.#event(record, `Created fine-tuning job: ${id}`);
    return record;
  }

  retrieveJob(id: string): Response {
    const record = this.#jobs.get(id);
    if (!record) return noSuchJob(id);
    const status = record.object.status;
    if (!TERMINAL.has(status) && status !== "paused" && record.stage < this.#statuses.length - 1) {
      record.stage++;
      const next = this.#statuses[record.stage] ?? status;
      record.object.status = next;
      this.#enter(record, next);
    }
    return json(record.object);
  }

  listJobs({ query }: Context): Response {
    const newestFirst = [...this.#jobs.values()].reverse().map((record) => record.object);
    return this.#page(newestFirst, query);
  }

  cancelJob(id: string): Response {
    const record = this.#jobs.get(id);
    if (!record) return noSuchJob(id);
    if (TERMINAL.has(record.object.status)) {
      return apiError(
        400,
        `Job ${id} has already ${record.object.status}: it cannot be cancelled.`,
        "invalid_request_error",
        {
          param: "fine_tuning_job_id",
        },
      );
    }
    record.object.status = "cancelled";
    this.#enter(record, "cancelled");
    return json(record.object);
  }

  pauseJob(id: string): Response {
    const record = this.#jobs.get(id);
    if (!record) return noSuchJob(id);
    if (record.object.status !== "running") {
      return apiError(
        400,
        `Job ${id} is ${record.object.status}: only a running job can be paused.`,
        "invalid_request_error",
        {
          param: "fine_tuning_job_id",
        },
      );
    }
    record.pausedFrom = record.object.status;
    record.object.status = "paused";
    record.object.estimated_finish = null;
    this.#event(record, "Fine-tuning job paused");
    return json(record.object);
  }

  resumeJob(id: string): Response {
    const record = this.#jobs.get(id);
    if (!record) return noSuchJob(id);
    if (record.object.status !== "paused") {
      return apiError(
        400,
        `Job ${id} is ${record.object.status}: only a paused job can be resumed.`,
        "invalid_request_error",
        {
          param: "fine_tuning_job_id",
        },
      );
    }
    record.object.status = record.pausedFrom ?? "running";
    record.pausedFrom = undefined;
    this.#event(record, "Fine-tuning job resumed");
    return json(record.object);
  }

  listEvents({ params, query }: Context): Response {
    const record = this.#jobs.get(params.id ?? "");
    if (!record) return noSuchJob(params.id ?? "");
    return this.#page([...record.events].reverse(), query, false);
  }

  listCheckpoints({ params, query }: Context): Response {
    const record = this.#jobs.get(params.id ?? "");
    if (!record) return noSuchJob(params.id ?? "");
    return this.#page([...record.checkpoints].reverse(), query, true);
  }

  /**
   * A cursor page as the API lists: `{ object: "list", data, has_more }`, the checkpoint list adding
   * `first_id` and `last_id`. `after` is the id of the last item of the previous page.
   */
  #page<T extends { id: string }>(items: T[], query: URLSearchParams, withIds = false): Response {
    const limitText = query.get("limit");
    const limit = limitText === null ? DEFAULT_LIMIT : Number(limitText);
    if (!Number.isSafeInteger(limit) || limit < 1 || limit > MAX_LIMIT) {
      return apiError(
        400,
        `Invalid 'limit': expected an integer between 1 and ${MAX_LIMIT}.`,
        "invalid_request_error",
        {
          param: "limit",
        },
      );
    }
    const after = query.get("after");
    let start = 0;
    if (after !== null) {
      const index = items.findIndex((item) => item.id === after);
      start = index === -1 ? items.length : index + 1;
    }
    const data = items.slice(start, start + limit);
    const body: Record<string, unknown> = { object: "list", data, has_more: start + limit < items.length };
    if (withIds) {
      body.first_id = data[0]?.id ?? null;
      body.last_id = data.at(-1)?.id ?? null;
    }
    return json(body);
  }

  // --- How a job moves on ------------------------------------------------------------------------

  /** What happens as a job reaches `status`: its events, metrics, checkpoints and final fields. */
  #enter(record: JobRecord, status: OpenAIJobStatus): void {
    const job = record.object;
    switch (status) {
      case "validating_files":
        this.#event(record, `Validating training file: ${job.training_file}`);
        if (job.validation_file) this.#event(record, `Validating validation file: ${job.validation_file}`);
        return;
      case "queued":
        this.#event(record, "Files validated, moving job to queued state");
        return;
      case "running": {
        if (record.stepsDone === 0) {
          this.#resolveHyperparameters(job);
          this.#event(record, "Fine-tuning job started");
        }
        const runningStages = this.#statuses.filter((word) => word === "running").length;
        const reached = this.#statuses.slice(0, record.stage + 1).filter((word) => word === "running").length;
        this.#train(record, Math.floor((reached * this.#steps) / Math.max(1, runningStages)));
        job.estimated_finish = now() + 60 * (this.#steps - record.stepsDone);
        return;
      }
      case "succeeded": {
        this.#resolveHyperparameters(job);
        this.#train(record, this.#steps);
        const model = this.#fineTunedModel(record);
        const csv = this.#resultCsv(record);
        const resultId = this.#id("file-", 24);
        const content = new TextEncoder().encode(
          this.#options.resultFileEncoding === "csv" ? csv : Buffer.from(csv).toString("base64"),
        );
        this.#files.set(resultId, {
          object: {
            object: "file",
            id: resultId,
            purpose: "fine-tune-results",
            filename: "step_metrics.csv",
            bytes: content.byteLength,
            created_at: now(),
            status: "processed",
          },
          content,
          stage: 0,
        });
        const training = this.#files.get(job.training_file);
        const epochs = typeof job.hyperparameters.n_epochs === "number" ? job.hyperparameters.n_epochs : 1;
        Object.assign(job, {
          fine_tuned_model: model,
          finished_at: now(),
          estimated_finish: null,
          result_files: [resultId],
          trained_tokens: Math.ceil((training?.content.byteLength ?? 0) / 4) * epochs,
        });
        this.#event(record, `New fine-tuned model created: ${model}`);
        this.#event(record, "The job has successfully completed");
        return;
      }
      case "failed":
        job.error = {
          code: this.#error.code,
          message: this.#error.message,
          param: this.#error.param ?? null,
        };
        job.finished_at = now();
        job.estimated_finish = null;
        this.#event(record, this.#error.message, "error");
        return;
      case "cancelled":
        job.finished_at = now();
        job.estimated_finish = null;
        this.#event(record, "Fine-tuning job cancelled");
        return;
      case "paused":
        this.#event(record, "Fine-tuning job paused");
        return;
      default:
        // A status the API may add later: the job just shows it.
        return;
    }
  }

  /** Reports the steps up to `until`: a `metrics` event each, and a checkpoint at each of the last three epoch ends. */
  #train(record: JobRecord, until: number): void {
    const job = record.object;
    const epochs =
      typeof job.hyperparameters.n_epochs === "number" ? job.hyperparameters.n_epochs : RESOLVED.n_epochs;
    const epochEnds = new Set<number>();
    for (let epoch = Math.max(1, epochs - 2); epoch <= epochs; epoch++) {
      epochEnds.add(Math.max(1, Math.round((this.#steps * epoch) / epochs)));
    }
    for (let step = record.stepsDone + 1; step <= until; step++) {
      const metrics = stepMetrics(step, this.#steps, record.hasValidation, epochEnds.has(step));
      record.metrics.push(metrics);
      const words = [`training loss=${metrics.train_loss.toFixed(2)}`];
      if (metrics.valid_loss !== undefined) words.push(`validation loss=${metrics.valid_loss.toFixed(2)}`);
      if (metrics.full_valid_loss !== undefined)
        words.push(`full validation loss=${metrics.full_valid_loss.toFixed(2)}`);
      this.#event(record, `Step ${step}/${this.#steps}: ${words.join(", ")}`, "info", {
        type: "metrics",
        data: { ...metrics, total_steps: this.#steps },
      });
      if (epochEnds.has(step)) {
        const model = `${this.#fineTunedModel(record)}:ckpt-step-${step}`;
        const { step: _, ...values } = metrics;
        const files = Object.entries(this.#options.checkpointFiles ?? {}).map(([filename, content]) =>
          this.#storeFile(
            filename,
            typeof content === "string" ? new TextEncoder().encode(content) : content,
          ),
        );
        record.checkpoints.push({
          object: "fine_tuning.job.checkpoint",
          id: this.#id("ftckpt_", 24),
          created_at: now(),
          fine_tuned_model_checkpoint: model,
          fine_tuning_job_id: job.id,
          metrics: { step, ...values },
          step_number: step,
          ...(files.length > 0 ? { result_files: files } : {}),
        });
        this.#event(record, `Checkpoint created at step ${step} with Snapshot ID: ${model}`);
      }
      record.stepsDone = step;
    }
  }

  /** Once the job starts, "auto" turns into the numbers OpenAI chose. */
  #resolveHyperparameters(job: OpenAIJobObject): void {
    const method = job.method ?? { type: "supervised" };
    const settings = (method[method.type] ?? {}) as { hyperparameters?: Record<string, unknown> };
    const resolved: Record<string, unknown> = { ...settings.hyperparameters };
    for (const [name, value] of Object.entries(RESOLVED)) {
      if (name === "beta" && method.type !== "dpo") continue;
      if (resolved[name] === undefined || resolved[name] === "auto") resolved[name] = value;
    }
    job.method = { ...method, [method.type]: { ...settings, hyperparameters: resolved } };
    job.hyperparameters = {
      n_epochs: resolved.n_epochs as number,
      batch_size: resolved.batch_size as number,
      learning_rate_multiplier: resolved.learning_rate_multiplier as number,
    };
  }

  /** `ft:{model}:{organization}:{suffix}:{id}`, the form the fine-tuning guide shows. */
  #fineTunedModel(record: JobRecord): string {
    const job = record.object;
    const slug = job.id.slice("ftjob-".length, "ftjob-".length + 8);
    return `ft:${job.model}:personal:${job.user_provided_suffix ?? ""}:${slug}`;
  }

  /** The result file: the columns the fine-tuning guide documents, empty where nothing was measured. */
  #resultCsv(record: JobRecord): string {
    const lines = ["step,train_loss,train_accuracy,valid_loss,valid_mean_token_accuracy"];
    for (const row of record.metrics) {
      lines.push(
        [
          row.step,
          row.train_loss,
          row.train_mean_token_accuracy,
          row.valid_loss ?? "",
          row.valid_mean_token_accuracy ?? "",
        ].join(","),
      );
    }
    return `${lines.join("\n")}\n`;
  }

  #event(
    record: JobRecord,
    message: string,
    level: FineTuningJobEvent["level"] = "info",
    extra: { type: "metrics"; data: unknown } | undefined = undefined,
  ): void {
    record.events.push({
      object: "fine_tuning.job.event",
      id: this.#id("ftevent-", 24),
      created_at: now(),
      level,
      message,
      data: extra?.data ?? {},
      type: extra?.type ?? "message",
    });
  }

  // --- Models ----------------------------------------------------------------------------------

  /** The base models and the organisation's fine-tunes (`Model` objects, with `shutdown_date` where set). */
  #models(): Array<Record<string, unknown>> {
    const dates = this.#options.shutdownDates ?? {};
    const model = (id: string, ownedBy: string, base: string, created: number) => ({
      id,
      object: "model",
      created,
      owned_by: ownedBy,
      ...(dates[base] !== undefined ? { shutdown_date: dates[base] } : {}),
    });
    const fineTunes = [...this.#jobs.values()]
      .filter((record) => record.object.fine_tuned_model)
      .map((record) =>
        model(
          record.object.fine_tuned_model as string,
          this.#organization,
          record.object.model,
          record.object.finished_at ?? record.object.created_at,
        ),
      );
    return [...BASE_MODELS.map((id) => model(id, "system", id, 1_700_000_000)), ...fineTunes];
  }

  /** A result file the API made (a checkpoint's weights); its id. */
  #storeFile(filename: string, content: Uint8Array): string {
    const id = this.#id("file-", 24);
    this.#files.set(id, {
      object: {
        object: "file",
        id,
        purpose: "fine-tune-results",
        filename,
        bytes: content.byteLength,
        created_at: now(),
        status: "processed",
      },
      content,
      stage: 0,
    });
    return id;
  }

  /** Whether a fine-tuned model id is one of the organisation's models or checkpoints. */
  #answers(model: string): boolean {
    if (this.#models().some((entry) => entry.id === model)) return true;
    for (const record of this.#jobs.values())
      if (record.checkpoints.some((checkpoint) => checkpoint.fine_tuned_model_checkpoint === model))
        return true;
    return false;
  }

  listModels(): Response {
    return json({ object: "list", data: this.#models() });
  }

  retrieveModel(id: string): Response {
    const found = this.#models().find((entry) => entry.id === id);
    return found ? json(found) : noSuchModel(id);
  }

  /** A fine-tune that exists from the start: its files and a job that has succeeded. */
  #seedFineTune(existing: OpenAIExistingFineTune): void {
    const file = (content: string, filename: string) => {
      const id = this.#id("file-", 24);
      const bytes = new TextEncoder().encode(content);
      this.#files.set(id, {
        object: {
          object: "file",
          id,
          purpose: "fine-tune",
          filename,
          bytes: bytes.byteLength,
          created_at: now(),
          status: "processed",
        },
        content: bytes,
        stage: 0,
      });
      return id;
    };
    const training = file(existing.training, "train.jsonl");
    const validation = existing.validation === undefined ? null : file(existing.validation, "valid.jsonl");
    const hyperparameters = { ...existing.hyperparameters };
    const method = {
      type: "supervised" as const,
      supervised: { hyperparameters: withAuto(hyperparameters, false) },
    };
    const record = this.#newJob({
      model: existing.model ?? "gpt-4o-mini-2024-07-18",
      method,
      trainingFile: training,
      validationFile: validation,
      suffix: existing.suffix ?? null,
      metadata: null,
      integrations: [],
      status: "succeeded",
      stage: this.#statuses.length - 1,
    });
    this.#enter(record, "succeeded");
  }

  // --- Chat ------------------------------------------------------------------------------------

  chat({ body }: Context): Response {
    if (!isRecord(body))
      return apiError(400, "We could not parse the JSON body of your request.", "invalid_request_error");
    const { model, messages } = body;
    if (typeof model !== "string" || model === "") {
      return apiError(400, "you must provide a model parameter", "invalid_request_error");
    }
    // A fine-tuned model (or a checkpoint of one) answers only while it exists in this organisation.
    if (model.startsWith("ft:") && !this.#answers(model)) return noSuchModel(model);
    if (!Array.isArray(messages) || messages.length === 0) {
      return apiError(
        400,
        "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.",
        "invalid_request_error",
        {
          param: "messages",
          code: "empty_array",
        },
      );
    }
    for (const [index, message] of messages.entries()) {
      if (!isRecord(message) || typeof message.role !== "string") {
        return apiError(
          400,
          `Missing required parameter: 'messages[${index}].role'.`,
          "invalid_request_error",
          {
            param: `messages[${index}].role`,
            code: "missing_required_parameter",
          },
        );
      }
      const extra = Object.keys(message).find((key) => !MESSAGE_KEYS.has(key));
      if (extra) {
        return apiError(
          400,
          `Unrecognized request argument supplied: messages[${index}].${extra}`,
          "invalid_request_error",
          {
            param: `messages[${index}].${extra}`,
          },
        );
      }
    }
    if (model.startsWith("ft:") && !this.#knownModel(model)) {
      return apiError(
        404,
        `The model \`${model}\` does not exist or you do not have access to it.`,
        "invalid_request_error",
        {
          code: "model_not_found",
        },
      );
    }
    const reply = this.#options.chatReply;
    return answerChat(body, {
      dialect: "openai",
      ...(this.#options.chatStreamDelayMs !== undefined
        ? { streamDelayMs: this.#options.chatStreamDelayMs }
        : {}),
      ...(reply === undefined
        ? {}
        : { reply: typeof reply === "function" ? (request) => reply(request) : reply }),
    });
  }

  #knownModel(model: string): boolean {
    for (const record of this.#jobs.values()) {
      if (record.object.fine_tuned_model === model) return true;
      if (record.checkpoints.some((checkpoint) => checkpoint.fine_tuned_model_checkpoint === model))
        return true;
    }
    return false;
  }

  /** Ids shaped like the API's (`ftjob-` and 24 letters or digits), the same in every run. */
  #id(prefix: string, length: number): string {
    const digest = createHash("sha256")
      .update(`${prefix}${++this.#counter}`)
      .digest();
    let id = prefix;
    for (let index = 0; index < length; index++)
      id += ALPHANUMERIC[(digest[index % digest.length] ?? 0) % 62];
    return id;
  }
}

/** The method as the API stores it, from `method` or the deprecated top-level `hyperparameters`; a string is an error. */
function parseMethod(method: unknown, legacy: unknown): NonNullable<OpenAIJobObject["method"]> | string {
  if (method === undefined || method === null) {
    const hyperparameters = isRecord(legacy) ? legacy : {};
    return { type: "supervised", supervised: { hyperparameters: withAuto(hyperparameters, false) } };
  }
  if (!isRecord(method) || typeof method.type !== "string")
    return "Missing required parameter: 'method.type'.";
  const type = method.type;
  if (type !== "supervised" && type !== "dpo" && type !== "reinforcement") {
    return `Invalid value: '${type}'. Supported values are: 'supervised', 'dpo', and 'reinforcement'.`;
  }
  const settings = isRecord(method[type]) ? (method[type] as Record<string, unknown>) : {};
  if (type === "reinforcement" && settings.grader === undefined) {
    return "Missing required parameter: 'method.reinforcement.grader'.";
  }
  const hyperparameters = isRecord(settings.hyperparameters) ? settings.hyperparameters : {};
  return {
    type,
    [type]: { ...settings, hyperparameters: withAuto(hyperparameters, type === "dpo") },
  } as NonNullable<OpenAIJobObject["method"]>;
}

/** Unset hyperparameters read "auto" until the job starts, as the API shows them. */
function withAuto(hyperparameters: Record<string, unknown>, dpo: boolean): Record<string, unknown> {
  return {
    ...(dpo ? { beta: "auto" } : {}),
    batch_size: "auto",
    learning_rate_multiplier: "auto",
    n_epochs: "auto",
    ...hyperparameters,
  };
}

function topLevelHyperparameters(
  method: NonNullable<OpenAIJobObject["method"]>,
): FineTuningJob.Hyperparameters {
  const settings = method[method.type] as { hyperparameters?: Record<string, unknown> } | undefined;
  const { n_epochs, batch_size, learning_rate_multiplier } = settings?.hyperparameters ?? {};
  return { n_epochs, batch_size, learning_rate_multiplier } as FineTuningJob.Hyperparameters;
}

/** Deterministic numbers that look like training: loss falls, accuracy rises. */
function stepMetrics(step: number, steps: number, validation: boolean, epochEnd: boolean): StepMetrics {
  const round = (value: number) => Math.round(value * 100_000) / 100_000;
  const trainLoss = round(2.5 * 0.75 ** (step - 1) + 0.05);
  const trainAccuracy = round(0.5 + (0.45 * step) / steps);
  const metrics: StepMetrics = { step, train_loss: trainLoss, train_mean_token_accuracy: trainAccuracy };
  if (validation) {
    metrics.valid_loss = round(trainLoss + 0.1);
    metrics.valid_mean_token_accuracy = round(trainAccuracy - 0.05);
    if (epochEnd) {
      metrics.full_valid_loss = round(trainLoss + 0.12);
      metrics.full_valid_mean_token_accuracy = round(trainAccuracy - 0.06);
    }
  }
  return metrics;
}

/** The body, parsed once: JSON, or a multipart form with its file. */
async function readBody(request: Request): Promise<{ body: unknown; upload: Context["upload"] }> {
  const upload: Context["upload"] = { file: undefined, bytes: undefined };
  if (request.method === "GET" || request.method === "HEAD") return { body: undefined, upload };
  const type = request.headers.get("content-type") ?? "";
  if (type.startsWith("multipart/form-data")) {
    const form = await request.formData().catch(() => undefined);
    if (!form) return { body: undefined, upload };
    const body: Record<string, string | OpenAIRecordedFile> = {};
    for (const [name, value] of form) {
      if (typeof value === "string") {
        body[name] = value;
        continue;
      }
      const bytes = new Uint8Array(await value.arrayBuffer());
      body[name] = {
        filename: value.name,
        type: value.type,
        size: value.size,
        text: new TextDecoder().decode(bytes),
      };
      if (name === "file") Object.assign(upload, { file: value, bytes });
    }
    return { body, upload };
  }
  const text = await request.text();
  if (text === "") return { body: undefined, upload };
  try {
    return { body: JSON.parse(text) as unknown, upload };
  } catch {
    return { body: text, upload };
  }
}

/** An error the way the API sends one: `{ error: { message, type, param, code } }`. */
function apiError(
  status: number,
  message: string,
  type: string,
  extra: { param?: string; code?: string; headers?: Headers } = {},
): Response {
  return HttpResponse.json(
    { error: { message, type, param: extra.param ?? null, code: extra.code ?? null } },
    { status, headers: extra.headers ?? new Headers() },
  );
}

function noSuchFile(id: string): Response {
  return apiError(404, `No such File object: ${id}`, "invalid_request_error", { param: "id" });
}

function noSuchJob(id: string): Response {
  return apiError(404, `Could not find fine-tuning job: ${id}`, "invalid_request_error", {
    param: "fine_tuning_job_id",
    code: "fine_tuning_job_not_found",
  });
}

function noSuchModel(id: string): Response {
  return apiError(
    404,
    `The model \`${id}\` does not exist or you do not have access to it.`,
    "invalid_request_error",
    {
      param: "model",
      code: "model_not_found",
    },
  );
}

function json(body: unknown): Response {
  return HttpResponse.json(body as JsonBodyType);
}

/** The API shows the start and the last four characters of a wrong key, never all of it. */
function maskKey(key: string): string {
  if (key.length <= 8) return "*".repeat(key.length);
  return `${key.slice(0, 3)}${"*".repeat(Math.min(40, key.length - 7))}${key.slice(-4)}`;
}

function now(): number {
  return Math.floor(Date.now() / 1000);
}

function _contentText(content: unknown): string {
  if (typeof content === "string") return content;
  if (!Array.isArray(content)) return "";
  return content
    .map((part) => (isRecord(part) && part.type === "text" && typeof part.text === "string" ? part.text : ""))
    .join("");
}

function _words(text: string): number {
  return text.split(/\s+/).filter(Boolean).length;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function invalid(message: string): never {
  throw new ValidationError("invalid_argument", `openaiFineTuningHandlers: ${message}`);
}

/** Nebius Token Factory's address, where `nebiusFineTuningHandlers` answers by default. */
export const NEBIUS_TEST_BASE_URL = "https://api.tokenfactory.nebius.com/v1";

/**
 * Nebius Token Factory's fine-tuning API as msw handlers. It follows OpenAI's (files, jobs, events,
 * checkpoints), so this is the OpenAI fake at Nebius's address; pass `checkpointFiles` for checkpoints
 * whose `result_files` hold an adapter, as Nebius's do. The key is `OPENAI_TEST_API_KEY` unless given.
 */
export function nebiusFineTuningHandlers(
  options: OpenAIFineTuningHandlersOptions = {},
): OpenAIFineTuningFake {
  return openaiFineTuningHandlers({ baseURL: NEBIUS_TEST_BASE_URL, ...options });
}
