import { stat } from "node:fs/promises";
import { ValidationError } from "../core/errors.js";
import type { HubAccessOptions } from "../core/hub.js";
import { distribution, NumberList } from "../core/stats.js";
import { Dataset, type DatasetOptions } from "../data/dataset.js";
import type { Example } from "../data/example.js";
import { formatExample } from "../data/formats/index.js";
import { type Problem, problem } from "../data/problem.js";
import type { DatasetRecord } from "../data/records.js";
import {
  daysUntil,
  FINE_TUNING_ALTERNATIVES,
  modelShutdown,
  OPENAI_FINE_TUNING_WIND_DOWN,
  shutdownWarning,
  windDownReason,
} from "../providers/openai/wind-down.js";
import { defaultEpochs } from "./cost.js";
import type { LocalModelTokens } from "./local-tokens.js";
import { DEFAULT_OPENAI_MODEL, encodingForModel, OPENAI_TRAINING_PRICES, openaiModel } from "./models.js";
import { ProblemLog, type ValidationReport } from "./report.js";
import { fireworksRules } from "./rules/fireworks.js";
import { localRules } from "./rules/local.js";
import { nebiusRules } from "./rules/nebius.js";
import { openaiRules } from "./rules/openai.js";
import type { RuleSet, ValidationTarget } from "./rules/rule-set.js";
import { togetherRules } from "./rules/together.js";
import { type ExampleTokens, exampleTokens, type TokenCounter, tiktokenCounter } from "./tokens.js";

export type { ValidationTarget };

export interface ValidatorOptions {
  /** The provider whose rules apply (`"local"`: the local trainer's). Default `"openai"`. */
  target?: ValidationTarget;
  /**
   * Model to fine-tune: sets the context limit, tokenizer and price. Default `gpt-4o-mini-2024-07-18`
   * for OpenAI. For `"local"`, a model folder or Hugging Face Hub id, as `LocalModel.load` takes:
   * its tokenizer and chat template count the tokens, and the limit is the trainer's default
   * maxSeqLength (2048) within its config.json's `max_position_embeddings` (only its config and
   * tokenizer files are read, never the weights).
   */
  model?: string;
  /**
   * Counts tokens instead of the model's tokenizer (e.g. a Hugging Face tokenizer for Together
   * models). For `"local"` it replaces the model's tokenizer and the model is not read; one without
   * `countExample` gives estimates, not the trainer's counts.
   */
  tokenizer?: TokenCounter;
  /** Longest example in tokens; overrides the model's (for `"local"`, pass the run's `maxSeqLength`). */
  contextLimit?: number;
  /** Epochs for the cost estimate. Default: OpenAI's rule for the number of examples; 3 for `"local"`. */
  epochs?: number;
  /** Training prices, USD per million tokens, by model id. Default `OPENAI_TRAINING_PRICES`. */
  prices?: Readonly<Record<string, number>>;
  /** Today, for OpenAI's wind-down and its models' shutdown dates. Default: the clock. */
  now?: Date;
  /** Problems listed in the report; the rest are only counted. Default 1000. */
  maxProblems?: number;
  /** `"local"` with a Hub model id: revision, cache folder, token, Hub URL. Defaults from the environment. */
  hub?: HubAccessOptions;
  /** `"local"`: what the trainer learns, `"assistant"` turns (default) or `"all"` tokens. */
  trainOn?: "assistant" | "all";
}

/** Counting an example stops at this many times the context limit (the report says "at least"). */
const COUNT_PAST_LIMIT = 4;

/** The local trainer's default epochs. */
const LOCAL_EPOCHS = 3;

const RULES: Record<ValidationTarget, RuleSet> = {
  openai: openaiRules,
  together: togetherRules,
  fireworks: fireworksRules,
  nebius: nebiusRules,
  local: localRules,
};

/**
 * Checks a dataset against a provider's rules before any money or compute is spent: structure under
 * the OpenAI Cookbook's codes, per-model context limits with the real tokenizer, statistics and a
 * cost estimate. Streams: memory stays flat however large the file (three numbers kept per example).
 *
 * The `"local"` target counts every example exactly as the local trainer will tokenize it (the
 * model's chat template, labels on the assistant turns), warns `example_too_long` past the model's
 * context (the trainer cuts there) and `no_trained_tokens` where nothing is left to learn. It needs
 * `model` (or a `tokenizer`): without one the constructor throws.
 */
export class Validator {
  readonly options: Readonly<ValidatorOptions>;
  readonly #rules: RuleSet;
  /** The local model's tokenizer, read once for every dataset this validator checks. */
  #local: Promise<LocalModelTokens> | undefined;

  constructor(options: ValidatorOptions = {}) {
    const target = options.target ?? "openai";
    if (!(target in RULES)) {
      throw new ValidationError(
        "invalid_argument",
        `unknown target "${target}"; use ${Object.keys(RULES).join(", ")}`,
      );
    }
    for (const key of ["contextLimit", "epochs", "maxProblems"] as const) {
      const value = options[key];
      if (value !== undefined && !(Number.isInteger(value) && value > 0)) {
        throw new ValidationError("invalid_argument", `${key} must be a whole number > 0, got ${value}`);
      }
    }
    if (options.trainOn !== undefined && options.trainOn !== "assistant" && options.trainOn !== "all") {
      throw new ValidationError(
        "invalid_argument",
        `trainOn must be "assistant" or "all", got ${options.trainOn}`,
      );
    }
    if (target === "local" && !options.model && !options.tokenizer) {
      throw new ValidationError(
        "invalid_argument",
        "the local target counts tokens with the model's own tokenizer: give model (a model folder or Hugging Face Hub id), or a tokenizer",
      );
    }
    this.options = options;
    this.#rules = RULES[target];
  }

  /**
   * OpenAI's wind-down: it takes jobs only from organisations that already fine-tune, and from nobody
   * from 2027-01-06; a base model that has shut down is an error, one that shuts down within 90 days a
   * warning (its fine-tunes go with it).
   */
  #windDown(model: string): Problem[] {
    const now = this.options.now ?? new Date();
    const closed = daysUntil(OPENAI_FINE_TUNING_WIND_DOWN.everyone, now) <= 0;
    const notices = [
      problem(
        closed ? "error" : "warning",
        "fine_tuning_closing",
        `${windDownReason(now)}. Instead, ${FINE_TUNING_ALTERNATIVES}.`,
      ),
    ];
    const shutdown = modelShutdown(model, now);
    const warning = shutdownWarning(model, now);
    if (shutdown && warning)
      notices.push(problem(shutdown.daysLeft <= 0 ? "error" : "warning", "model_shutdown", warning));
    return notices;
  }

  /** Validates a dataset, or a file path (read with `Dataset.fromFile`). */
  async validate(
    input: Dataset | string,
    options: DatasetOptions & { signal?: AbortSignal } = {},
  ): Promise<ValidationReport> {
    const dataset = typeof input === "string" ? await Dataset.fromFile(input, options) : input;
    const rules = this.#rules;
    const model = this.options.model ?? (rules.target === "openai" ? DEFAULT_OPENAI_MODEL : undefined);
    const known =
      model && rules.target === "openai"
        ? openaiModel(model, this.options.prices ?? OPENAI_TRAINING_PRICES)
        : undefined;
    const local =
      rules.target === "local" && model && !this.options.tokenizer
        ? await this.#localModel(model, options.signal)
        : undefined;
    const counter =
      this.options.tokenizer ??
      local?.counter ??
      (await tiktokenCounter(known?.encoding ?? encodingForModel(model ?? "")));
    const contextLimit = this.options.contextLimit ?? known?.contextLimit ?? local?.contextLimit;
    const log = new ProblemLog(this.options.maxProblems ?? 1000);
    if (model && rules.target === "openai" && !known) {
      log.add(
        problem(
          "warning",
          "unknown_model",
          `unknown model "${model}": context limit and price are not checked`,
        ),
      );
    }
    const notices =
      rules.target === "openai" ? this.#windDown(known?.id ?? model ?? DEFAULT_OPENAI_MODEL) : [];
    await this.#checkFileSize(dataset.source, log);

    const messages = new NumberList();
    const totalTokens = new NumberList();
    const assistantTokens = new NumberList();
    let examples = 0;
    let missingSystem = 0;
    let missingUser = 0;
    let overLimit = 0;
    let approximate = 0;
    let billedTokens = 0;
    // The trainer's notes on the model (no chat template) and on rendering examples, each said once.
    const notes = new Set<string>(local?.warnings);
    for (const note of notes) log.add(problem("warning", "chat_template", note));
    for await (const record of dataset.records()) {
      options.signal?.throwIfAborted();
      const problems = this.#check(record);
      // A record is an example attempt when it came from a line or row that is not blank; whole-file
      // problems (an empty file) are not records.
      const attempt =
        record.location.line !== undefined && problems.some((entry) => entry.code !== "blank_line");
      if (record.example || attempt) examples++;
      for (const entry of problems) log.add(entry);
      const example = record.example;
      if (!example || problems.some((entry) => entry.severity === "error")) continue;

      let tokens: ExampleTokens;
      try {
        // Counting stops at four times the limit: past it, the exact size changes nothing.
        tokens =
          counter.countExample?.(example, contextLimit) ??
          exampleTokens(counter, example, contextLimit && COUNT_PAST_LIMIT * contextLimit);
      } catch (error) {
        // A chat template that refuses the conversation: the trainer would stop on it.
        if (!(error instanceof ValidationError && error.code === "chat_template_error")) throw error;
        log.add(problem("error", error.code, error.message, record.location));
        continue;
      }
      for (const note of tokens.warnings ?? []) {
        if (notes.has(note)) continue;
        notes.add(note);
        log.add(problem("warning", "chat_template", note, record.location));
      }
      totalTokens.push(tokens.total);
      assistantTokens.push(tokens.assistant);
      if (tokens.precision === "estimate" || tokens.precision === "lower-bound") approximate++;
      billedTokens += contextLimit ? Math.min(contextLimit, tokens.total) : tokens.total;
      if (contextLimit && tokens.total > contextLimit) {
        overLimit++;
        const size = tokens.precision === "lower-bound" ? `at least ${tokens.total}` : String(tokens.total);
        const message = `${size} tokens, over the ${contextLimit}-token limit${model ? ` of ${model}` : ""}: it will be truncated`;
        log.add(problem("warning", "example_too_long", message, record.location));
      }
      if (rules.target === "local" && tokens.assistant === 0) {
        const why =
          contextLimit && tokens.total > contextLimit
            ? `none of its trained tokens is within the ${contextLimit}-token limit`
            : "it has no trained token (assistant messages empty or all with weight 0)";
        log.add(
          problem("warning", "no_trained_tokens", `${why}: the trainer skips this example`, record.location),
        );
      }
      const conversation = chatMessages(example);
      if (conversation) {
        messages.push(conversation.length);
        if (!conversation.some((message) => message.role === "system")) missingSystem++;
        if (!conversation.some((message) => message.role === "user")) missingUser++;
      }
    }
    const valid = totalTokens.length;
    if (examples < rules.minExamples) {
      const message = `${rules.target} needs at least ${rules.minExamples} example${rules.minExamples > 1 ? "s" : ""}, the data has ${examples}`;
      log.add(problem("error", "too_few_examples", message, { file: dataset.source }));
    }
    if (rules.maxExamples !== undefined && examples > rules.maxExamples) {
      const message = `${rules.target} takes at most ${rules.maxExamples} examples in a dataset, the data has ${examples}`;
      log.add(problem("error", "too_many_examples", message, { file: dataset.source }));
    }

    const epochs = this.options.epochs ?? (rules.target === "local" ? LOCAL_EPOCHS : defaultEpochs(valid));
    const price = known?.trainingPricePerMillion ?? (model ? this.options.prices?.[model] : undefined);
    const cost: ValidationReport["cost"] = { billedTokens, epochs, totalTokens: epochs * billedTokens };
    if (price !== undefined) {
      cost.pricePerMillion = price;
      cost.estimatedUSD = Math.round(((cost.totalTokens * price) / 1e6) * 100) / 100;
    }
    return {
      ok:
        log.errors.length === 0 &&
        log.omitted.errors === 0 &&
        !notices.some((notice) => notice.severity === "error"),
      target: rules.target,
      model: known?.id ?? model,
      tokenizer: counter.name,
      contextLimit,
      examples,
      valid,
      errors: log.errors,
      warnings: log.warnings,
      notices,
      omitted: log.omitted,
      counts: log.counts,
      stats: {
        missingSystem,
        missingUser,
        overLimit,
        approximate,
        messages: distribution(messages.values()),
        totalTokens: distribution(totalTokens.values()),
        assistantTokens: distribution(assistantTokens.values()),
      },
      cost,
    };
  }

  #localModel(model: string, signal: AbortSignal | undefined): Promise<LocalModelTokens> {
    if (!this.#local) {
      const hub = { ...this.options.hub, ...(signal ? { signal } : {}) };
      const trainOn = this.options.trainOn ?? "assistant";
      const pending = import("./local-tokens.js").then(({ localModelTokens }) =>
        localModelTokens(model, { ...hub, trainOn }),
      );
      // A failed read (an abort, the network) is tried again by the next validate().
      pending.catch(() => {
        if (this.#local === pending) this.#local = undefined;
      });
      this.#local = pending;
    }
    return this.#local;
  }

  /** The problems of one record as the provider would see it once uploaded. */
  #check(record: DatasetRecord): Problem[] {
    const rules = this.#rules;
    const { raw, format, example, location } = record;
    if (raw !== undefined && format !== undefined && rules.nativeFormats.includes(format)) {
      const found = rules.check(raw as Record<string, unknown>, format, location);
      // The target's checks name the fault in the provider's own terms; the generic parse error then adds nothing.
      const keep = found.some((entry) => entry.severity === "error")
        ? record.problems.filter((entry) => entry.code !== "invalid_record")
        : record.problems;
      return [...keep, ...found];
    }
    if (!example || record.problems.some((entry) => entry.severity === "error")) return record.problems;
    const upload = rules.uploadFormat(example);
    if (typeof upload !== "string") {
      return [...record.problems, problem("error", "unsupported_format", upload.unsupported, location)];
    }
    let wire: unknown;
    try {
      wire = formatExample(example, upload);
    } catch (error) {
      return [...record.problems, problem("error", "unsupported_format", (error as Error).message, location)];
    }
    const found = rules.check(wire as Record<string, unknown>, upload, location);
    const from = format ? `${format} record` : "example";
    for (const entry of found) entry.message = `${entry.message} (in the ${from} converted to ${upload})`;
    return [...record.problems, ...found];
  }

  async #checkFileSize(source: string, log: ProblemLog): Promise<void> {
    const limit = this.#rules.maxFileBytes;
    if (limit === undefined || /^[a-z]+:\/\//i.test(source)) return;
    const size = await stat(source).then(
      (info) => (info.isFile() ? info.size : undefined),
      () => undefined,
    );
    if (size !== undefined && size > limit) {
      const message = `the file is ${size} bytes; ${this.#rules.target} accepts at most ${limit}`;
      log.add(problem("error", "file_too_large", message, { file: source }));
    }
  }
}

function chatMessages(example: Example) {
  if (example.kind === "chat") return example.messages;
  if (example.kind === "preference") return [...example.input, ...example.preferred];
  return undefined;
}

/** A dataset that failed validation; `report` says why. Nothing was uploaded. */
export class InvalidDatasetError extends ValidationError {
  readonly report: ValidationReport;

  constructor(what: string, report: ValidationReport) {
    const errors = report.errors.length + report.omitted.errors;
    const first = report.errors[0];
    const where =
      first?.line !== undefined
        ? ` (first: line ${first.line}${first.path ? ` ${first.path}` : ""}: ${first.message})`
        : first
          ? ` (first: ${first.message})`
          : "";
    super(
      "invalid_dataset",
      `the ${what} data has ${errors} error${errors === 1 ? "" : "s"} for ${report.target}${where}`,
    );
    this.report = report;
  }
}

/** An example as the target's upload file holds it (its chat, preference, completion or text record). */
export function toUploadRecord(target: ValidationTarget, example: Example): unknown {
  const format = RULES[target].uploadFormat(example);
  if (typeof format !== "string") throw new ValidationError("unsupported_format", format.unsupported);
  return formatExample(example, format);
}
