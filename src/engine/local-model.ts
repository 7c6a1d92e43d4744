/**
 * `LocalModel`: a Hugging Face model folder loaded into the native engine, with its tokenizer and
 * chat template. Every heavy call runs off the JS thread; generation streams tokens as they come.
 */
import { createHash, randomInt } from "node:crypto";
import { mkdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import type {
  AnswerLoss,
  ChatCapabilities,
  ChatOptions,
  ChatResult,
  ChatStream,
  ChatTarget,
} from "../core/chat.js";
import { DisposedError, ModelFormatError, ValidationError } from "../core/errors.js";
import { writeFileAtomically, writeJsonAtomically } from "../core/files.js";
import type { ChatMessage } from "../data/example.js";
import {
  type ComputeDtype,
  callNative,
  callNativeSync,
  fromNative,
  type KernelPath,
  kernelPathFromEnv,
  loadBinding,
  type NativeAdapter,
  type NativeDType,
  type NativeLora,
  type NativeLoraSet,
  type NativeModel,
  type NativeStepEvent,
  type NativeTensor,
} from "./binding.js";
import { type ChatFormat, ChatRenderer, templateMessage } from "./chat-template.js";
import { type ModelConfig, nativeConfig, readModelConfig } from "./config.js";
import { DecodeLoop, type DecodeStats } from "./decode-loop.js";
import { decodeFloats } from "./dtype.js";
import type { DownloadProgressEvent } from "./hub.js";
import { LocalModelView } from "./local-chat.js";
import {
  initLora,
  type LoraConfig,
  type LoraOptions,
  loraConfig,
  type Projection,
  peftKey,
  readAdapter,
  writeAdapter,
} from "./lora.js";
import { type MergeOptions, mergeAndSave } from "./merge.js";
import { modelFolder } from "./model-source.js";
import { readModelTensors, readSafetensorsHeader, writeSafetensors } from "./safetensors.js";
import { LocalTokenizer, StreamDecoder, type TemplateMessage } from "./tokenizer.js";

export type Quantization = "none" | "nf4";

/** Typed progress of `LocalModel.load`. */
export type LoadProgressEvent =
  | DownloadProgressEvent
  | { type: "load-start"; path: string; tensors: number; bytes: number }
  | { type: "load-done"; path: string; seconds: number };

export interface LoadOptions {
  /** Hub models: branch, tag or commit. Default "main". */
  revision?: string;
  /** Hub models: the cache folder. Default: the standard HF cache (HF_HUB_CACHE, HF_HOME/hub, ~/.cache/huggingface/hub). */
  cacheDir?: string;
  /** Hub models: an access token for gated or private models. Default: HF_TOKEN. */
  accessToken?: string;
  /** Hub models: the Hub's address. Default https://huggingface.co (or HF_ENDPOINT). */
  hubUrl?: string;
  /** Hub models: the fetch to use (tests pass a mocked one). */
  fetch?: typeof fetch;
  /** "nf4" stores the linear weights in 4 bits as bitsandbytes does. Default "none" (the source dtype). */
  quantization?: Quantization;
  /** NF4 only: quantize the absmax values again (bitsandbytes' double quantization). Default false. */
  doubleQuant?: boolean;
  /**
   * The type the frozen weights' matrix products take their inputs in (QLoRA's
   * `bnb_4bit_compute_dtype`): "bf16" rounds activations and weights to bfloat16 and sums in fp32
   * (AVX-512 BF16's `vdpbf16ps`, about 1.7× the fp32 products' speed); norms, attention, the loss,
   * LoRA's A and B, gradients and the optimizer stay fp32. CPUs without AVX-512 BF16 compute in fp32
   * (`engine.computeDtype` says which ran). Default "f32". See docs/performance.md for its measured effect.
   */
  computeDtype?: ComputeDtype;
  /** Compute threads. Default: all hardware threads. */
  threads?: number;
  /** Forces a kernel path; default `TUNEKIT_CPU`, else the best this CPU runs. */
  kernels?: KernelPath;
  signal?: AbortSignal;
  onProgress?: (event: LoadProgressEvent) => void;
}

/**
 * What to generate from: a prompt, chat messages (rendered by the model's chat renderer with the
 * generation prompt: see `chatFormat`), or ids.
 */
export type GenerateInput = string | Array<ChatMessage | TemplateMessage> | { inputIds: ArrayLike<number> };

export interface GenerateOptions {
  /** New tokens at most. Default: generation_config.json's max_new_tokens, else 256. */
  maxTokens?: number;
  /** 0 is greedy. Default: generation_config.json's when it samples, else 0. */
  temperature?: number;
  /** Keep the k most likely tokens (0 = off). Default: generation_config.json's when it samples, else 0. */
  topK?: number;
  /** Nucleus sampling (1 = off). Default: generation_config.json's when it samples, else 1. */
  topP?: number;
  /** Seed of the sampler; the same seed gives the same text. Default: random. */
  seed?: number;
  /**
   * Texts that end generation; the text stops before them (they may span tokens). Chat messages add
   * the template's own (`chatFormat.stopStrings`).
   */
  stop?: string[];
  /**
   * Token ids that end generation. Default: every eos id of generation_config.json and config.json,
   * and for chat messages the template's end-of-turn token (`chatFormat.stopTokens`).
   */
  stopTokens?: number[];
  /** Also return the logits each new token was chosen from (`GenerateResult.logits`). Default false. */
  returnLogits?: boolean;
  /**
   * Also report each new token's log-probability under the model's own logits, before temperature,
   * top-k and top-p (`GenerateResult.logprobs`, `StreamChunk.logprobs`). Default false.
   */
  logprobs?: boolean;
  /** With `logprobs`: this many most likely tokens at each step as well (0–20). Default 0. */
  topLogprobs?: number;
  /**
   * Which adapter answers: true (the default) the attached one when there is one, false none, or a
   * resident adapter (`openAdapter`).
   */
  adapter?: AdapterChoice;
  signal?: AbortSignal;
}

/** The adapter a call runs through: the attached one (true), none (false), or a resident one. */
export type AdapterChoice = boolean | ResidentAdapter;

/** A token's log-probability and, with `topLogprobs`, the most likely tokens at its step, best first. */
export interface TokenLogprobIds {
  tokenId: number;
  logprob: number;
  top?: Array<{ tokenId: number; logprob: number }>;
}

export interface GenerateResult {
  text: string;
  /** The generated ids only (not the prompt). */
  tokenIds: number[];
  finishReason: "stop" | "length" | "abort";
  promptTokens: number;
  /** With `returnLogits`: [tokenIds.length × vocab], the distribution each new token was chosen from. */
  logits?: Float32Array;
  /** With `logprobs`: one entry per token of `tokenIds`. */
  logprobs?: TokenLogprobIds[];
}

export interface StreamChunk {
  tokenId: number;
  /** The text this token completes; "" while a multi-byte character is still incomplete. */
  text: string;
  /** With `logprobs`: this token's. */
  logprobs?: TokenLogprobIds;
}

/**
 * A PEFT adapter held beside others on one loaded base (`LocalModel.openAdapter`): the frozen weights
 * are shared, and requests on different adapters are decoded in one batch.
 */
export class ResidentAdapter {
  /** The adapter folder. */
  readonly dir: string;
  readonly config: LoraConfig;
  /** Content hash of its configuration and weights. */
  readonly hash: string;
  /** Its `chat_template.jinja`, when it has one. */
  readonly template: string | undefined;
  /** @internal */
  readonly native: NativeLoraSet;
  /** @internal */
  renderer: ChatRenderer | undefined;

  /** @internal */
  constructor(
    dir: string,
    config: LoraConfig,
    hash: string,
    template: string | undefined,
    native: NativeLoraSet,
  ) {
    this.dir = dir;
    this.config = config;
    this.hash = hash;
    this.template = template;
    this.native = native;
  }
}

/** The content hash of an adapter: its configuration and every weight. */
function adapterHash(config: LoraConfig, modules: readonly NativeLora[]): string {
  const hash = createHash("sha256").update(JSON.stringify(config));
  for (const module of modules) {
    hash.update(`${module.layer}.${module.projection}:${module.rank}:${module.scale}`);
    hash.update(new Uint8Array(module.a.buffer, module.a.byteOffset, module.a.byteLength));
    hash.update(new Uint8Array(module.b.buffer, module.b.byteOffset, module.b.byteLength));
  }
  return hash.digest("hex").slice(0, 32);
}

/** What `loss` measures. */
export interface LossResult {
  /** Mean cross-entropy over the labelled tokens (0 when there are none). */
  loss: number;
  /** Labelled tokens. */
  tokens: number;
  /** Labelled tokens the greedy choice predicts. */
  correct: number;
}

export interface WeightBytes {
  linear: number;
  embedding: number;
  head: number;
  norm: number;
  total: number;
}

/** AdamW's settings (PyTorch's names and defaults). */
export interface OptimizerOptions {
  learningRate: number;
  /** Decoupled weight decay. Default 0. */
  weightDecay?: number;
  /** Default 0.9. */
  beta1?: number;
  /** Default 0.999. */
  beta2?: number;
  /** Default 1e-8. */
  eps?: number;
  /** Clip the gradients' total norm to this (0 or absent: no clipping). */
  maxGradNorm?: number;
}

/** How a training pass runs. */
export interface TrainingOptions {
  /**
   * Keep only each block's input and recompute the block in the backward pass: beyond one block's
   * activations, memory holds one hidden state per layer. Default: on from 256 tokens in a batch.
   */
  gradientCheckpointing?: boolean;
}

const CHECKPOINTING_FROM_TOKENS = 256;

function checkpointingFor(tokens: number, options: TrainingOptions): boolean {
  return options.gradientCheckpointing ?? tokens >= CHECKPOINTING_FROM_TOKENS;
}

/** A training batch: a flat stream of one or more sequences. */
export interface TrainingBatch {
  inputIds: ArrayLike<number>;
  /** One per input id; -100 is not trained on. */
  labels: ArrayLike<number>;
  /** Lengths of the packed sequences, summing to the stream's length. Default: one sequence. */
  sequenceLengths?: ArrayLike<number>;
}

/** How many characters at the end of `text` begin one of `stops` (a stop string may be on its way). */
function stopPrefixAtEnd(text: string, stops: readonly string[]): number {
  let longest = 0;
  for (const stop of stops)
    for (let length = Math.min(stop.length - 1, text.length); length > longest; length--)
      if (text.endsWith(stop.slice(0, length))) {
        longest = length;
        break;
      }
  return longest;
}

/** Rows of logits, one per step, as one [steps × vocab] array (undefined when none were kept). */
function joinRows(rows: Float32Array[], vocab: number): Float32Array | undefined {
  if (rows.length === 0) return undefined;
  const joined = new Float32Array(rows.length * vocab);
  for (const [step, row] of rows.entries()) joined.set(row, step * vocab);
  return joined;
}

/** A step event's log-probabilities, when it has them. */
function eventLogprobs(event: NativeStepEvent): TokenLogprobIds | undefined {
  if (event.logprob === undefined || event.tokenId === undefined) return undefined;
  const entry: TokenLogprobIds = { tokenId: event.tokenId, logprob: event.logprob };
  if (event.topIds && event.topLogprobs) {
    const logprobs = event.topLogprobs;
    entry.top = Array.from(event.topIds, (tokenId, index) => ({
      tokenId,
      logprob: logprobs[index] as number,
    }));
  }
  return entry;
}

interface GenerationDefaults {
  maxTokens: number;
  temperature: number;
  topK: number;
  topP: number;
  eosTokenIds: number[];
}

const SUPPORTED_DTYPES = new Set<string>(["F32", "F16", "BF16"]);
/** transformers' name for the chat template saved beside a tokenizer (and so beside an adapter). */
const CHAT_TEMPLATE_FILE = "chat_template.jinja";

/** An adapter folder's `chat_template.jinja`, or undefined when it has none. */
async function readAdapterTemplate(dir: string): Promise<string | undefined> {
  return readFile(join(dir, CHAT_TEMPLATE_FILE), "utf8").catch((error: NodeJS.ErrnoException) => {
    if (error.code === "ENOENT") return undefined;
    throw new ModelFormatError("read_failed", `cannot read the adapter's chat template (${error.message})`, {
      location: { file: join(dir, CHAT_TEMPLATE_FILE) },
      cause: error,
    });
  });
}

async function generationDefaults(dir: string, config: ModelConfig): Promise<GenerationDefaults> {
  let json: Record<string, unknown> = {};
  try {
    json = JSON.parse(await readFile(join(dir, "generation_config.json"), "utf8"));
  } catch {
    // optional file
  }
  const sample = json.do_sample === true;
  const number = (value: unknown, fallback: number) => (typeof value === "number" ? value : fallback);
  const eos = json.eos_token_id;
  const ids = new Set<number>(config.eosTokenIds);
  for (const id of Array.isArray(eos) ? eos : [eos]) if (typeof id === "number") ids.add(id);
  return {
    maxTokens: number(json.max_new_tokens, 256),
    temperature: sample ? number(json.temperature, 1) : 0,
    topK: sample ? number(json.top_k, 50) : 0,
    topP: sample ? number(json.top_p, 1) : 1,
    eosTokenIds: [...ids],
  };
}

/**
 * How the engine draws dropout masks, recorded in each training state: one draw of the generator keys
 * a mask, its elements come from splitmix64 by counter. States written before (one draw per element)
 * lack it; resuming one continues with other masks than an uninterrupted run would have drawn.
 */
export const DROPOUT_MASKS = "splitmix64-counter";

/**
 * A local Llama-family model in the native engine. It is a `ChatTarget` (its adapter on, when one is
 * attached); `view({ adapter: false })` is the base model's.
 */
export class LocalModel implements ChatTarget {
  readonly specificationVersion = "v2" as const;
  readonly provider = "local";
  readonly path: string;
  readonly config: ModelConfig;
  readonly tokenizer: LocalTokenizer;
  readonly quantization: Quantization;
  #native: NativeModel | undefined;
  readonly #defaults: GenerationDefaults;
  #lora: LoraConfig | undefined;
  /** The chat template saved with the loaded adapter (`chat_template.jinja`), if it had one. */
  #adapterTemplate: string | undefined;
  #renderer: ChatRenderer | undefined;
  /** The model's own template (no adapter's), for resident adapters without one. */
  #ownRenderer: ChatRenderer | undefined;
  /** Every generation on this model runs in this loop, batched with the others. */
  #loop: DecodeLoop | undefined;
  /** Counts changes of the adapter's weights; the adapter's content hash is kept for one value of it. */
  #loraVersion = 0;
  #adapterHash: { version: number; hash: string } | undefined;

  private constructor(
    path: string,
    config: ModelConfig,
    tokenizer: LocalTokenizer,
    quantization: Quantization,
    native: NativeModel,
    defaults: GenerationDefaults,
  ) {
    this.path = path;
    this.config = config;
    this.tokenizer = tokenizer;
    this.quantization = quantization;
    this.#native = native;
    this.#defaults = defaults;
  }

  /**
   * Loads a model folder (`config.json`, safetensors weights, `tokenizer.json`), or a Hugging Face Hub
   * model id (`"HuggingFaceTB/SmolLM2-135M-Instruct"`) downloaded into the standard HF cache first
   * (offline, the cached snapshot is used).
   */
  static async load(pathOrHubId: string, options: LoadOptions = {}): Promise<LocalModel> {
    const quantization = options.quantization ?? "none";
    if (quantization !== "none" && quantization !== "nf4")
      throw new ValidationError(
        "invalid_argument",
        `quantization must be "none" or "nf4", not ${JSON.stringify(quantization)}`,
      );
    if (options.threads !== undefined && !(Number.isInteger(options.threads) && options.threads > 0))
      throw new ValidationError("invalid_argument", "threads must be a positive integer");
    const computeDtype = options.computeDtype ?? "f32";
    if (computeDtype !== "f32" && computeDtype !== "bf16")
      throw new ValidationError(
        "invalid_argument",
        `computeDtype must be "f32" or "bf16", not ${JSON.stringify(computeDtype)}`,
      );
    const path = await modelFolder(pathOrHubId, {
      ...(options.revision !== undefined ? { revision: options.revision } : {}),
      ...(options.cacheDir !== undefined ? { cacheDir: options.cacheDir } : {}),
      ...(options.accessToken !== undefined ? { accessToken: options.accessToken } : {}),
      ...(options.hubUrl !== undefined ? { hubUrl: options.hubUrl } : {}),
      ...(options.fetch !== undefined ? { fetch: options.fetch } : {}),
      ...(options.signal !== undefined ? { signal: options.signal } : {}),
      ...(options.onProgress !== undefined ? { onProgress: options.onProgress } : {}),
    });
    return LocalModel.#loadFolder(path, quantization, options);
  }

  static async #loadFolder(
    dir: string,
    quantization: Quantization,
    options: LoadOptions,
  ): Promise<LocalModel> {
    options.signal?.throwIfAborted();
    const started = performance.now();
    const config = await readModelConfig(join(dir, "config.json"));
    const tensors = await readModelTensors(dir);
    const tokenizer = await LocalTokenizer.fromFolder(dir);
    const defaults = await generationDefaults(dir, config);
    options.signal?.throwIfAborted();

    const files: string[] = [];
    const nativeTensors: NativeTensor[] = [];
    let bytes = 0;
    for (const tensor of tensors.values()) {
      if (!/^(model\.|lm_head\.)/.test(tensor.name)) continue;
      if (!SUPPORTED_DTYPES.has(tensor.dtype))
        throw new ModelFormatError(
          "unsupported_dtype",
          `dtype ${tensor.dtype} (tunekit reads F32, F16 and BF16)`,
          {
            location: { file: tensor.file, path: tensor.name },
          },
        );
      let file = files.indexOf(tensor.file);
      if (file < 0) file = files.push(tensor.file) - 1;
      nativeTensors.push({ ...tensor, dtype: tensor.dtype as NativeDType, file });
      bytes += tensor.bytes;
    }
    options.onProgress?.({ type: "load-start", path: dir, tensors: nativeTensors.length, bytes });
    const binding = loadBinding();
    let native: NativeModel;
    try {
      native = await binding.loadModel({
        config: nativeConfig(config, join(dir, "config.json")),
        files,
        tensors: nativeTensors,
        options: {
          quantization,
          doubleQuant: options.doubleQuant ?? false,
          computeDtype: options.computeDtype ?? "f32",
          threads: options.threads ?? 0,
          cpu: options.kernels ?? kernelPathFromEnv(),
        },
      });
    } catch (error) {
      throw fromNative(error, { file: dir });
    }
    options.onProgress?.({ type: "load-done", path: dir, seconds: (performance.now() - started) / 1000 });
    return new LocalModel(dir, config, tokenizer, quantization, native, defaults);
  }

  // ---- ChatTarget: the model with its adapter on -----------------------------------------------

  /** The model folder. */
  get modelId(): string {
    return this.path;
  }

  /** The model folder, quantization, template and the attached adapter's content hash. */
  get identity(): string {
    return this.identityFor({ adapter: true });
  }

  get capabilities(): ChatCapabilities {
    return this.view().capabilities;
  }

  /** A reply to chat messages (see `ChatTarget`), rendered with `chatFormat`'s template. */
  complete(messages: ChatMessage[], options?: ChatOptions): Promise<ChatResult> {
    return this.view().complete(messages, options);
  }

  completeStream(messages: ChatMessage[], options?: ChatOptions): ChatStream {
    return this.view().completeStream(messages, options);
  }

  /** Every conversation decoded as one batch; conversation i samples with `seed + i`. */
  completeBatch(conversations: ChatMessage[][], options?: ChatOptions): Promise<ChatResult[]> {
    return this.view().completeBatch(conversations, options);
  }

  /** The loss of `expected` as the assistant's reply, as training would score it. */
  answerLoss(
    messages: ChatMessage[],
    expected: string,
    options?: { signal?: AbortSignal },
  ): Promise<AnswerLoss> {
    return this.view().answerLoss(messages, expected, options);
  }

  /**
   * The model as a chat target with the adapter on (default: applied when attached) or off (the base
   * model); `provider` and `modelId` name it as the caller knows it.
   */
  view(options: { adapter?: AdapterChoice; provider?: string; modelId?: string } = {}): LocalModelView {
    return new LocalModelView(this, { ...options, adapter: options.adapter ?? true });
  }

  /** The kernel path, the compute type of the matrix products (see `LoadOptions.computeDtype`) and the thread count. */
  get engine(): { kernels: KernelPath; computeDtype: ComputeDtype; threads: number } {
    return this.#live().info();
  }

  #live(): NativeModel {
    if (!this.#native) throw new DisposedError("disposed", "this LocalModel has been disposed");
    return this.#native;
  }

  #ids(values: ArrayLike<number>, what: string): Int32Array {
    const ids = Int32Array.from(values);
    for (let i = 0; i < ids.length; i++) {
      const id = values[i] as number;
      if (!Number.isInteger(id) || id < 0 || id >= this.config.vocabSize)
        throw new ValidationError(
          "token_out_of_range",
          `${what}[${i}] = ${id} is not a token id in [0, ${this.config.vocabSize})`,
        );
    }
    return ids;
  }

  /**
   * How this model renders conversations: the chat template saved with the loaded adapter, else the
   * model's own, else tunekit's default for a base model; with the template's turn end. Training,
   * generation from messages and the chat targets all render through it.
   */
  get chatRenderer(): ChatRenderer {
    this.#renderer ??= new ChatRenderer(
      this.tokenizer,
      this.#adapterTemplate === undefined
        ? undefined
        : { template: this.#adapterTemplate, source: "adapter" },
    );
    return this.#renderer;
  }

  /** The template in use and what ends a reply in it (`chatRenderer.format`). */
  get chatFormat(): ChatFormat {
    return this.chatRenderer.format;
  }

  /**
   * The renderer a call on `adapter` uses: `chatRenderer` for the attached adapter (or none); for a
   * resident adapter, its own template, else the model's.
   */
  rendererFor(adapter: AdapterChoice = true): ChatRenderer {
    if (!(adapter instanceof ResidentAdapter)) return this.chatRenderer;
    if (adapter.template === undefined) {
      this.#ownRenderer ??= new ChatRenderer(this.tokenizer);
      return this.#ownRenderer;
    }
    adapter.renderer ??= new ChatRenderer(this.tokenizer, { template: adapter.template, source: "adapter" });
    return adapter.renderer;
  }

  /**
   * What ends a chat reply by default: the model's EOS ids and the template's end-of-turn token and
   * text (the template `adapter` renders with).
   */
  chatStops(adapter: AdapterChoice = true): { stopTokens: number[]; stopStrings: string[] } {
    const format = this.rendererFor(adapter).format;
    return {
      stopTokens: [...new Set([...this.#defaults.eosTokenIds, ...format.stopTokens])],
      stopStrings: format.stopStrings,
    };
  }

  /**
   * A stable name of exactly what answers: the model folder, its quantization, the template's hash,
   * and with the adapter on, the adapter's content hash (its configuration and every weight), which
   * changes whenever its weights do.
   */
  identityFor(options: { adapter: AdapterChoice }): string {
    const format = this.rendererFor(options.adapter).format;
    const template = createHash("sha256").update(format.template).digest("hex").slice(0, 16);
    // bf16 products answer differently from fp32 ones; fp32 identities stay as they were.
    const compute = this.engine.computeDtype === "bf16" ? "&compute=bf16" : "";
    const base = `local:${this.path}?quantization=${this.quantization}${compute}&template=${template}`;
    if (options.adapter instanceof ResidentAdapter) return `${base}&adapter=${options.adapter.hash}`;
    if (!options.adapter || this.#lora === undefined) return base;
    if (this.#adapterHash?.version !== this.#loraVersion)
      this.#adapterHash = {
        version: this.#loraVersion,
        hash: adapterHash(this.#lora, this.#live().getLora()),
      };
    return `${base}&adapter=${this.#adapterHash.hash}`;
  }

  /**
   * The token ids an input stands for (chat messages get the template `adapter` renders with and the
   * generation prompt).
   */
  encodeInput(input: GenerateInput, adapter: AdapterChoice = true): number[] {
    if (typeof input === "string") return this.tokenizer.encode(input);
    if (Array.isArray(input))
      return this.tokenizer.encode(
        this.rendererFor(adapter).render(input.map(templateMessage), { addGenerationPrompt: true }).text,
        { addSpecialTokens: false },
      );
    if (input && typeof input === "object" && "inputIds" in input) return Array.from(input.inputIds);
    throw new ValidationError("invalid_argument", "input must be a string, chat messages or { inputIds }");
  }

  /**
   * Logits of every position: a Float32Array of [tokens × vocab]. `adapter` (default: on when one
   * is attached) applies the LoRA adapter.
   */
  async logits(
    inputIds: ArrayLike<number>,
    options: { adapter?: AdapterChoice } = {},
  ): Promise<Float32Array> {
    return this.#call(() =>
      this.#live().logits(this.#ids(inputIds, "inputIds"), this.#adapter(options.adapter)),
    );
  }

  /** The engine's name for an adapter choice. */
  #adapter(adapter: AdapterChoice | undefined): NativeAdapter {
    return adapter instanceof ResidentAdapter ? adapter.native : (adapter ?? true);
  }

  /**
   * Mean next-token cross-entropy as transformers computes it: logits at t predict labels[t + 1],
   * -100 is ignored, and labels default to the inputs. `tokens` counts the labelled positions and
   * `correct` those where the greedy choice (first argmax) is the label: token accuracy is
   * correct / tokens. `sequenceLengths` packs several sequences one after another, as in training:
   * positions restart, attention stays inside each, and no label crosses a boundary.
   */
  async loss(
    inputIds: ArrayLike<number>,
    labels?: ArrayLike<number>,
    options: { adapter?: AdapterChoice; sequenceLengths?: ArrayLike<number> } = {},
  ): Promise<LossResult> {
    const ids = this.#ids(inputIds, "inputIds");
    const target = labels === undefined ? ids : Int32Array.from(labels);
    if (target.length !== ids.length)
      throw new ValidationError(
        "invalid_argument",
        `labels has ${target.length} entries for ${ids.length} input ids`,
      );
    const lengths =
      options.sequenceLengths === undefined ? undefined : Int32Array.from(options.sequenceLengths);
    return this.#call(() => this.#live().loss(ids, target, this.#adapter(options.adapter), lengths));
  }

  /** Generates a completion. */
  async generate(input: GenerateInput, options: GenerateOptions = {}): Promise<GenerateResult> {
    const [result] = await this.generateBatch([input], options);
    return result as GenerateResult;
  }

  /** Generates a completion as an async iterator of tokens and the text each completes. */
  async *stream(
    input: GenerateInput,
    options: GenerateOptions = {},
  ): AsyncGenerator<StreamChunk, GenerateResult> {
    const queue: StreamChunk[] = [];
    let wake: (() => void) | undefined;
    let finished: { result?: GenerateResult; error?: unknown } | undefined;
    // Leaving the loop early (break, return, throw) cancels the generation.
    const controller = new AbortController();
    const forward = () => controller.abort();
    options.signal?.throwIfAborted();
    options.signal?.addEventListener("abort", forward, { once: true });
    this.#runBatch([input], { ...options, signal: controller.signal }, (_, chunk) => {
      queue.push(chunk);
      wake?.();
    }).then(
      (results) => {
        finished = { result: results[0] as GenerateResult };
        wake?.();
      },
      (error: unknown) => {
        finished = { error };
        wake?.();
      },
    );
    try {
      for (;;) {
        const chunk = queue.shift();
        if (chunk) {
          yield chunk;
          continue;
        }
        if (finished) {
          if (finished.error !== undefined) throw finished.error;
          return finished.result as GenerateResult;
        }
        await new Promise<void>((resolve) => {
          wake = resolve;
        });
        wake = undefined;
      }
    } finally {
      options.signal?.removeEventListener("abort", forward);
      if (!finished) controller.abort();
    }
  }

  /**
   * Generates a completion for each input (the guide's `llm.generate(prompts)`), decoding them
   * together: each step runs every unfinished prompt's next token through the model as one batch.
   * Prompt i samples with `seed + i`, so each result is what `generate` gives that prompt with that seed.
   */
  async generateBatch(inputs: GenerateInput[], options: GenerateOptions = {}): Promise<GenerateResult[]> {
    if (!Array.isArray(inputs) || inputs.length === 0)
      throw new ValidationError("invalid_argument", "generateBatch needs a non-empty array of inputs");
    return this.#runBatch(inputs, options, () => undefined);
  }

  /**
   * Runs prompts through the model's decode loop, where they join whatever else is decoding, with
   * stop strings handled here: each token's text is checked as it arrives, and once a stop string
   * appears the sequence is ended before its next token and its text cut before the stop string.
   * Prompt i samples with `seed + i`.
   */
  async #runBatch(
    inputs: GenerateInput[],
    options: GenerateOptions,
    onChunk: (index: number, chunk: StreamChunk) => void,
  ): Promise<GenerateResult[]> {
    const loop = this.#decodeLoop();
    const adapter = options.adapter ?? true;
    const prompts = inputs.map((input, index) => {
      const ids = this.#ids(
        this.encodeInput(input, adapter),
        inputs.length > 1 ? `inputs[${index}]` : "inputIds",
      );
      if (ids.length === 0) throw new ValidationError("invalid_argument", "the prompt has no tokens");
      return ids;
    });
    // Chat messages end where the template ends a turn, besides what the caller asked for.
    const chat = inputs.some((input) => Array.isArray(input));
    const turnEnd = chat ? this.chatStops(adapter) : undefined;
    const sampling = this.#sampling({
      ...options,
      ...(turnEnd && options.stopTokens === undefined ? { stopTokens: turnEnd.stopTokens } : {}),
    });
    const stops = [...new Set([...(options.stop ?? []), ...(turnEnd?.stopStrings ?? [])])].filter(
      (stop) => stop.length > 0,
    );
    const longestStop = Math.max(0, ...stops.map((stop) => stop.length));
    options.signal?.throwIfAborted();
    // One failure ends the prompts of this call that are still decoding.
    const failed = new AbortController();
    const signal = options.signal ? AbortSignal.any([options.signal, failed.signal]) : failed.signal;
    const native = this.#adapter(adapter);
    const runs = prompts.map(async (prompt, index): Promise<GenerateResult> => {
      const decoder = new StreamDecoder(this.tokenizer, prompt);
      const tokenIds: number[] = [];
      const logits: Float32Array[] = [];
      const logprobs: TokenLogprobIds[] = [];
      let text = "";
      /** Characters of `text` handed out in chunks. */
      let emitted = 0;
      let stopped: string | undefined;
      const onEvent = (event: NativeStepEvent): "stop" | undefined => {
        if (event.tokenId === undefined || stopped !== undefined) return undefined;
        const tokenId = event.tokenId;
        tokenIds.push(tokenId);
        if (event.logits) logits.push(event.logits);
        const chunkLogprobs = eventLogprobs(event);
        if (chunkLogprobs) logprobs.push(chunkLogprobs);
        const extra = chunkLogprobs ? { logprobs: chunkLogprobs } : {};
        const before = text.length;
        text += decoder.push(tokenId);
        // Only the new text (and a stop string's length before it) can hold a new match.
        const from = Math.max(0, before - longestStop + 1);
        let cut = -1;
        for (const stop of stops) {
          const at = text.indexOf(stop, from);
          if (at >= 0 && (cut < 0 || at < cut)) cut = at;
        }
        if (cut >= 0) {
          stopped = text.slice(0, cut);
          onChunk(index, { tokenId, text: stopped.slice(emitted), ...extra });
          emitted = stopped.length;
          return "stop";
        }
        // Text that may begin a stop string waits for the next token, unless this token is the last.
        const safe = event.finishReason ? text.length : text.length - stopPrefixAtEnd(text, stops);
        onChunk(index, { tokenId, text: text.slice(emitted, Math.max(emitted, safe)), ...extra });
        emitted = Math.max(emitted, safe);
        return undefined;
      };
      let finishReason: GenerateResult["finishReason"];
      try {
        finishReason = await loop.run({
          inputIds: prompt,
          options: { ...sampling, seed: sampling.seed + index },
          adapter: native,
          signal,
          onEvent,
        });
      } catch (error) {
        failed.abort();
        throw error;
      }
      const result: GenerateResult = {
        text: stopped ?? text,
        tokenIds,
        finishReason: stopped !== undefined ? "stop" : finishReason,
        promptTokens: prompt.length,
      };
      const joined = joinRows(logits, this.config.vocabSize);
      if (joined) result.logits = joined;
      if (sampling.topLogprobs >= 0) result.logprobs = logprobs;
      return result;
    });
    return Promise.all(runs);
  }

  /** The decode loop every generation on this model joins. */
  #decodeLoop(): DecodeLoop {
    const native = this.#live();
    this.#loop ??= new DecodeLoop(native);
    return this.#loop;
  }

  /**
   * The most sequences decoded at once (more wait for a place). Default: no limit; `tunekit serve`
   * sets its `maxBatch`.
   */
  set maxBatch(value: number) {
    if (!(Number.isInteger(value) && value >= 1))
      throw new ValidationError("invalid_argument", `maxBatch must be a whole number >= 1, got ${value}`);
    this.#decodeLoop().maxActive = value;
  }

  /**
   * Sequences decoding now and waiting for a place; the decode steps run so far and the sequences
   * they decoded in all (rows / steps is the mean batch size).
   */
  get decoding(): DecodeStats {
    return this.#loop?.size ?? { running: 0, waiting: 0, steps: 0, rows: 0 };
  }

  #sampling(options: GenerateOptions) {
    const defaults = this.#defaults;
    const maxTokens = options.maxTokens ?? defaults.maxTokens;
    const temperature = options.temperature ?? defaults.temperature;
    const topK = options.topK ?? defaults.topK;
    const topP = options.topP ?? defaults.topP;
    if (!(Number.isInteger(maxTokens) && maxTokens >= 0))
      throw new ValidationError("invalid_argument", "maxTokens must be an integer >= 0");
    if (!(temperature >= 0)) throw new ValidationError("invalid_argument", "temperature must be >= 0");
    if (!(Number.isInteger(topK) && topK >= 0))
      throw new ValidationError("invalid_argument", "topK must be an integer >= 0");
    if (!(topP > 0 && topP <= 1)) throw new ValidationError("invalid_argument", "topP must be in (0, 1]");
    const seed = options.seed ?? randomInt(2 ** 47);
    if (!(Number.isSafeInteger(seed) && seed >= 0))
      throw new ValidationError("invalid_argument", "seed must be an integer >= 0");
    const stopTokens = this.#ids(options.stopTokens ?? defaults.eosTokenIds, "stopTokens");
    const top = options.topLogprobs ?? 0;
    if (!(Number.isInteger(top) && top >= 0 && top <= 20))
      throw new ValidationError("invalid_argument", "topLogprobs must be an integer in [0, 20]");
    return {
      maxTokens,
      temperature,
      topK,
      topP,
      seed,
      stopTokens,
      collectLogits: options.returnLogits ?? false,
      topLogprobs: options.logprobs ? top : -1,
    };
  }

  /** A call into the engine; its errors arrive as tunekit errors of the codes the engine set. */
  #call<T>(body: () => T | Promise<T>): Promise<T> {
    return callNative(body);
  }

  // ---- LoRA -------------------------------------------------------------------------------------

  #shapeOf = (projection: Projection): { in: number; out: number } => {
    const { hiddenSize: hidden, intermediateSize: intermediate, numHeads, numKvHeads, headDim } = this.config;
    switch (projection) {
      case "q_proj":
        return { in: hidden, out: numHeads * headDim };
      case "k_proj":
      case "v_proj":
        return { in: hidden, out: numKvHeads * headDim };
      case "o_proj":
        return { in: numHeads * headDim, out: hidden };
      case "gate_proj":
      case "up_proj":
        return { in: hidden, out: intermediate };
      case "down_proj":
        return { in: intermediate, out: hidden };
    }
  };

  /** The attached adapter's configuration, or undefined. */
  get lora(): LoraConfig | undefined {
    return this.#lora;
  }

  /**
   * Attaches a fresh LoRA adapter to the target projections of every layer (A Kaiming-uniform, B zeros:
   * the model is unchanged until trained), replacing any adapter attached before.
   */
  attachLora(options: LoraOptions = {}): LoraConfig {
    const config = loraConfig(options);
    const native = this.#live();
    callNativeSync(() =>
      native.setLora(initLora(config, this.config.numLayers, this.#shapeOf, options.seed ?? 0)),
    );
    native.seedDropout(options.seed ?? 0);
    this.#lora = config;
    this.#loraVersion++;
    return config;
  }

  /** Removes the adapter (and the chat template it was loaded with). */
  detachLora(): void {
    this.#live().setLora(null);
    this.#lora = undefined;
    this.#setAdapterTemplate(undefined);
    this.#loraVersion++;
  }

  #setAdapterTemplate(template: string | undefined): void {
    if (template === this.#adapterTemplate) return;
    this.#adapterTemplate = template;
    this.#renderer = undefined;
  }

  /** The adapter's tensors keyed by their PEFT names (`base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight`). */
  getLoraWeights(): Map<string, Float32Array> {
    const weights = new Map<string, Float32Array>();
    for (const module of this.#live().getLora()) {
      weights.set(peftKey(module.layer, module.projection as Projection, "A"), module.a);
      weights.set(peftKey(module.layer, module.projection as Projection, "B"), module.b);
    }
    return weights;
  }

  /** Replaces adapter tensors by PEFT name (each must exist and keep its size). */
  setLoraWeights(weights: Map<string, Float32Array> | Record<string, Float32Array>): void {
    const native = this.#live();
    const modules = native.getLora();
    const byKey = new Map<string, { module: NativeLora; matrix: "a" | "b" }>();
    for (const module of modules) {
      byKey.set(peftKey(module.layer, module.projection as Projection, "A"), { module, matrix: "a" });
      byKey.set(peftKey(module.layer, module.projection as Projection, "B"), { module, matrix: "b" });
    }
    const entries = weights instanceof Map ? [...weights] : Object.entries(weights);
    for (const [key, values] of entries) {
      const target = byKey.get(key);
      if (!target) throw new ValidationError("invalid_argument", `no adapter tensor ${key}`);
      if (!(values instanceof Float32Array) || values.length !== target.module[target.matrix].length)
        throw new ValidationError(
          "invalid_argument",
          `${key} needs a Float32Array of ${target.module[target.matrix].length} values`,
        );
      target.module[target.matrix] = values;
    }
    callNativeSync(() => native.setLora(modules));
    this.#loraVersion++;
  }

  /**
   * The mean loss of a batch and its gradients for every LoRA tensor, keyed by PEFT name, with no
   * dropout and nothing updated (for gradient checks, and for bringing your own optimizer). A batch is
   * a flat token stream of one or more sequences (`sequenceLengths`, summing to its length; default
   * one sequence): positions restart and attention stays inside each sequence. Labels follow
   * transformers: the label at t + 1 is predicted at t, -100 is ignored, and a sequence's first
   * label is never predicted.
   */
  async lossAndGradients(
    batch: TrainingBatch,
    options: TrainingOptions = {},
  ): Promise<{ loss: number; tokens: number; gradients: Map<string, Float32Array> }> {
    const [ids, labels, lengths] = this.#batch(batch);
    const checkpointing = checkpointingFor(ids.length, options);
    const result = await this.#call(() => this.#live().lossAndGradients(ids, labels, lengths, checkpointing));
    const gradients = new Map<string, Float32Array>();
    for (const gradient of result.gradients) {
      gradients.set(peftKey(gradient.layer, gradient.projection as Projection, "A"), gradient.a);
      gradients.set(peftKey(gradient.layer, gradient.projection as Projection, "B"), gradient.b);
    }
    return { loss: result.loss, tokens: result.tokens, gradients };
  }

  #batch(batch: TrainingBatch): [Int32Array, Int32Array, Int32Array] {
    if (!this.#lora)
      throw new ValidationError("no_adapter", "no LoRA adapter is attached (attachLora or loadAdapter)");
    const ids = this.#ids(batch.inputIds, "inputIds");
    const labels = Int32Array.from(batch.labels);
    if (labels.length !== ids.length)
      throw new ValidationError(
        "invalid_argument",
        `labels has ${labels.length} entries for ${ids.length} input ids`,
      );
    return [ids, labels, Int32Array.from(batch.sequenceLengths ?? [ids.length])];
  }

  /**
   * Adds the gradients of the batch's summed token loss to the adapter's gradient buffers, with the
   * adapter's dropout active, and returns the batch's mean loss and labelled token count.
   */
  async forwardBackward(
    batch: TrainingBatch,
    options: TrainingOptions = {},
  ): Promise<{ loss: number; tokens: number }> {
    const [ids, labels, lengths] = this.#batch(batch);
    const dropout = this.#lora?.dropout ?? 0;
    const checkpointing = checkpointingFor(ids.length, options);
    return this.#call(() => this.#live().forwardBackward(ids, labels, lengths, dropout, checkpointing));
  }

  /**
   * One AdamW step on the LoRA matrices (fp32 state; PyTorch's AdamW): the gradient buffers are
   * divided by the labelled tokens accumulated since the previous step (so micro-batches add up to
   * one large batch), clipped to `maxGradNorm`, applied, and zeroed. Returns the norm before clipping.
   */
  async optimizerStep(options: OptimizerOptions): Promise<{ gradNorm: number }> {
    const values = {
      learningRate: options.learningRate,
      weightDecay: options.weightDecay ?? 0,
      beta1: options.beta1 ?? 0.9,
      beta2: options.beta2 ?? 0.999,
      eps: options.eps ?? 1e-8,
      maxGradNorm: options.maxGradNorm ?? 0,
    };
    for (const [name, value] of Object.entries(values))
      if (typeof value !== "number" || !Number.isFinite(value) || value < 0)
        throw new ValidationError("invalid_argument", `${name} must be a number >= 0`);
    if (!this.#lora)
      throw new ValidationError("no_adapter", "no LoRA adapter is attached (attachLora or loadAdapter)");
    const result = await this.#call(() => this.#live().optimizerStep(values));
    this.#loraVersion++;
    return result;
  }

  /**
   * Saves what a resumed run needs to continue exactly: the adapter (PEFT files), AdamW's moments
   * (`optimizer.safetensors`), the step count and the dropout generator (`trainer_state.json`, with
   * `extra`'s fields: the trainer records the run's settings there).
   */
  async saveTrainingState(dir: string, extra: Record<string, unknown> = {}): Promise<void> {
    await this.saveAdapter(dir);
    const state = this.#live().getOptimizerState();
    const tensors: Record<string, { dtype: string; shape: number[]; data: Float32Array }> = {};
    for (const moment of state.moments) {
      const projection = moment.projection as Projection;
      for (const [matrix, average, squares] of [
        ["A", moment.expAvgA, moment.expAvgSqA],
        ["B", moment.expAvgB, moment.expAvgSqB],
      ] as const) {
        const key = peftKey(moment.layer, projection, matrix);
        tensors[`${key}.exp_avg`] = { dtype: "F32", shape: [average.length], data: average };
        tensors[`${key}.exp_avg_sq`] = { dtype: "F32", shape: [squares.length], data: squares };
      }
    }
    await writeSafetensors(join(dir, "optimizer.safetensors"), tensors, { format: "tunekit" });
    await writeJsonAtomically(join(dir, "trainer_state.json"), {
      format: "tunekit-training-state",
      version: 2,
      step: state.step,
      dropoutRandom: state.random,
      dropoutMasks: DROPOUT_MASKS,
      ...extra,
    });
  }

  /** Restores a state written by `saveTrainingState`: adapter, moments, step and dropout generator. */
  async loadTrainingState(dir: string): Promise<void> {
    await this.loadAdapter(dir);
    const file = join(dir, "trainer_state.json");
    let json: { step?: unknown; dropoutRandom?: unknown };
    try {
      json = JSON.parse(await readFile(file, "utf8"));
    } catch (error) {
      throw new ModelFormatError("bad_training_state", `cannot read (${(error as Error).message})`, {
        location: { file },
        cause: error,
      });
    }
    const optimizer = join(dir, "optimizer.safetensors");
    const header = await readSafetensorsHeader(optimizer);
    const bytes = await readFile(optimizer);
    const tensor = (key: string) => {
      const info = header.tensors.get(key);
      if (!info) throw new ModelFormatError("missing_tensor", `no ${key}`, { location: { file: optimizer } });
      return decodeFloats(bytes.subarray(info.offset, info.offset + info.bytes), info.dtype, key);
    };
    const moments = this.#live()
      .getLora()
      .map((module) => {
        const projection = module.projection as Projection;
        const a = peftKey(module.layer, projection, "A");
        const b = peftKey(module.layer, projection, "B");
        return {
          layer: module.layer,
          projection,
          expAvgA: tensor(`${a}.exp_avg`),
          expAvgB: tensor(`${b}.exp_avg`),
          expAvgSqA: tensor(`${a}.exp_avg_sq`),
          expAvgSqB: tensor(`${b}.exp_avg_sq`),
        };
      });
    const native = this.#live();
    try {
      native.setOptimizerState({
        step: json.step as number,
        random: json.dropoutRandom as string[],
        moments,
      });
    } catch (error) {
      // Whatever the engine refuses here (a moment's size, the generator's words) is the file's fault.
      throw new ModelFormatError("bad_training_state", (error as Error).message, {
        location: { file },
        cause: error,
      });
    }
  }

  /**
   * Writes the adapter in PEFT's format (`adapter_config.json`, `adapter_model.safetensors`) with the
   * chat template this model renders with (`chat_template.jinja`, as transformers names it), so that
   * `loadAdapter`, the local provider, `tunekit serve` and vLLM (`--chat-template`) render as training did.
   */
  async saveAdapter(dir: string): Promise<void> {
    const config = this.#lora;
    if (!config)
      throw new ValidationError("no_adapter", "no LoRA adapter is attached (attachLora or loadAdapter)");
    await mkdir(dir, { recursive: true });
    const modules = this.#live()
      .getLora()
      .map((module) => ({ ...module, projection: module.projection as Projection }));
    await writeAdapter(dir, config, modules, this.#shapeOf, this.path);
    await writeFileAtomically(join(dir, CHAT_TEMPLATE_FILE), this.chatFormat.template);
  }

  /**
   * Loads a PEFT LoRA adapter folder (written by tunekit or by PEFT), replacing any adapter. Its
   * `chat_template.jinja`, when it has one, becomes the template this model renders with.
   */
  async loadAdapter(dir: string): Promise<LoraConfig> {
    const { config, modules } = await readAdapter(dir, this.config.numLayers, this.#shapeOf);
    const template = await readAdapterTemplate(dir);
    callNativeSync(() => this.#live().setLora(modules), { file: dir });
    this.#lora = config;
    this.#setAdapterTemplate(template);
    this.#loraVersion++;
    return config;
  }

  /**
   * Loads a PEFT adapter folder beside any others, on this model's weights (nothing of the base is
   * copied), as a chat target of its own: it renders with the adapter's `chat_template.jinja` when it
   * has one, else with the model's template. Requests on resident adapters and on the base are
   * decoded together in one batch. The attached adapter (`loadAdapter`, training) is not touched.
   */
  async openAdapter(
    dir: string,
    options: { modelId?: string; provider?: string } = {},
  ): Promise<LocalModelView> {
    const { config, modules } = await readAdapter(dir, this.config.numLayers, this.#shapeOf);
    const template = await readAdapterTemplate(dir);
    const native = callNativeSync(() => this.#live().createLora(modules), { file: dir });
    const adapter = new ResidentAdapter(dir, config, adapterHash(config, modules), template, native);
    return new LocalModelView(this, {
      adapter,
      modelId: options.modelId ?? dir,
      ...(options.provider !== undefined ? { provider: options.provider } : {}),
    });
  }

  /**
   * Writes a complete Hugging Face model folder with the adapter merged into the weights
   * (W + s · B A; an NF4 base is dequantized first): weights in `dtype` (default "bf16"), sharded at
   * `maxShardSize` (default "2GB") with `model.safetensors.index.json`, plus the config, tokenizer
   * and generation files, so transformers and vLLM load it.
   */
  async mergeAndSave(dir: string, options: MergeOptions = {}): Promise<{ files: string[] }> {
    return mergeAndSave(
      this.path,
      dir,
      this.config,
      { ...options, chatTemplate: this.chatFormat.template },
      (layer, projection) => this.#call(() => this.#live().mergedWeight(layer, projection)),
    );
  }

  /** Resident bytes of the weights by kind (NF4 shows in `linear`). */
  weightBytes(): WeightBytes {
    const bytes = this.#live().weightBytes();
    return { ...bytes, total: bytes.linear + bytes.embedding + bytes.head + bytes.norm };
  }

  /** Frees the native weights (idempotent); calls already running finish first. */
  dispose(): void {
    this.#native?.dispose();
    this.#native = undefined;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.dispose();
  }
}
