/**
 * `record`: every case's input through a model, its answer kept as the last assistant turn of a chat
 * JSONL line with where it came from in `metadata`. The file is at once an Evaluator case set (the
 * recorded answer is `expected`) and a training set for the model that replaces it (distillation).
 * A recording resumes: cases already in the file are not asked again, and a line cut short by a crash
 * is dropped before the file grows again.
 */
import { mkdir, open, readFile, stat, truncate } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import type { ChatOptions, ChatTarget, ChatUsage } from "../core/chat.js";
import { AuthenticationError, NotFoundError, TunekitError, ValidationError } from "../core/errors.js";
import { pool, type RetryOptions, withRetries } from "../core/work.js";
import { type ChatMessage, contentText } from "../data/example.js";
import { type CaseSource, loadCases } from "../eval/cases.js";
import type { EvalCase } from "../eval/types.js";
import { inferencePrice } from "../validate/models.js";
import { tiktokenCounter } from "../validate/tokens.js";

/** The generation settings a recording keeps (no signal, tools or logprobs). */
export type RecordGeneration = Omit<ChatOptions, "signal" | "tools" | "logprobs" | "topLogprobs">;

export interface RecordOptions extends Pick<RetryOptions, "attempts" | "retryDelayMs"> {
  /** The model whose answers are recorded (an OpenAI fine-tune's `chat()`, any ChatTarget). */
  target: ChatTarget;
  /** Cases (JSONL, an array, a Dataset): their inputs are asked; an `expected` is only used for the estimate. */
  cases: CaseSource;
  /** The chat JSONL written (appended to when it holds part of this recording). */
  out: string;
  /** Requests at once. Default 4. */
  concurrency?: number;
  /** Default: temperature 0 (the model's most likely answer), 1,024 tokens at most. */
  generation?: RecordGeneration;
  /** USD per million input / output tokens, for the estimate. Default: tunekit's table for OpenAI models. */
  prices?: { input: number; output: number };
  signal?: AbortSignal;
  onProgress?: (event: RecordEvent) => void;
}

/** What it would cost, from the inputs' tokens (o200k_base) and the answers' expected length. */
export interface RecordEstimate {
  inputTokens: number;
  /** The cases' `expected` answers' tokens where they have one, else `maxTokens` (an upper bound). */
  outputTokens: number;
  usd: number;
  prices: { input: number; output: number };
}

export type RecordEvent =
  | { type: "plan"; cases: number; recorded: number; remaining: number; estimate?: RecordEstimate }
  | { type: "recorded"; caseId: string; done: number; total: number; usage?: ChatUsage }
  | { type: "failed"; caseId: string; done: number; total: number; error: string };

export interface RecordResult {
  out: string;
  cases: number;
  /** Recorded by this call. */
  recorded: number;
  /** Already in the file: not asked again. */
  resumed: number;
  failed: Array<{ caseId: string; error: string }>;
  usage: { promptTokens: number; completionTokens: number };
}

/** What each line's `metadata.tunekit_record` says. */
export interface RecordProvenance {
  case_id: string;
  provider: string;
  model: string;
  recorded_at: string;
  generation: RecordGeneration;
  finish_reason: string;
  usage?: { prompt_tokens: number; completion_tokens: number };
}

const PROVENANCE_KEY = "tunekit_record";

/** The recording's provenance of a JSONL line, when it is one. */
export function provenanceOf(record: unknown): RecordProvenance | undefined {
  const metadata = (record as { metadata?: Record<string, unknown> } | null)?.metadata;
  const provenance = metadata?.[PROVENANCE_KEY] as RecordProvenance | undefined;
  return typeof provenance?.case_id === "string" ? provenance : undefined;
}

/** Records what `target` answers to every case into `out`; see the module's comment. */
export async function record(options: RecordOptions): Promise<RecordResult> {
  const { target, out } = options;
  if (typeof out !== "string" || out === "")
    throw new ValidationError("invalid_argument", "record needs out, the JSONL file to write");
  const concurrency = options.concurrency ?? 4;
  if (!(Number.isInteger(concurrency) && concurrency >= 1))
    throw new ValidationError(
      "invalid_argument",
      `concurrency must be a whole number >= 1, got ${concurrency}`,
    );
  options.signal?.throwIfAborted();
  const generation: RecordGeneration = { temperature: 0, maxTokens: 1024, ...options.generation };
  const cases = await loadCases(options.cases);
  const done = await resume(out, target.modelId);
  const remaining = cases.filter((testCase) => !done.has(testCase.id));
  const prices = options.prices ?? inferencePrice(target.provider, target.modelId);
  const estimate = prices ? await estimateCost(remaining, generation, prices) : undefined;
  options.onProgress?.({
    type: "plan",
    cases: cases.length,
    recorded: cases.length - remaining.length,
    remaining: remaining.length,
    ...(estimate ? { estimate } : {}),
  });

  const result: RecordResult = {
    out,
    cases: cases.length,
    recorded: 0,
    resumed: cases.length - remaining.length,
    failed: [],
    usage: { promptTokens: 0, completionTokens: 0 },
  };
  if (remaining.length === 0) return result;
  // Appends whole lines, one write each, one after another: a line is there entire or not at all
  // (a crash mid-write leaves a cut line, which the next resume drops).
  await mkdir(dirname(resolve(out)), { recursive: true });
  const file = await open(out, "a");
  let writing: Promise<unknown> = Promise.resolve();
  const append = (line: string) => {
    writing = writing.then(() => file.write(`${line}\n`));
    return writing;
  };
  let finished = 0;
  try {
    await pool(remaining, concurrency, async (testCase) => {
      options.signal?.throwIfAborted();
      try {
        const reply = await withRetries(
          () => target.complete(testCase.input, { ...generation, ...signalOf(options) }),
          {
            ...(options.attempts !== undefined ? { attempts: options.attempts } : {}),
            ...(options.retryDelayMs !== undefined ? { retryDelayMs: options.retryDelayMs } : {}),
            ...signalOf(options),
          },
        );
        options.signal?.throwIfAborted();
        const provenance: RecordProvenance = {
          case_id: testCase.id,
          provider: target.provider,
          model: target.modelId,
          recorded_at: new Date().toISOString(),
          generation,
          finish_reason: reply.finishReason,
          ...(reply.usage
            ? {
                usage: {
                  prompt_tokens: reply.usage.promptTokens,
                  completion_tokens: reply.usage.completionTokens,
                },
              }
            : {}),
        };
        const assistant: ChatMessage = { role: "assistant", content: reply.text };
        if (reply.toolCalls?.length) assistant.tool_calls = reply.toolCalls;
        await append(
          JSON.stringify({
            messages: [...testCase.input, assistant],
            metadata: { ...testCase.metadata, [PROVENANCE_KEY]: provenance },
          }),
        );
        result.recorded++;
        result.usage.promptTokens += reply.usage?.promptTokens ?? 0;
        result.usage.completionTokens += reply.usage?.completionTokens ?? 0;
        options.onProgress?.({
          type: "recorded",
          caseId: testCase.id,
          done: ++finished,
          total: remaining.length,
          ...(reply.usage ? { usage: reply.usage } : {}),
        });
      } catch (error) {
        // A wrong key or a model that is gone fails every case alike: stop, and say it once.
        if (options.signal?.aborted || error instanceof AuthenticationError || error instanceof NotFoundError)
          throw error;
        const message = TunekitError.isInstance(error)
          ? `${error.message} [${error.code}]`
          : error instanceof Error
            ? error.message
            : String(error);
        result.failed.push({ caseId: testCase.id, error: message });
        options.onProgress?.({
          type: "failed",
          caseId: testCase.id,
          done: ++finished,
          total: remaining.length,
          error: message,
        });
      }
    });
  } finally {
    await writing.catch(() => undefined);
    await file.close();
  }
  return result;
}

const signalOf = (options: { signal?: AbortSignal }) => (options.signal ? { signal: options.signal } : {});

/**
 * The case ids already recorded in `out` (none when it does not exist). A last line without its
 * newline (a write cut short) is dropped from the file; a line that is not a recording, or one of
 * another model, stops the resume with its line number.
 */
async function resume(out: string, modelId: string): Promise<Set<string>> {
  const done = new Set<string>();
  const info = await stat(out).catch((error: NodeJS.ErrnoException) => {
    if (error.code === "ENOENT") return undefined;
    throw error;
  });
  if (!info) return done;
  if (!info.isFile())
    throw new ValidationError("invalid_argument", `${out} is not a file`, { location: { file: out } });
  const text = await readFile(out, "utf8");
  const end = text.lastIndexOf("\n") + 1;
  if (end < text.length) await truncate(out, Buffer.byteLength(text.slice(0, end)));
  const lines = text.slice(0, end).split("\n");
  for (const [index, line] of lines.entries()) {
    if (line.trim() === "") continue;
    const where = { file: out, line: index + 1 };
    let provenance: RecordProvenance | undefined;
    try {
      provenance = provenanceOf(JSON.parse(line));
    } catch {
      provenance = undefined;
    }
    if (!provenance)
      throw new ValidationError(
        "invalid_argument",
        `${out} already holds something other than a recording (line ${index + 1}): choose another out`,
        { location: where },
      );
    if (provenance.model !== modelId)
      throw new ValidationError(
        "invalid_argument",
        `${out} records ${provenance.model}, not ${modelId} (line ${index + 1}): choose another out to record another model`,
        { location: where },
      );
    done.add(provenance.case_id);
  }
  return done;
}

async function estimateCost(
  cases: EvalCase[],
  generation: RecordGeneration,
  prices: { input: number; output: number },
): Promise<RecordEstimate> {
  const counter = await tiktokenCounter("o200k_base");
  let inputTokens = 0;
  let outputTokens = 0;
  for (const testCase of cases) {
    // The chat format's overhead as OpenAI's cookbook counts it: 3 per message, 3 to prime the reply.
    for (const message of testCase.input) inputTokens += 3 + counter.count(contentText(message.content));
    inputTokens += 3;
    outputTokens +=
      testCase.expected !== undefined ? counter.count(testCase.expected) : (generation.maxTokens ?? 1024);
  }
  const usd = (inputTokens * prices.input + outputTokens * prices.output) / 1e6;
  return { inputTokens, outputTokens, usd: Math.round(usd * 10_000) / 10_000, prices };
}
