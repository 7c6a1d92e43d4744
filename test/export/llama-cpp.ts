/**
 * llama.cpp itself, through node-llama-cpp 3.21.1 and its prebuilt CPU build, for the GGUF export
 * tests. It is installed apart from tunekit's own dependencies (its GPU builds are hundreds of MB):
 * `npm install --prefix test/llama-cpp --omit=optional`. Where it is absent, the tests that need it
 * skip and say so.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { ROOT } from "../helpers.js";

const ENTRY = join(ROOT, "test/llama-cpp/node_modules/node-llama-cpp/dist/index.js");
export const HAS_LLAMA_CPP = existsSync(ENTRY);
if (!HAS_LLAMA_CPP)
  console.warn(
    "node-llama-cpp is not installed: the llama.cpp tests of the GGUF export are skipped (npm install --prefix test/llama-cpp --omit=optional)",
  );

// Types of the parts used here, so that the tests compile without the package installed.
export interface LlamaModel {
  tokenize(text: string, specialTokens?: boolean): number[];
  detokenize(tokens: readonly number[]): string;
  createContext(options: Record<string, unknown>): Promise<LlamaContext>;
  dispose(): Promise<void>;
}
interface LlamaContext {
  getSequence(): LlamaSequence;
  dispose(): Promise<void>;
}
interface LlamaSequence {
  evaluate(
    tokens: number[],
    options: Record<string, unknown>,
  ): AsyncGenerator<number, void, number | undefined>;
  evaluateWithMetadata(
    tokens: number[],
    metadata: { probabilities: true },
    options: Record<string, unknown>,
  ): AsyncGenerator<{ token: number; probabilities: Map<number, number> }, void, number | undefined>;
}
interface Llama {
  loadModel(options: { modelPath: string }): Promise<LlamaModel>;
}

let llama: Promise<Llama> | undefined;

/** The llama.cpp runtime (loaded once). */
export function getLlama(): Promise<Llama> {
  llama ??= import(pathToFileURL(ENTRY).href).then((module) =>
    module.getLlama({ gpu: false, build: "never", logLevel: "error" }),
  );
  return llama;
}

/** Runs `use` with the model loaded, disposing it after. */
export async function withModel<T>(path: string, use: (model: LlamaModel) => Promise<T>): Promise<T> {
  const model = await (await getLlama()).loadModel({ modelPath: path });
  try {
    return await use(model);
  } finally {
    await model.dispose();
  }
}

/**
 * Context options: two threads (llama.cpp's default count hangs on these 2-core machines), an F32
 * key-value cache and no flash attention (the default F16 cache and flash attention round keys and
 * values to F16: 1e-2 differences in log-probabilities on these random models, against 1e-5
 * without), a LoRA file.
 */
function contextOptions(lora?: string): Record<string, unknown> {
  return {
    contextSize: 512,
    threads: 2,
    experimentalKvCacheKeyType: "F32",
    experimentalKvCacheValueType: "F32",
    flashAttention: false,
    ...(lora ? { lora } : {}),
  };
}

/** `count` greedy tokens after `prompt` (token ids; no BOS is added), with a GGUF LoRA adapter if given. */
export async function greedy(
  model: LlamaModel,
  prompt: number[],
  count: number,
  lora?: string,
): Promise<number[]> {
  const context = await model.createContext(contextOptions(lora));
  try {
    const out: number[] = [];
    for await (const token of context.getSequence().evaluate(prompt, { temperature: 0 })) {
      out.push(token);
      if (out.length >= count) break;
    }
    return out;
  } finally {
    await context.dispose();
  }
}

/**
 * The log-probabilities llama.cpp gives each next token after every prefix of `tokens` (the first
 * prefix is `tokens[0]` alone): rows of the vocabulary's size, one per position but the last.
 * Temperature 0 makes node-llama-cpp report the plain softmax of the logits.
 */
export async function logProbabilities(
  model: LlamaModel,
  tokens: number[],
  vocabSize: number,
  lora?: string,
): Promise<Float64Array[]> {
  const context = await model.createContext(contextOptions(lora));
  try {
    const rows: Float64Array[] = [];
    const run = context
      .getSequence()
      .evaluateWithMetadata(tokens.slice(0, 1), { probabilities: true }, { temperature: 0 });
    let result = await run.next();
    for (let position = 1; position < tokens.length && !result.done; position++) {
      const row = new Float64Array(vocabSize).fill(Number.NEGATIVE_INFINITY);
      for (const [token, probability] of result.value.probabilities) row[token] = Math.log(probability);
      rows.push(row);
      result = await run.next(tokens[position]);
    }
    await run.return();
    return rows;
  } finally {
    await context.dispose();
  }
}

/** log-softmax of each row of `logits` ([positions × vocab]). */
export function logSoftmax(logits: ArrayLike<number>, vocabSize: number): Float64Array[] {
  const rows: Float64Array[] = [];
  for (let start = 0; start < logits.length; start += vocabSize) {
    let max = Number.NEGATIVE_INFINITY;
    for (let index = 0; index < vocabSize; index++) max = Math.max(max, logits[start + index] as number);
    let sum = 0;
    for (let index = 0; index < vocabSize; index++) sum += Math.exp((logits[start + index] as number) - max);
    const norm = max + Math.log(sum);
    const row = new Float64Array(vocabSize);
    for (let index = 0; index < vocabSize; index++) row[index] = (logits[start + index] as number) - norm;
    rows.push(row);
  }
  return rows;
}

/**
 * The largest difference of log-probabilities over the tokens both sides give some probability
 * (llama.cpp reports those above a floor), and the positions compared.
 */
export function maxLogProbDifference(a: Float64Array[], b: Float64Array[], floor = -12): number {
  let worst = 0;
  for (let position = 0; position < Math.min(a.length, b.length); position++) {
    const left = a[position] as Float64Array;
    const right = b[position] as Float64Array;
    for (let token = 0; token < left.length; token++) {
      const x = left[token] as number;
      const y = right[token] as number;
      if (x < floor && y < floor) continue;
      worst = Math.max(worst, Math.abs(x - y));
    }
  }
  return worst;
}
