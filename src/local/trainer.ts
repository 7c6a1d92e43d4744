/**
 * `LocalTrainer`: LoRA / QLoRA fine-tuning of a local model on a Dataset, the guide's TrainingArguments
 * as options. The loop lives here in TypeScript (what to do next); each micro-batch is one native
 * `forwardBackward`, each optimizer step one `optimizerStep`.
 */

import { createHash } from "node:crypto";
import { ValidationError } from "../core/errors.js";
import { writeFolderAtomically } from "../core/files.js";
import { seededRandom } from "../core/stats.js";
import type { Example } from "../data/example.js";
import type { LocalModelView } from "../engine/local-chat.js";
import { type LoadOptions, LocalModel } from "../engine/local-model.js";
import type { LoraOptions } from "../engine/lora.js";
import type { MergeOptions } from "../engine/merge.js";
import type { CaseSource } from "../eval/cases.js";
import type { Evaluator } from "../eval/evaluator.js";
import type { EvaluationReport } from "../eval/report.js";
import { TRAIN_DEFAULTS } from "./defaults.js";
import { type PackedBlock, packExamples, type TokenizedExample } from "./packing.js";
import {
  checkResume,
  findResumePoint,
  modelName,
  modelShape,
  planChanges,
  type ResumePoint,
  type RunSettings,
} from "./resume.js";
import { adapterPath, checkpointPath } from "./run-folder.js";
import { learningRateSchedule, type SchedulerName } from "./schedule.js";
import { learnedTokens, noExamplesReason, type TokenizedDataset, tokenizeExamples } from "./tokenize.js";
import { type EvalEvent, type RunSummary, TrainingRun, type TrainingRunEvent } from "./training-run.js";

export interface TrainOptions {
  /** Default 3. */
  epochs?: number;
  /** Packed blocks per micro-batch. Default 4. */
  batchSize?: number;
  /** Micro-batches per optimizer step. Default 4. */
  gradientAccumulation?: number;
  /** Peak learning rate. Default 2e-4. */
  learningRate?: number;
  warmupSteps?: number;
  warmupRatio?: number;
  /** Default "linear". */
  scheduler?: SchedulerName;
  /** Default 0. */
  weightDecay?: number;
  /** Default 1.0. */
  maxGradNorm?: number;
  /** Tokens per block; clamped to the model's max_position_embeddings. Default 2048. */
  maxSeqLength?: number;
  /** A step event every this many steps (and the last). Default 10. */
  loggingSteps?: number;
  /** A checkpoint every this many steps (and at the end). Default 500. */
  saveSteps?: number;
  /**
   * Held-out examples to evaluate on, or a share in (0, 1) of the training examples set aside for it
   * (chosen with `seed`, so a resumed run holds out the same ones).
   */
  validation?: AsyncIterable<Example> | Iterable<Example> | number;
  /** Evaluate every this many steps and at the end. Default: at the end of each epoch. */
  evalSteps?: number;
  /** Default 0. */
  seed?: number;
  /** Where checkpoints and the final adapter go. */
  outputDir?: string;
  /**
   * A checkpoint folder to continue from, or "latest" (the newest in outputDir; none there starts
   * fresh, with a warning). The checkpoint's settings are the truth: adapter settings given here that
   * differ from its, or a base model of another shape, are refused; changed data is a warning; a
   * changed schedule is re-planned from its step (`plan.resume` says all of it).
   */
  resumeFrom?: string;
  /** The adapter. Default: r 16, alpha 32, dropout 0.05 on all seven projections. */
  lora?: LoraOptions;
  /** Pack examples into blocks of maxSeqLength. Default true. */
  packing?: boolean;
  /** Default "assistant". */
  trainOn?: "assistant" | "all";
  /**
   * Test cases evaluated at the run's eval points (`evalSteps`, else each epoch, and the end), the
   * tuned model against the base: the eval events carry the summary and the comparisons. The base's
   * outputs are generated once; the tuned model's are never cached (its weights change).
   */
  evalCases?: { evaluator: Evaluator; cases: CaseSource };
  signal?: AbortSignal;
}

/**
 * A view of the trainer's model, with the adapter on (the tuned model) or off (the base model): a
 * `ChatTarget` that renders as training did, with the token-level `generate`, `stream`,
 * `generateBatch`, `logits` and `loss`.
 */
export type ModelView = LocalModelView;

export class LocalTrainer {
  readonly #model: LocalModel;
  /** The model as given to `load`, as a checkpoint records it. */
  readonly #name: string;
  #running = false;

  private constructor(model: LocalModel, name: string) {
    this.#model = model;
    this.#name = name;
  }

  /** The kernel path, compute type and thread count the model runs with (`LocalModel.engine`). */
  get engine(): LocalModel["engine"] {
    return this.#model.engine;
  }

  /** Loads a model folder or Hub id for training; quantization defaults to "nf4" (QLoRA). */
  static async load(pathOrHubId: string, options: LoadOptions = {}): Promise<LocalTrainer> {
    const name = await modelName(pathOrHubId);
    return new LocalTrainer(await LocalModel.load(pathOrHubId, { quantization: "nf4", ...options }), name);
  }

  /**
   * Checks a resume before anything loads (the CLI calls it before the model): finds the checkpoint
   * `resumeFrom` names and refuses adapter settings or a base model (`config` is its config.json)
   * that contradict it. Undefined when "latest" finds no checkpoint yet.
   */
  static async checkResume(
    options: Pick<TrainOptions, "resumeFrom" | "outputDir" | "lora">,
    base: { name: string; config: import("../engine/config.js").ModelConfig },
  ): Promise<ResumePoint | undefined> {
    if (options.resumeFrom === undefined) return undefined;
    const point = await findResumePoint(options.resumeFrom, options.outputDir);
    if (point)
      checkResume(point, {
        baseModel: { name: await modelName(base.name), shape: modelShape(base.config) },
        lora: options.lora,
      });
    return point;
  }

  /** Trains an adapter on the examples; the run reports progress as events and ends with a summary. */
  train(dataset: AsyncIterable<Example> | Iterable<Example>, options: TrainOptions = {}): TrainingRun {
    if (this.#running) throw new ValidationError("busy", "this trainer is already running");
    this.#running = true;
    return new TrainingRun(
      (emit, signal) =>
        this.#loop(dataset, options, emit, signal).finally(() => {
          this.#running = false;
        }),
      options.signal,
    );
  }

  async #loop(
    dataset: AsyncIterable<Example> | Iterable<Example>,
    options: TrainOptions,
    emit: (event: TrainingRunEvent) => void,
    signal: AbortSignal,
  ): Promise<RunSummary> {
    const model = this.#model;
    const epochs = positiveInteger(options.epochs ?? TRAIN_DEFAULTS.epochs, "epochs");
    const batchSize = positiveInteger(options.batchSize ?? TRAIN_DEFAULTS.batchSize, "batchSize");
    const accumulation = positiveInteger(
      options.gradientAccumulation ?? TRAIN_DEFAULTS.gradientAccumulation,
      "gradientAccumulation",
    );
    const loggingSteps = positiveInteger(options.loggingSteps ?? TRAIN_DEFAULTS.loggingSteps, "loggingSteps");
    const saveSteps = positiveInteger(options.saveSteps ?? TRAIN_DEFAULTS.saveSteps, "saveSteps");
    const maxSeqLength = Math.min(
      positiveInteger(options.maxSeqLength ?? TRAIN_DEFAULTS.maxSeqLength, "maxSeqLength"),
      model.config.maxPositionEmbeddings,
    );
    const seed = options.seed ?? 0;
    const started = performance.now();

    const evalSteps =
      options.evalSteps === undefined ? undefined : positiveInteger(options.evalSteps, "evalSteps");
    // The checkpoint first: a contradiction is refused before any data is tokenized.
    const baseModel = { name: this.#name, shape: modelShape(model.config) };
    let point: ResumePoint | undefined;
    let lora = options.lora;
    const resumeNotes: string[] = [];
    if (options.resumeFrom !== undefined) {
      point = await findResumePoint(options.resumeFrom, options.outputDir);
      if (point === undefined)
        resumeNotes.push(`resume: no checkpoint in ${options.outputDir} yet, so this run starts at step 0`);
      else {
        const checked = checkResume(point, { baseModel, lora: options.lora });
        lora = checked.lora;
        resumeNotes.push(...checked.warnings);
      }
    }
    const tokenizeOptions = { maxSeqLength, trainOn: options.trainOn ?? "assistant" } as const;
    // One renderer for the whole run: the template it decides is the one the adapter is saved with.
    const renderer = model.chatRenderer;
    const tokenized = await tokenizeExamples(dataset, renderer, tokenizeOptions);
    if (tokenized.examples.length === 0)
      throw new ValidationError(
        "no_examples",
        `nothing to train on: ${noExamplesReason(tokenized, maxSeqLength)}`,
      );
    const validation = await validationSplit(tokenized, options.validation, seed, (source) =>
      tokenizeExamples(source, renderer, tokenizeOptions),
    );
    const pack = (examples: TokenizedExample[]): PackedBlock[] =>
      options.packing === false
        ? examples.map((example, index) => ({
            inputIds: example.inputIds,
            labels: example.labels,
            sequenceLengths: [example.inputIds.length],
            examples: [index],
          }))
        : packExamples(examples, maxSeqLength);
    const blocks = pack(tokenized.examples);
    const validationBlocks = validation === undefined ? [] : pack(validation.examples);
    const perStep = batchSize * accumulation;
    const stepsPerEpoch = Math.ceil(blocks.length / perStep);
    const totalSteps = stepsPerEpoch * epochs;
    const trainedTokens = totalLearned(tokenized.examples);
    const learningRate = options.learningRate ?? TRAIN_DEFAULTS.learningRate;
    const now: Pick<RunSettings, "data" | "plan"> = {
      data: { fingerprint: fingerprint(tokenized.examples), examples: tokenized.examples.length },
      plan: {
        totalSteps,
        stepsPerEpoch,
        epochs,
        batchSize,
        gradientAccumulation: accumulation,
        maxSeqLength,
        learningRate,
        seed,
      },
    };
    if (point) resumeNotes.push(...planChanges(point, now));
    emit({
      type: "run-start",
      plan: {
        examples: tokenized.examples.length,
        trainedTokens,
        tokens: tokenized.examples.reduce((sum, example) => sum + example.inputIds.length, 0),
        blocks: blocks.length,
        steps: totalSteps,
        epochs,
        truncated: tokenized.truncated,
        skipped: tokenized.skipped,
        warnings: [...new Set([...resumeNotes, ...tokenized.warnings, ...(validation?.warnings ?? [])])],
        ...(point ? { resume: { checkpoint: point.folder, step: point.step } } : {}),
        ...(validation !== undefined
          ? {
              validation: {
                examples: validation.examples.length,
                trainedTokens: totalLearned(validation.examples),
                truncated: validation.truncated,
                skipped: validation.skipped,
              },
            }
          : {}),
      },
    });

    const adapter = model.attachLora({ ...lora, seed: lora?.seed ?? seed });
    let step = 0;
    if (point) {
      await model.loadTrainingState(point.folder);
      step = point.step;
      if (model.chatFormat.template !== renderer.format.template)
        throw new ValidationError(
          "resume_mismatch",
          `${point.folder} was trained with another chat template than this model renders with: resume it on the model it was trained on`,
          { location: { file: point.folder } },
        );
    }
    // The adapter trained: the checkpoint's once loaded (an old checkpoint's may differ from `lora`).
    const active = model.lora ?? adapter;
    const settings: RunSettings = {
      baseModel,
      adapter: {
        r: active.r,
        alpha: active.alpha,
        dropout: active.dropout,
        targetModules: active.targetModules,
        useRslora: active.useRslora,
      },
      ...now,
    };
    const rate = learningRateSchedule({
      learningRate,
      totalSteps,
      ...(options.scheduler !== undefined ? { scheduler: options.scheduler } : {}),
      ...(options.warmupSteps !== undefined ? { warmupSteps: options.warmupSteps } : {}),
      ...(options.warmupRatio !== undefined ? { warmupRatio: options.warmupRatio } : {}),
    });
    const checkpoints: string[] = [];
    const save = async () => {
      if (options.outputDir === undefined) return;
      const path = checkpointPath(options.outputDir, step);
      await writeFolderAtomically(path, (temporary) => model.saveTrainingState(temporary, { run: settings }));
      checkpoints.push(path);
      emit({ type: "checkpoint-saved", step, path });
    };

    let lastEval: EvalEvent | undefined;
    // The base model's outputs are the same at every eval point: generated once, then reused.
    let baseReport: EvaluationReport | undefined;
    const evaluateCases = async (): Promise<EvalEvent["cases"]> => {
      if (!options.evalCases) return undefined;
      const { evaluator, cases } = options.evalCases;
      const base = baseReport ?? this.baseModel();
      // The tuned model's weights change between eval points: its outputs are never cached.
      const report = await evaluator
        .compare({ base, tuned: this.model() }, cases, { signal, cache: false })
        .done();
      baseReport ??= report;
      return {
        summary: report.data.summary,
        comparisons: report.data.comparisons,
        warnings: report.data.warnings,
      };
    };
    const evaluate = async (): Promise<void> => {
      let lossSum = 0;
      let tokens = 0;
      let correct = 0;
      for (let first = 0; first < validationBlocks.length; first += batchSize) {
        if (signal.aborted) return;
        const batch = validationBlocks.slice(first, first + batchSize);
        const result = await model.loss(
          batch.flatMap((block) => block.inputIds),
          batch.flatMap((block) => block.labels),
          { sequenceLengths: batch.flatMap((block) => block.sequenceLengths) },
        );
        lossSum += result.loss * result.tokens;
        tokens += result.tokens;
        correct += result.correct;
      }
      const loss = tokens > 0 ? lossSum / tokens : 0;
      const cases = await evaluateCases();
      lastEval = {
        type: "eval",
        step,
        epoch: step / stepsPerEpoch,
        ...(validationBlocks.length > 0
          ? { loss, perplexity: Math.exp(loss), tokenAccuracy: tokens > 0 ? correct / tokens : 0, tokens }
          : {}),
        ...(cases ? { cases } : {}),
      };
      emit(lastEval);
    };
    const evaluateNow = () =>
      (validationBlocks.length > 0 || options.evalCases !== undefined) &&
      (step === totalSteps ||
        (evalSteps === undefined ? step % stepsPerEpoch === 0 : step % evalSteps === 0));

    const firstStep = step;
    let tokensSeen = 0;
    let lossSum = 0;
    let lossTokens = 0;
    let finalLoss: number | undefined;
    const loopStarted = performance.now();
    let aborted = false;
    while (step < totalSteps) {
      if (signal.aborted) {
        aborted = true;
        break;
      }
      const epoch = Math.floor(step / stepsPerEpoch);
      const order = shuffled(blocks.length, seed + epoch);
      const first = (step % stepsPerEpoch) * perStep;
      const chosen = order.slice(first, first + perStep);
      let stepTokens = 0;
      for (let micro = 0; micro < chosen.length; micro += batchSize) {
        const batch = chosen.slice(micro, micro + batchSize).map((index) => blocks[index] as PackedBlock);
        const result = await model.forwardBackward({
          inputIds: batch.flatMap((block) => block.inputIds),
          labels: batch.flatMap((block) => block.labels),
          sequenceLengths: batch.flatMap((block) => block.sequenceLengths),
        });
        lossSum += result.loss * result.tokens;
        lossTokens += result.tokens;
        stepTokens += result.tokens;
      }
      const learningRate = rate(step);
      const { gradNorm } = await model.optimizerStep({
        learningRate,
        weightDecay: options.weightDecay ?? 0,
        maxGradNorm: options.maxGradNorm ?? 1,
      });
      step++;
      tokensSeen += stepTokens;
      if (step % loggingSteps === 0 || step === totalSteps) {
        const seconds = (performance.now() - loopStarted) / 1000;
        finalLoss = lossTokens > 0 ? lossSum / lossTokens : 0;
        const tokensPerSecond = tokensSeen / Math.max(seconds, 1e-9);
        emit({
          type: "step",
          step,
          totalSteps,
          epoch: step / stepsPerEpoch,
          loss: finalLoss,
          learningRate,
          gradNorm,
          tokensPerSecond,
          eta: (seconds / (step - firstStep)) * (totalSteps - step),
        });
        lossSum = 0;
        lossTokens = 0;
      }
      if (evaluateNow()) await evaluate();
      if (step % saveSteps === 0 && step < totalSteps) await save();
    }
    // A resume with nothing left to train saves no new checkpoint: the one it read is the last.
    if (step > firstStep || point === undefined) await save();
    let finalAdapter: string | undefined;
    if (options.outputDir !== undefined && !aborted) {
      finalAdapter = adapterPath(options.outputDir);
      await writeFolderAtomically(finalAdapter, (temporary) => model.saveAdapter(temporary));
    }
    const summary: RunSummary = {
      steps: step,
      trainedSteps: step - firstStep,
      epochs: step / stepsPerEpoch,
      finalLoss,
      tokens: tokensSeen,
      seconds: (performance.now() - started) / 1000,
      adapterPath: finalAdapter,
      checkpoints,
      ...(lastEval?.loss !== undefined
        ? {
            eval: {
              loss: lastEval.loss,
              perplexity: lastEval.perplexity as number,
              tokenAccuracy: lastEval.tokenAccuracy as number,
            },
          }
        : {}),
    };
    emit(aborted ? { type: "run-aborted", summary } : { type: "run-end", summary });
    return summary;
  }

  /** The tuned model: inference through the adapter. */
  model(): ModelView {
    return this.#view(true);
  }

  /** The base model: the same weights with the adapter off. */
  baseModel(): ModelView {
    return this.#view(false);
  }

  #view(adapter: boolean): ModelView {
    return this.#model.view({ adapter });
  }

  /** Writes the adapter in PEFT's format. */
  saveAdapter(dir: string): Promise<void> {
    return this.#model.saveAdapter(dir);
  }

  /** Writes a Hugging Face folder with the adapter merged in. */
  merge(dir: string, options: MergeOptions = {}): Promise<{ files: string[] }> {
    return this.#model.mergeAndSave(dir, options);
  }

  dispose(): void {
    this.#model.dispose();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.dispose();
  }
}

/**
 * The validation examples: tokenized from their own source, or a seeded share of the training
 * examples moved out of `training` (at least one each side).
 */
async function validationSplit(
  training: TokenizedDataset,
  validation: TrainOptions["validation"],
  seed: number,
  tokenize: (source: AsyncIterable<Example> | Iterable<Example>) => Promise<TokenizedDataset>,
): Promise<TokenizedDataset | undefined> {
  if (validation === undefined) return undefined;
  if (typeof validation !== "number") {
    const result = await tokenize(validation);
    if (result.examples.length === 0)
      throw new ValidationError(
        "no_examples",
        "nothing to evaluate on: every validation example was skipped",
      );
    return result;
  }
  if (!(validation > 0 && validation < 1))
    throw new ValidationError(
      "invalid_argument",
      `validation as a share must be in (0, 1), got ${validation}`,
    );
  const count = training.examples.length;
  if (count < 2)
    throw new ValidationError(
      "invalid_argument",
      `validation: ${validation} needs at least 2 examples to split, the data has ${count}`,
    );
  const held = Math.min(count - 1, Math.max(1, Math.round(validation * count)));
  const chosen = new Set(shuffled(count, seed).slice(0, held));
  const kept: TokenizedExample[] = [];
  const examples: TokenizedExample[] = [];
  training.examples.forEach((example, index) => {
    (chosen.has(index) ? examples : kept).push(example);
  });
  training.examples = kept;
  return { examples, truncated: 0, skipped: 0, warnings: [] };
}

function totalLearned(examples: TokenizedExample[]): number {
  return examples.reduce((sum, example) => sum + learnedTokens(example.labels), 0);
}

function positiveInteger(value: number, name: string): number {
  if (!Number.isInteger(value) || value < 1)
    throw new ValidationError("invalid_argument", `${name} must be an integer >= 1`);
  return value;
}

/** A permutation of 0…n−1 from the seed (Fisher–Yates), the same for the same seed everywhere. */
function shuffled(n: number, seed: number): number[] {
  const random = seededRandom(seed);
  const order = Array.from({ length: n }, (_, index) => index);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [order[i], order[j]] = [order[j] as number, order[i] as number];
  }
  return order;
}

/** sha256 of the training sequences, ids and labels in order: what a checkpoint was trained on. */
function fingerprint(examples: readonly TokenizedExample[]): string {
  const hash = createHash("sha256");
  for (const example of examples) {
    hash.update(Int32Array.from(example.inputIds));
    hash.update(Int32Array.from(example.labels));
  }
  return hash.digest("hex");
}
