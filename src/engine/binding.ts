/**
 * The native engine's binding: its hand-written type (kept in step with native/src/addon/addon.cc)
 * and the loader. Nothing imports this at start-up; the addon loads on first local use, so
 * cloud-only users never need it.
 */
import { existsSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  DisposedError,
  EngineError,
  type ErrorCode,
  ModelFormatError,
  type SourceLocation,
  TunekitError,
  ValidationError,
} from "../core/errors.js";

export type NativeDType = "F32" | "F16" | "BF16";
export type KernelPath = "scalar" | "avx2" | "avx512";
/** The type matrix products take their inputs in: "f32", or "bf16" (bf16 inputs, fp32 sums; AVX-512 BF16 only). */
export type ComputeDtype = "f32" | "bf16";

export interface NativeConfig {
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  vocabSize: number;
  maxPositions: number;
  rmsNormEps: number;
  tieWordEmbeddings: boolean;
  attentionBias: boolean;
  /** RoPE frequencies (head_dim / 2), with any rope_scaling applied. */
  invFreq: Float32Array;
  attentionScaling: number;
}

export interface NativeTensor {
  name: string;
  /** Index into `files`. */
  file: number;
  /** Byte offset from the start of the file. */
  offset: number;
  bytes: number;
  dtype: NativeDType;
  shape: number[];
}

export interface NativeLoadSpec {
  config: NativeConfig;
  files: string[];
  tensors: NativeTensor[];
  options: {
    quantization: "none" | "nf4";
    doubleQuant?: boolean;
    computeDtype?: ComputeDtype;
    threads?: number;
    cpu?: KernelPath | "";
  };
}

export interface NativeGenerateOptions {
  maxTokens: number;
  temperature: number;
  topK: number;
  topP: number;
  seed: number;
  stopTokens: Int32Array;
  collectLogits?: boolean;
  /** Apply the attached LoRA adapters (generate only; a batch's sequences name theirs). Default true. */
  adapter?: boolean;
  /** ≥ 0: each token's log-probability and this many most likely alternatives (batches only). */
  topLogprobs?: number;
}

/**
 * Which adapters a call runs through: true (or undefined) the attached ones, false or null none, or a
 * `NativeLoraSet` this model made.
 */
export type NativeAdapter = boolean | null | NativeLoraSet;

/** A set of adapters held apart from the attached one (model.createLora); many can share one base. */
export interface NativeLoraSet {
  readonly __nativeLoraSet?: never;
}

/** What one step did to one sequence of a batch. */
export interface NativeStepEvent {
  id: number;
  /** The new token (absent when a stop or cancel request ended the sequence). */
  tokenId?: number;
  /** Its log-softmax under the raw logits, with topLogprobs ≥ 0. */
  logprob?: number;
  /** The most likely tokens and their log-probabilities, best first (topLogprobs > 0). */
  topIds?: Int32Array;
  topLogprobs?: Float32Array;
  /** The step's logits (collectLogits). */
  logits?: Float32Array;
  /** Set when the sequence ended at this step. */
  finishReason?: "stop" | "length" | "abort";
}

/**
 * Continuous batching: sequences join (add) and leave between steps; each step decodes one token of
 * every running sequence (a new one's whole prompt) as one batch, each through its own adapters.
 */
export interface NativeBatch {
  /** Queues a sequence for the next step; its id. Throws on a bad prompt. */
  add(inputIds: Int32Array, options: NativeGenerateOptions, adapter?: NativeAdapter): number;
  /** Ends a sequence at the next step with "stop" (a stop string) … */
  stop(id: number): void;
  /** … or "abort". */
  cancel(id: number): void;
  /** One step (one at a time); if it rejects, every sequence is dropped. */
  step(): Promise<NativeStepEvent[]>;
  /** Sequences added and not yet reported finished. */
  size(): number;
}

export interface NativeGeneration {
  tokenIds: Int32Array;
  finishReason: "stop" | "length" | "abort";
  logits?: Float32Array;
}

export interface NativeWeightBytes {
  linear: number;
  embedding: number;
  head: number;
  norm: number;
}

/** One LoRA adapter as the engine takes and gives it. */
export interface NativeLora {
  layer: number;
  projection: string;
  rank: number;
  scale: number;
  a: Float32Array;
  b: Float32Array;
}

/** AdamW's step count and moments, and the dropout generator's state (4 hex words). */
export interface NativeOptimizerState {
  step: number;
  random: string[];
  moments: {
    layer: number;
    projection: string;
    expAvgA: Float32Array;
    expAvgB: Float32Array;
    expAvgSqA: Float32Array;
    expAvgSqB: Float32Array;
  }[];
}

export interface NativeModel {
  logits(inputIds: Int32Array, adapter?: NativeAdapter): Promise<Float32Array>;
  /** `correct`: labelled tokens whose first argmax is the label. */
  loss(
    inputIds: Int32Array,
    labels: Int32Array,
    adapter?: NativeAdapter,
    sequenceLengths?: Int32Array,
  ): Promise<{ loss: number; tokens: number; correct: number }>;
  /** Replaces every adapter (null: none). */
  setLora(adapters: NativeLora[] | null): void;
  getLora(): NativeLora[];
  /** The same entries as setLora, held apart instead of attached. */
  createLora(adapters: NativeLora[]): NativeLoraSet;
  createBatch(): NativeBatch;
  /** Mean loss of a packed batch and its gradients for every LoRA A and B (no dropout). */
  lossAndGradients(
    inputIds: Int32Array,
    labels: Int32Array,
    sequenceLengths: Int32Array,
    checkpointing?: boolean,
  ): Promise<{ loss: number; tokens: number; gradients: Omit<NativeLora, "rank" | "scale">[] }>;
  /** Adds the gradients of the summed token loss (with dropout) to the buffers; the batch's mean loss. */
  forwardBackward(
    inputIds: Int32Array,
    labels: Int32Array,
    sequenceLengths: Int32Array,
    dropout: number,
    checkpointing?: boolean,
  ): Promise<{ loss: number; tokens: number }>;
  optimizerStep(options: {
    learningRate: number;
    weightDecay: number;
    beta1: number;
    beta2: number;
    eps: number;
    maxGradNorm: number;
  }): Promise<{ gradNorm: number }>;
  getOptimizerState(): NativeOptimizerState;
  setOptimizerState(state: NativeOptimizerState): void;
  seedDropout(seed: number): void;
  /** W + scale · B A of one projection, [out × in], the base dequantized. */
  mergedWeight(layer: number, projection: string): Promise<Float32Array>;
  generate(
    inputIds: Int32Array,
    options: NativeGenerateOptions,
    onToken?: (tokenId: number) => void,
    cancel?: NativeCancelToken,
  ): Promise<NativeGeneration>;
  /** Several prompts decoded together; prompt i samples with seed + i. */
  generate(
    inputIds: Int32Array[],
    options: NativeGenerateOptions,
    onToken?: (index: number, tokenId: number) => void,
    cancel?: NativeCancelToken,
  ): Promise<NativeGeneration[]>;
  weightBytes(): NativeWeightBytes;
  info(): { kernels: KernelPath; computeDtype: ComputeDtype; threads: number };
  dispose(): void;
}

export interface NativeCancelToken {
  /** Ends the whole generation (finishReason "abort"). */
  cancel(): void;
  /** Ends sequence `index` of a batch (finishReason "stop"). */
  stop(index: number): void;
}

export interface NativeNF4 {
  packed: Uint8Array;
  absmax: Float32Array;
  blockSize: number;
  length: number;
  nested?: { offset: number; codes: Uint8Array; scales: Float32Array; blockSize: number };
}

export interface NativeBinding {
  /** Every code the engine's errors carry (native/src/util/error.h). */
  errorCodes: string[];
  loadModel(spec: NativeLoadSpec): Promise<NativeModel>;
  CancelToken: new () => NativeCancelToken;
  cpuFeatures(): { avx2: boolean; avx512: boolean };
  quantizeNF4(values: Float32Array, blockSize: number, doubleQuant: boolean): NativeNF4;
  dequantizeNF4(packed: Uint8Array, absmax: Float32Array, blockSize: number, length: number): Float32Array;
  nf4DynamicMap(): Float32Array;
  /** The keep-scales of dropout mask elements [first, first + count) keyed `key`, as training draws them. */
  dropoutMask(key: bigint, first: number, count: number, p: number, kernels: string): Float32Array;
  /**
   * The engine's blocked matrix products alone (benchmarks, tests): "forward" y [m × n] = a · wᵀ,
   * "input-gradient" dx [m × k] = a [m × n] · w; w [n × k] as float32 or BF16 bits. The fastest of `repeat` runs.
   * `compute` "bf16": bf16 inputs, fp32 sums, where the kernels have them (else fp32; `compute` in the result says).
   */
  matmul(
    form: "forward" | "input-gradient",
    m: number,
    n: number,
    k: number,
    a: Float32Array,
    w: Float32Array | Uint16Array,
    kernels: string,
    threads: number,
    repeat: number,
    compute?: ComputeDtype,
  ): { out: Float32Array; seconds: number; compute: ComputeDtype };
}

/** The package root: the nearest folder above this module whose package.json is tunekit's. */
function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const manifest = join(dir, "package.json");
    if (existsSync(manifest)) {
      try {
        if (JSON.parse(readFileSync(manifest, "utf8")).name === "tunekit") return dir;
      } catch {
        // not a readable manifest: keep looking
      }
    }
    const parent = dirname(dir);
    if (parent === dir) throw new EngineError("engine_unavailable", "cannot find tunekit's package folder");
    dir = parent;
  }
}

/** Where the loader looks, in order: a local build, then the prebuilt binary for this platform. */
export function bindingCandidates(root = packageRoot()): string[] {
  return [
    join(root, "native", "build", "Release", "tunekit.node"),
    join(root, "prebuilds", `${process.platform}-${process.arch}`, "tunekit.node"),
  ];
}

let cached: NativeBinding | undefined;

/** Loads the native engine once; throws an `EngineError` that says what is missing when it cannot. */
export function loadBinding(): NativeBinding {
  cached ??= loadBindingFrom(bindingCandidates());
  return cached;
}

/** Loads the first of `candidates` that exists and loads; else explains what to install. */
export function loadBindingFrom(candidates: string[]): NativeBinding {
  const require = createRequire(import.meta.url);
  const failures: string[] = [];
  for (const path of candidates) {
    if (!existsSync(path)) continue;
    try {
      return require(path) as NativeBinding;
    } catch (error) {
      failures.push(`${path}: ${(error as Error).message}`);
    }
  }
  const platform = `${process.platform}-${process.arch}`;
  throw new EngineError(
    "engine_unavailable",
    [
      failures.length
        ? `tunekit's native engine did not load:\n  ${failures.join("\n  ")}`
        : `tunekit's native engine is not built for ${platform} (looked for ${candidates.join(" and ")}).`,
      "Build it with `npm rebuild tunekit` (or `npm run build:native` in a clone). That needs a C++17 compiler",
      "(g++ 9+ or clang 10+; Xcode command-line tools on macOS; Visual Studio Build Tools on Windows), make,",
      "Python 3 and Node's headers (node-gyp downloads them, or set npm_config_nodedir).",
    ].join("\n"),
  );
}

/** The SIMD paths this CPU runs, best last; `scalar` always. */
export function availableKernels(): KernelPath[] {
  const features = loadBinding().cpuFeatures();
  return [
    "scalar",
    ...(features.avx2 ? (["avx2"] as const) : []),
    ...(features.avx512 ? (["avx512"] as const) : []),
  ];
}

/** `TUNEKIT_CPU` checked: a forced kernel path, or "" for the best the CPU has. */
export function kernelPathFromEnv(env: NodeJS.ProcessEnv = process.env): KernelPath | "" {
  const value = env.TUNEKIT_CPU?.trim().toLowerCase();
  if (!value) return "";
  if (value === "scalar" || value === "avx2" || value === "avx512") return value;
  throw new ValidationError(
    "invalid_argument",
    `TUNEKIT_CPU must be scalar, avx2 or avx512, not "${env.TUNEKIT_CPU}"`,
  );
}

/** The codes the engine sets on its errors (`error.code`), each an `ErrorCode`, and the class it means. */
const NATIVE_ERRORS = {
  invalid_argument: ValidationError,
  token_out_of_range: ValidationError,
  context_length_exceeded: ValidationError,
  no_adapter: ValidationError,
  shape_mismatch: ModelFormatError,
  missing_tensor: ModelFormatError,
  bad_safetensors: ModelFormatError,
  bad_config: ModelFormatError,
  bad_training_state: ModelFormatError,
  file_not_found: ModelFormatError,
  read_failed: ModelFormatError,
  disposed: DisposedError,
  unsupported_cpu: EngineError,
  out_of_memory: EngineError,
  engine_failed: EngineError,
} satisfies Partial<Record<ErrorCode, typeof TunekitError>>;

export type NativeErrorCode = keyof typeof NATIVE_ERRORS;

/** Whether `code` is one the engine sets. */
export function isNativeErrorCode(code: unknown): code is NativeErrorCode {
  return typeof code === "string" && Object.hasOwn(NATIVE_ERRORS, code);
}

/**
 * What the engine threw or rejected with, as the tunekit error of the code the engine set on it (a
 * tunekit error passes through). An error without a known code is the engine's own failure.
 */
export function fromNative(error: unknown, location?: SourceLocation): unknown {
  if (TunekitError.isInstance(error)) return error;
  const code = (error as { code?: unknown } | null)?.code;
  const message = error instanceof Error ? error.message : String(error);
  const known = isNativeErrorCode(code) ? code : "engine_failed";
  return new NATIVE_ERRORS[known](known, message, { cause: error, ...(location ? { location } : {}) });
}

/** Runs a call into the engine (sync or async), turning what it throws into tunekit errors. */
export async function callNative<T>(body: () => T | Promise<T>, location?: SourceLocation): Promise<T> {
  try {
    return await body();
  } catch (error) {
    throw fromNative(error, location);
  }
}

/** `callNative` for the engine's synchronous calls. */
export function callNativeSync<T>(body: () => T, location?: SourceLocation): T {
  try {
    return body();
  } catch (error) {
    throw fromNative(error, location);
  }
}
