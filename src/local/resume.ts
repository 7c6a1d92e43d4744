/**
 * Resuming a run: the checkpoint's settings are the truth. A checkpoint records what it was trained
 * with (the base model, the adapter, a fingerprint of the data, the plan); a resume whose adapter or
 * base model contradicts them is refused before anything loads, naming each difference, changed data
 * is a warning, and a changed schedule is re-planned from the saved step and stated.
 */
import { readFile, stat } from "node:fs/promises";
import { join, resolve } from "node:path";
import { ModelFormatError, ValidationError } from "../core/errors.js";
import type { ModelConfig } from "../engine/config.js";
import { DROPOUT_MASKS } from "../engine/local-model.js";
import { type LoraConfig, type LoraOptions, loraConfig } from "../engine/lora.js";
import { checkpointStep, latestCheckpoint, TRAINER_STATE } from "./run-folder.js";

/** What a checkpoint was trained with: written into its `trainer_state.json` as `run`. */
export interface RunSettings {
  /** The model as given to `LocalTrainer.load` (a folder, made absolute, or a Hub id) and its shape. */
  baseModel: { name: string; shape: string };
  adapter: Pick<LoraConfig, "r" | "alpha" | "dropout" | "targetModules" | "useRslora">;
  /** sha256 of the training sequences (ids and labels, in order) and their count. */
  data: { fingerprint: string; examples: number };
  plan: {
    totalSteps: number;
    stepsPerEpoch: number;
    epochs: number;
    batchSize: number;
    gradientAccumulation: number;
    maxSeqLength: number;
    learningRate: number;
    seed: number;
  };
}

/** The checkpoint a resume continues from. */
export interface ResumePoint {
  folder: string;
  step: number;
  /** Undefined for a checkpoint written before tunekit recorded them. */
  settings: RunSettings | undefined;
  /** How its dropout masks were drawn (`DROPOUT_MASKS`); undefined for older checkpoints. */
  dropoutMasks?: string | undefined;
}

/** The shape a base model must have for an adapter to fit it, as one comparable line. */
export function modelShape(config: ModelConfig): string {
  return [
    config.architecture,
    `hidden ${config.hiddenSize}`,
    `layers ${config.numLayers}`,
    `heads ${config.numHeads}/${config.numKvHeads}`,
    `head_dim ${config.headDim}`,
    `intermediate ${config.intermediateSize}`,
    `vocab ${config.vocabSize}`,
  ].join(", ");
}

/** A model reference as a checkpoint records it: an existing folder absolute, a Hub id as given. */
export async function modelName(pathOrHubId: string): Promise<string> {
  const info = await stat(pathOrHubId).catch(() => undefined);
  return info?.isDirectory() ? resolve(pathOrHubId) : pathOrHubId;
}

/**
 * The checkpoint `resumeFrom` names: `"latest"` is the newest in `outputDir` (undefined when it has
 * none: the run starts fresh), anything else a checkpoint folder, refused at once when it is not one.
 */
export async function findResumePoint(
  resumeFrom: string,
  outputDir: string | undefined,
): Promise<ResumePoint | undefined> {
  let folder: string | undefined;
  if (resumeFrom === "latest") {
    if (outputDir === undefined)
      throw new ValidationError("invalid_argument", 'resumeFrom: "latest" needs outputDir');
    folder = await latestCheckpoint(outputDir);
    if (folder === undefined) return undefined;
  } else {
    folder = resumeFrom;
    const info = await stat(folder).catch(() => undefined);
    if (!info?.isDirectory())
      throw new ValidationError("file_not_found", "no such checkpoint folder", {
        location: { file: folder },
      });
    if (!(await stat(join(folder, TRAINER_STATE)).catch(() => undefined))?.isFile())
      throw new ValidationError(
        "invalid_argument",
        `not a checkpoint (it has no ${TRAINER_STATE}); resume from a checkpoint-N folder of a run`,
        { location: { file: folder } },
      );
  }
  const step = await checkpointStep(folder);
  const json = JSON.parse(await readFile(join(folder, TRAINER_STATE), "utf8")) as {
    run?: unknown;
    dropoutMasks?: unknown;
  };
  return {
    folder,
    step,
    settings: readSettings(folder, json),
    dropoutMasks: typeof json.dropoutMasks === "string" ? json.dropoutMasks : undefined,
  };
}

function readSettings(folder: string, json: { run?: unknown }): RunSettings | undefined {
  const file = join(folder, TRAINER_STATE);
  const run = json.run as RunSettings | undefined;
  if (run === undefined) return undefined;
  const ok =
    typeof run === "object" &&
    run !== null &&
    typeof run.baseModel?.name === "string" &&
    typeof run.baseModel?.shape === "string" &&
    Number.isInteger(run.adapter?.r) &&
    typeof run.adapter?.alpha === "number" &&
    typeof run.adapter?.dropout === "number" &&
    Array.isArray(run.adapter?.targetModules) &&
    typeof run.data?.fingerprint === "string" &&
    Number.isInteger(run.plan?.totalSteps);
  if (!ok)
    throw new ModelFormatError("bad_training_state", "run: not the settings tunekit writes", {
      location: { file, path: "run" },
    });
  return run;
}

const sameList = (a: readonly string[], b: readonly string[]) =>
  a.length === b.length && [...a].sort().every((entry, index) => entry === [...b].sort()[index]);

/**
 * Checks a resume against what the command asks: an adapter setting given and different, or a base
 * model of another shape, is refused (every difference named); the same shape under another name is a
 * warning. Returns the adapter to continue with (the checkpoint's) and the warnings.
 */
export function checkResume(
  point: ResumePoint,
  wanted: { baseModel: RunSettings["baseModel"]; lora: LoraOptions | undefined },
): { lora: LoraOptions | undefined; warnings: string[] } {
  const name = `checkpoint-${point.step}`;
  const settings = point.settings;
  if (!settings)
    return {
      lora: wanted.lora,
      warnings: [
        `${name} records no settings (written by an older tunekit): the base model, adapter and data are not checked against it`,
      ],
    };
  const differences: string[] = [];
  const asked = wanted.lora ?? {};
  const saved = settings.adapter;
  if (asked.r !== undefined && asked.r !== saved.r) differences.push(`r ${saved.r} (asked ${asked.r})`);
  if (asked.alpha !== undefined && asked.alpha !== saved.alpha)
    differences.push(`alpha ${saved.alpha} (asked ${asked.alpha})`);
  if (asked.dropout !== undefined && asked.dropout !== saved.dropout)
    differences.push(`dropout ${saved.dropout} (asked ${asked.dropout})`);
  if (asked.useRslora !== undefined && asked.useRslora !== saved.useRslora)
    differences.push(`useRslora ${saved.useRslora} (asked ${asked.useRslora})`);
  if (asked.targetModules !== undefined) {
    const targets = loraConfig({ targetModules: asked.targetModules }).targetModules;
    if (!sameList(targets, saved.targetModules))
      differences.push(`targetModules ${saved.targetModules.join(",")} (asked ${targets.join(",")})`);
  }
  if (wanted.baseModel.shape !== settings.baseModel.shape)
    differences.push(
      `base model ${settings.baseModel.name} (${settings.baseModel.shape}), not ${wanted.baseModel.name} (${wanted.baseModel.shape})`,
    );
  if (differences.length > 0)
    throw new ValidationError(
      "resume_mismatch",
      `cannot resume: ${name} was trained with ${differences.join("; ")}. Resume with its settings (leave them out to take the checkpoint's), or start a new run in another output folder`,
      { location: { file: point.folder } },
    );
  const warnings: string[] = [];
  if (wanted.baseModel.name !== settings.baseModel.name)
    warnings.push(
      `${name} was trained on ${settings.baseModel.name}; resuming on ${wanted.baseModel.name}, which has the same shape`,
    );
  if (saved.dropout > 0 && point.dropoutMasks !== DROPOUT_MASKS)
    warnings.push(
      `${name} was written by a tunekit that drew dropout masks another way: the run resumes, but with other masks than an uninterrupted run would have drawn, so it will not match one bit for bit`,
    );
  const { r, alpha, dropout, targetModules, useRslora } = saved;
  return { lora: { ...asked, r, alpha, dropout, targetModules, useRslora }, warnings };
}

/** What changed between the checkpoint's plan and data and this run's, said in words. */
export function planChanges(point: ResumePoint, now: Pick<RunSettings, "data" | "plan">): string[] {
  const settings = point.settings;
  if (!settings) return [];
  const changes: string[] = [];
  if (settings.data.fingerprint !== now.data.fingerprint)
    changes.push(
      `the training data differs from what checkpoint-${point.step} was trained on (${settings.data.examples} sequences then, ${now.data.examples} now)`,
    );
  const labels: Record<keyof RunSettings["plan"], string> = {
    totalSteps: "steps",
    stepsPerEpoch: "steps per epoch",
    epochs: "epochs",
    batchSize: "batch size",
    gradientAccumulation: "gradient accumulation",
    maxSeqLength: "max sequence length",
    learningRate: "learning rate",
    seed: "seed",
  };
  const changed = (Object.keys(labels) as Array<keyof RunSettings["plan"]>)
    .filter((key) => settings.plan[key] !== undefined && settings.plan[key] !== now.plan[key])
    .map((key) => `${labels[key]} ${settings.plan[key]} → ${now.plan[key]}`);
  if (changed.length > 0)
    changes.push(
      now.plan.totalSteps > point.step
        ? `the plan changed (${changed.join(", ")}): the schedule is re-planned from step ${point.step}`
        : `the plan changed (${changed.join(", ")})`,
    );
  return changes;
}
