/**
 * The way off an OpenAI fine-tune, in steps that each run alone and resume: find the fine-tune
 * (inventory) → record its answers (while it still answers) → get its training data back → train an
 * open model on the same data with the same FineTuneJob code (locally or on Together) → evaluate the
 * replacement against the recording (and the base model, and the old model while it runs) with
 * paired statistics → say how to serve it under the old model's id. What each step produced is kept
 * in `dir/migration.json`; a step already done is not done again.
 */
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import type { ChatTarget } from "../core/chat.js";
import { ValidationError } from "../core/errors.js";
import { writeJsonAtomically } from "../core/files.js";
import { Evaluator } from "../eval/evaluator.js";
import { metrics } from "../eval/metrics/index.js";
import { FineTuneJob } from "../jobs/fine-tune-job.js";
import type { FineTunedModel } from "../providers/openai/inventory.js";
import type { OpenAIProvider } from "../providers/openai/provider.js";
import type { FineTuningProvider, Hyperparameters } from "../providers/spec.js";
import { type RecordEvent, record } from "./record.js";
import { findFineTune, type RetrievedFile, retrieveTrainingData } from "./retrieve.js";

export const MIGRATION_STEPS = ["inventory", "record", "retrieve", "train", "evaluate", "serve"] as const;
export type MigrationStep = (typeof MIGRATION_STEPS)[number];

export interface MigrateOptions {
  /** The OpenAI provider whose organisation owns the fine-tune. */
  openai: OpenAIProvider;
  /** The fine-tune, `ft:gpt-4o-mini-2024-07-18:org::abc123`. */
  model: string;
  /** Where the replacement trains: `local` (this machine) or `together`, on the open model `base`. */
  to:
    | { provider: "local"; base: string; quantization?: "nf4" | "none" }
    | { provider: "together"; base: string; together: FineTuningProvider };
  /** Cases whose inputs the old model answers (the recording), also the evaluation's cases. */
  cases?: string;
  /** Where everything goes: recording.jsonl, training.jsonl, the job, report.md / report.html, migration.json. */
  dir: string;
  /** The training run's settings. Default: the old job's epochs, the provider's defaults for the rest. */
  hyperparameters?: Hyperparameters;
  /** Only these steps (each needs what the ones before it left in `dir`). Default: all. */
  steps?: MigrationStep[];
  /** The evaluation's generation settings. Default: temperature 0, 256 tokens at most. */
  maxTokens?: number;
  signal?: AbortSignal;
  onProgress?: (event: MigrationEvent) => void;
}

export type MigrationEvent =
  | { type: "step"; step: MigrationStep; status: "start" | "done" | "skipped"; detail?: string }
  | { type: "record"; event: RecordEvent }
  | { type: "message"; message: string };

/** What the steps left, as kept in `dir/migration.json`. */
export interface MigrationState {
  model: string;
  to: { provider: "local" | "together"; base: string };
  fineTune?: Omit<FineTunedModel, "job">;
  recording?: { path: string; recorded: number; failed: number };
  data?: RetrievedFile[];
  /** Which file trained the replacement: the retrieved training file, or the recording (distillation). */
  trainedOn?: string;
  job?: { id: string; provider: string; fineTunedModel: string };
  evaluation?: {
    report: string;
    /** Paired comparisons against the recording: replacement vs base, per metric. */
    comparisons: Array<{
      metric: string;
      a: string;
      b: string;
      meanDifference: number;
      pValue: number;
      test: string;
    }>;
    means: Record<string, Record<string, number>>;
  };
  serve?: { command: string };
}

const STATE_FILE = "migration.json";

export async function migrateFromOpenAI(options: MigrateOptions): Promise<MigrationState> {
  const dir = resolve(options.dir);
  const statePath = join(dir, STATE_FILE);
  const steps = new Set(options.steps ?? MIGRATION_STEPS);
  for (const step of steps)
    if (!(MIGRATION_STEPS as readonly string[]).includes(step))
      throw new ValidationError(
        "invalid_argument",
        `unknown step "${step}"; the steps are ${MIGRATION_STEPS.join(", ")}`,
      );
  const state: MigrationState = existsSync(statePath)
    ? (JSON.parse(await readFile(statePath, "utf8")) as MigrationState)
    : { model: options.model, to: { provider: options.to.provider, base: options.to.base } };
  if (
    state.model !== options.model ||
    state.to.base !== options.to.base ||
    state.to.provider !== options.to.provider
  )
    throw new ValidationError(
      "resume_mismatch",
      `${statePath} is the migration of ${state.model} to ${state.to.provider}:${state.to.base}, not of ${options.model} to ${options.to.provider}:${options.to.base}: use another dir`,
      { location: { file: statePath } },
    );
  const save = () => writeJsonAtomically(statePath, state);
  const emit = (event: MigrationEvent) => options.onProgress?.(event);
  const call = options.signal ? { signal: options.signal } : {};
  const run = async (step: MigrationStep, done: boolean, body: () => Promise<string | undefined>) => {
    if (!steps.has(step)) return;
    if (done) {
      emit({ type: "step", step, status: "skipped", detail: "done before" });
      return;
    }
    options.signal?.throwIfAborted();
    emit({ type: "step", step, status: "start" });
    const detail = await body();
    await save();
    emit({ type: "step", step, status: "done", ...(detail ? { detail } : {}) });
  };

  // 1. The fine-tune, its base, its days left, its files (kept: the model may be gone on a later run).
  await run("inventory", state.fineTune !== undefined, async () => {
    const { job: _, ...found } = await findFineTune(options.openai, options.model, call);
    state.fineTune = found;
    const days =
      found.daysLeft === undefined
        ? "no shutdown date known"
        : found.daysLeft > 0
          ? `shuts down ${found.shutdownDate}, ${found.daysLeft} days left`
          : `shut down ${found.shutdownDate}`;
    return `${found.model} on ${found.baseModel}: ${days}`;
  });

  // 2. Its answers to the cases, while it still answers (a recording resumes by itself).
  const recordingPath = join(dir, "recording.jsonl");
  if (options.cases !== undefined)
    await run("record", false, async () => {
      const result = await record({
        target: options.openai.chat(options.model),
        cases: options.cases as string,
        out: recordingPath,
        ...call,
        onProgress: (event) => emit({ type: "record", event }),
      });
      state.recording = {
        path: recordingPath,
        recorded: result.recorded + result.resumed,
        failed: result.failed.length,
      };
      return `${result.recorded + result.resumed} answers in ${recordingPath}${result.failed.length ? `, ${result.failed.length} failed` : ""}`;
    });

  // 3. The training data back, where the API lets it out.
  await run("retrieve", state.data !== undefined, async () => {
    const fineTune = state.fineTune ?? (await findFineTune(options.openai, options.model, call));
    state.data = await retrieveTrainingData(options.openai, fineTune, dir, call);
    return (
      state.data
        .map((file) =>
          file.refused
            ? `${file.role} file ${file.fileId}: refused (${file.refused})`
            : `${file.role}: ${file.examples} examples in ${file.path}`,
        )
        .join("; ") || "the job had no files"
    );
  });

  // 4. The replacement, trained with the same FineTuneJob code on the open model.
  await run("train", state.job !== undefined, async () => {
    const training = state.data?.find((file) => file.role === "training" && file.path);
    const validation = state.data?.find((file) => file.role === "validation" && file.path);
    const source =
      training?.path ?? (state.recording && existsSync(recordingPath) ? recordingPath : undefined);
    if (!source)
      throw new ValidationError(
        "no_examples",
        `nothing to train on: the training file could not be downloaded${state.data?.find((file) => file.refused) ? ` (${state.data.find((file) => file.refused)?.refused})` : ""} and no cases were recorded (give cases)`,
      );
    if (!training?.path)
      emit({
        type: "message",
        message: `training on the recording ${recordingPath}: the old model's answers (distillation)`,
      });
    state.trainedOn = source;
    const provider =
      options.to.provider === "local"
        ? (await import("../providers/local/index.js")).local({
            outputDir: join(dir, "local"),
            quantization: options.to.quantization ?? "nf4",
          })
        : options.to.together;
    const oldEpochs = state.fineTune?.hyperparameters?.epochs;
    const hyperparameters: Hyperparameters = {
      ...(typeof oldEpochs === "number" ? { epochs: oldEpochs } : {}),
      ...options.hyperparameters,
    };
    const job = await FineTuneJob.create({
      provider,
      model: options.to.base,
      training: source,
      ...(validation?.path && source === training?.path ? { validation: validation.path } : {}),
      hyperparameters,
      // Together names the model after it; a local job's model is its adapter folder.
      ...(options.to.provider === "together" ? { suffix: "from-openai" } : {}),
    });
    for (const warning of job.warnings) emit({ type: "message", message: `warning: ${warning.message}` });
    const result = await job.wait(call);
    state.job = { id: job.id, provider: provider.name, fineTunedModel: result.fineTunedModel as string };
    return `${job.id}: ${result.fineTunedModel}`;
  });

  // 5. The replacement against the recording, beside the base model (and the old model while it answers).
  await run("evaluate", state.evaluation !== undefined, async () => {
    if (!state.job) throw new ValidationError("invalid_argument", "evaluate needs the train step first");
    const cases = state.recording ? recordingPath : undefined;
    if (!cases || !existsSync(cases))
      throw new ValidationError(
        "invalid_argument",
        "evaluate needs a recording of the old model (give cases)",
      );
    const targets: Record<string, ChatTarget> = {};
    const disposers: Array<() => void> = [];
    try {
      if (options.to.provider === "local") {
        const { LocalModel } = await import("../engine/local-model.js");
        const model = await LocalModel.load(options.to.base, {
          quantization: options.to.quantization ?? "nf4",
        });
        disposers.push(() => model.dispose());
        targets.base = model.view({ adapter: false, modelId: options.to.base });
        targets.replacement = await model.openAdapter(state.job.fineTunedModel, { modelId: "replacement" });
      } else {
        const provider = options.to.together as FineTuningProvider & { chat(model: string): ChatTarget };
        targets.base = provider.chat(options.to.base);
        targets.replacement = provider.chat(state.job.fineTunedModel);
      }
      const stillUp = state.fineTune?.daysLeft === undefined || state.fineTune.daysLeft > 0;
      if (stillUp) targets.openai = options.openai.chat(options.model);
      const evaluator = new Evaluator({
        metrics: [
          metrics.rougeL(),
          metrics.chrf(),
          ...(options.to.provider === "local" ? [metrics.answerLoss()] : []),
        ],
        generation: { temperature: 0, maxTokens: options.maxTokens ?? 256 },
        cache: false,
      });
      const report = await evaluator.compare(targets, cases, call).done();
      const reportPath = join(dir, "report.html");
      await report.save(reportPath);
      await report.save(join(dir, "report.md"));
      const summary = report.toJSON().summary;
      const comparisons: NonNullable<MigrationState["evaluation"]>["comparisons"] = [];
      for (const metric of Object.keys(summary)) {
        const comparison = report.comparison(metric, "base", "replacement");
        if (comparison)
          comparisons.push({
            metric,
            a: "base",
            b: "replacement",
            meanDifference: comparison.meanDifference,
            pValue: comparison.pValue,
            test: comparison.test,
          });
      }
      const means: Record<string, Record<string, number>> = {};
      for (const [metric, byTarget] of Object.entries(summary))
        means[metric] = Object.fromEntries(
          Object.entries(byTarget ?? {}).map(([name, entry]) => [name, entry.mean]),
        );
      state.evaluation = { report: reportPath, comparisons, means };
      return comparisons
        .map(
          (entry) =>
            `${entry.metric}: base ${means[entry.metric]?.base?.toFixed(3)} → replacement ${means[entry.metric]?.replacement?.toFixed(3)} (p = ${entry.pValue.toFixed(4)}, ${entry.test})`,
        )
        .join("; ");
    } finally {
      for (const dispose of disposers) dispose();
    }
  });

  // 6. How to serve it under the old model's id, so that an app changes only its baseURL.
  await run("serve", false, async () => {
    if (!state.job) throw new ValidationError("invalid_argument", "serve needs the train step first");
    state.serve = {
      command:
        options.to.provider === "local"
          ? `tunekit serve --model ${quote(options.to.base)} --adapter ${quote(`${options.model}=${state.job.fineTunedModel}`)}`
          : `# Together serves ${state.job.fineTunedModel} on a dedicated endpoint: create one, then use model "${state.job.fineTunedModel}"`,
    };
    return state.serve.command;
  });
  return state;
}

/** A shell word, quoted when it needs to be. */
function quote(word: string): string {
  return /^[\w./:=@+-]+$/.test(word) ? word : `'${word.replaceAll("'", "'\\''")}'`;
}
