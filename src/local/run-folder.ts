/**
 * The folder a training run writes (the trainer's `outputDir`, a local job's folder): a
 * `checkpoint-N/` per saved step, as transformers' Trainer names them, and the final `adapter/`.
 * Every name and lookup of that layout lives here.
 */
import { readdir, readFile, stat } from "node:fs/promises";
import { join, resolve } from "node:path";
import { ModelFormatError } from "../core/errors.js";

const CHECKPOINT = /^checkpoint-(\d+)$/;
/** The file of a checkpoint that says where training stood; a folder without it is no checkpoint. */
export const TRAINER_STATE = "trainer_state.json";

/** `dir/checkpoint-<step>`. */
export function checkpointPath(dir: string, step: number): string {
  return join(dir, `checkpoint-${step}`);
}

/** `dir/adapter`: the adapter of a finished run. */
export function adapterPath(dir: string): string {
  return join(dir, "adapter");
}

/** The checkpoints in `dir` by step, oldest first (none when the folder does not exist). */
export async function listCheckpoints(dir: string): Promise<{ step: number; path: string }[]> {
  const names = await readdir(dir).catch(() => [] as string[]);
  return names
    .flatMap((name) => {
      const match = CHECKPOINT.exec(name);
      return match ? [{ step: Number(match[1]), path: join(dir, name) }] : [];
    })
    .sort((a, b) => a.step - b.step);
}

/** The newest checkpoint in `dir`, or undefined. */
export async function latestCheckpoint(dir: string): Promise<string | undefined> {
  return (await listCheckpoints(dir)).at(-1)?.path;
}

/** Whether `folder` is a checkpoint (it has a trainer state). */
export async function isCheckpoint(folder: string): Promise<boolean> {
  return (await stat(join(resolve(folder), TRAINER_STATE)).catch(() => undefined))?.isFile() === true;
}

/** The optimizer step a checkpoint was saved after. */
export async function checkpointStep(folder: string): Promise<number> {
  const file = join(folder, TRAINER_STATE);
  let step: unknown;
  try {
    step = JSON.parse(await readFile(file, "utf8")).step;
  } catch (error) {
    throw new ModelFormatError("bad_training_state", `cannot read (${(error as Error).message})`, {
      location: { file },
      cause: error,
    });
  }
  if (!(Number.isSafeInteger(step) && (step as number) >= 0))
    throw new ModelFormatError("bad_training_state", "step must be an integer >= 0", {
      location: { file, path: "step" },
    });
  return step as number;
}
