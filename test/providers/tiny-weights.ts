/**
 * The weights the cloud fakes hand back: a PEFT adapter trained a step on the tiny test model, and
 * the same adapter merged into it, with the greedy tokens each gives here, so that an end-to-end
 * test can check that what came home is what was made.
 */
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { LocalModel } from "../../src/engine/local-model.js";
import { TINY_LLAMA, writeTinyModel } from "../../src/testing/tiny-model.js";

export const PROMPT = [4, 5, 6];
const GREEDY = { maxTokens: 12, temperature: 0, stopTokens: [] };

export interface TinyWeights {
  /** The base model's folder. */
  modelDir: string;
  /** The adapter's files by name. */
  adapter: Record<string, Uint8Array>;
  /** The merged model's files by name. */
  merged: Record<string, Uint8Array>;
  /** Greedy tokens from PROMPT with the adapter attached. */
  tunedTokens: number[];
  /** Greedy tokens from PROMPT of the merged model. */
  mergedTokens: number[];
}

export async function makeTinyWeights(dir: string): Promise<TinyWeights> {
  const modelDir = await writeTinyModel(join(dir, "tiny"), TINY_LLAMA);
  const made = join(dir, "made");
  const mergedDir = join(dir, "made-merged");
  await using model = await LocalModel.load(modelDir, { quantization: "none" });
  model.attachLora({ r: 4, seed: 3 });
  const ids = Array.from({ length: 16 }, (_, index) => 3 + ((index * 5) % 30));
  await model.forwardBackward({ inputIds: ids, labels: ids });
  await model.optimizerStep({ learningRate: 0.5 });
  await model.saveAdapter(made);
  await model.mergeAndSave(mergedDir, { dtype: "f32" });
  const tunedTokens = (await model.generate({ inputIds: PROMPT }, GREEDY)).tokenIds;
  return {
    modelDir,
    adapter: await filesOf(made),
    merged: await filesOf(mergedDir),
    tunedTokens,
    mergedTokens: await greedyTokens(mergedDir),
  };
}

/** Greedy tokens from PROMPT of the model in `modelDir`, with the adapter in `adapterDir` if given. */
export async function greedyTokens(modelDir: string, adapterDir?: string): Promise<number[]> {
  await using model = await LocalModel.load(modelDir, { quantization: "none" });
  if (adapterDir) await model.loadAdapter(adapterDir);
  return (await model.generate({ inputIds: PROMPT }, GREEDY)).tokenIds;
}

async function filesOf(dir: string): Promise<Record<string, Uint8Array>> {
  const files: Record<string, Uint8Array> = {};
  for (const name of (await readdir(dir)).sort()) files[name] = await readFile(join(dir, name));
  return files;
}
