/**
 * `exportGGUF`: a model folder (or a Hub id), or an adapter trained on it, as GGUF files that
 * llama.cpp, Ollama, LM Studio and node-llama-cpp load: the model (`--type f32|f16|bf16|q8_0|q4_0`), a
 * GGUF LoRA adapter (far smaller: one base file serves many adapters), or the model with the adapter
 * merged in. Tensors are read, converted and written one at a time, so memory stays flat whatever the
 * model's size; the file appears only once it is whole. An Ollama Modelfile is written beside it.
 */
import { readFile } from "node:fs/promises";
import { basename, dirname, join, relative, resolve } from "node:path";
import { ValidationError } from "../core/errors.js";
import { writeFileAtomically } from "../core/files.js";
import { ChatRenderer, DEFAULT_CHAT_TEMPLATE } from "../engine/chat-template.js";
import { readModelConfig } from "../engine/config.js";
import type { ModelHubOptions } from "../engine/hub.js";
import { type LoraModule, type Projection, readAdapter } from "../engine/lora.js";
import { modelFolder } from "../engine/model-source.js";
import { readModelTensors } from "../engine/safetensors.js";
import { LocalTokenizer } from "../engine/tokenizer.js";
import { adapterTensors } from "./gguf/adapter.js";
import type { GGUFValue } from "./gguf/format.js";
import {
  architectureMetadata,
  GGUF_TYPES,
  type GGUFType,
  generalMetadata,
  ggufArchitecture,
  modelTensors,
} from "./gguf/model.js";
import { tokenizerMetadata } from "./gguf/tokenizer.js";
import { type TensorPlan, writeGGUF } from "./gguf/writer.js";
import { modelfile } from "./modelfile.js";

export type { GGUFType } from "./gguf/model.js";

/** What an export reports as it goes. */
export type ExportProgress =
  | { type: "export-started"; kind: ExportKind; tensors: number; out: string }
  | { type: "tensor-written"; done: number; total: number; name: string };

export type ExportKind = "model" | "adapter" | "merged";

export interface ExportGGUFOptions {
  /** The base model: a folder, or a Hugging Face Hub id (downloaded into the HF cache). */
  model: string;
  /** A PEFT LoRA adapter folder: exported alone, or merged into the model with `merge`. */
  adapter?: string;
  /** Write the model with the adapter merged in rather than the adapter alone. Default false. */
  merge?: boolean;
  /** Tensor type. Default "f16" for models, "f32" for adapters (which take f32 or f16 only). */
  type?: GGUFType;
  /** The GGUF file to write. */
  out: string;
  /** `general.name`. Default: the model folder's name (with the adapter's for an adapter). */
  name?: string;
  /** Also write an Ollama `Modelfile` beside `out` (`<out>.Modelfile`). Default true. */
  modelfile?: boolean;
  /** For an adapter's Modelfile: the base model's GGUF (`FROM`). Default `<model folder name>.gguf`. */
  baseGGUF?: string;
  onProgress?: (event: ExportProgress) => void;
  signal?: AbortSignal;
  /** Where and how a Hub id is fetched. */
  hub?: ModelHubOptions;
}

export interface ExportGGUFResult {
  out: string;
  kind: ExportKind;
  type: GGUFType;
  architecture: "llama" | "qwen2";
  /** The file's size in bytes. */
  bytes: number;
  tensors: number;
  /** Fallbacks and foldings worth knowing (a tensor written as F16 because its rows do not divide into blocks). */
  notes: string[];
  /** The Modelfile written beside the file. */
  modelfile?: string;
}

export async function exportGGUF(options: ExportGGUFOptions): Promise<ExportGGUFResult> {
  if (typeof options?.out !== "string" || options.out.trim() === "")
    throw new ValidationError("invalid_argument", "exportGGUF needs out, the GGUF file to write");
  if (!options.out.endsWith(".gguf"))
    throw new ValidationError(
      "invalid_argument",
      `out must end in .gguf, got ${JSON.stringify(options.out)}`,
    );
  const kind: ExportKind = options.adapter ? (options.merge ? "merged" : "adapter") : "model";
  if (options.merge && !options.adapter)
    throw new ValidationError("invalid_argument", "merge needs an adapter to merge into the model");
  const type = options.type ?? (kind === "adapter" ? "f32" : "f16");
  if (!GGUF_TYPES.includes(type))
    throw new ValidationError(
      "invalid_argument",
      `type must be one of ${GGUF_TYPES.join(", ")}, got ${JSON.stringify(type)}`,
    );
  if (kind === "adapter" && type !== "f32" && type !== "f16")
    throw new ValidationError("invalid_argument", `a GGUF LoRA adapter is f32 or f16, not ${type}`);
  const dir = await modelFolder(options.model, options.hub ?? {});
  const config = await readModelConfig(join(dir, "config.json"));
  const architecture = ggufArchitecture(config);
  const tokenizer = await LocalTokenizer.fromFolder(dir);
  const adapter = options.adapter ? await loadAdapter(options.adapter, config) : undefined;
  const template = adapter?.template ?? tokenizer.chatTemplate;
  const out = resolve(options.out);
  const name =
    options.name ??
    (adapter ? `${basename(dir)} ${basename(resolve(options.adapter as string))}` : basename(dir));

  let metadata: Array<[string, GGUFValue]>;
  let tensors: TensorPlan[];
  let notes: string[];
  let tokens: string[] = [];
  if (kind === "adapter") {
    const planned = adapterTensors(config, adapter?.modules ?? [], type as "f32" | "f16");
    metadata = [...generalMetadata(architecture, "adapter", name, undefined), ...planned.metadata];
    tensors = planned.tensors;
    notes = planned.notes;
  } else {
    const planned = modelTensors(config, await readModelTensors(dir), {
      type,
      ...(adapter ? { merge: adapter.modules } : {}),
    });
    // A model without a template of its own gets tunekit's default, the one tunekit chats and trains
    // with, so that llama.cpp's chat renders messages as tunekit does.
    const written =
      template === undefined || template === DEFAULT_CHAT_TEMPLATE ? defaultTemplate(tokenizer) : template;
    const vocab = await tokenizerMetadata(dir, written, config.vocabSize);
    tokens = vocab.tokens;
    metadata = [
      ...generalMetadata(architecture, "model", name, planned.fileType),
      ...architectureMetadata(config),
      ...vocab.metadata,
    ];
    tensors = planned.tensors;
    notes = [...planned.notes, ...vocab.notes];
  }
  options.signal?.throwIfAborted();
  options.onProgress?.({ type: "export-started", kind, tensors: tensors.length, out });
  const bytes = await writeGGUF(out, {
    metadata,
    tensors,
    signal: options.signal,
    onTensor: (done, total, tensor) =>
      options.onProgress?.({ type: "tensor-written", done, total, name: tensor }),
  });

  let written: string | undefined;
  if (options.modelfile !== false) {
    const renderer = new ChatRenderer(
      tokenizer,
      template !== undefined ? { template, source: adapter?.template ? "adapter" : "model" } : undefined,
    );
    const stopTokens = renderer.format.stopTokens.map((id) => tokens[id] ?? tokenizer.decode([id]));
    const file = `${out.replace(/\.gguf$/, "")}.Modelfile`;
    const here = (path: string) => {
      const relativePath = relative(dirname(file), path);
      return relativePath.startsWith(".") ? relativePath : `./${relativePath}`;
    };
    const base = options.baseGGUF ? resolve(options.baseGGUF) : join(dirname(out), `${basename(dir)}.gguf`);
    await writeFileAtomically(
      file,
      modelfile({
        from: kind === "adapter" ? here(base) : here(out),
        ...(kind === "adapter" ? { adapter: here(out) } : {}),
        template: renderer.format.template,
        stops: [...stopTokens, ...renderer.format.stopStrings],
        eosToken: tokenizer.eosToken,
        generationPrompt: keepsTrailingSpace(tokenizer) ? "Assistant: " : "Assistant:",
        notes: [
          `Made by tunekit export gguf from ${options.model}${options.adapter ? ` and ${options.adapter}` : ""}.`,
          ...(kind === "adapter" && !options.baseGGUF
            ? [
                `FROM is the base model as a GGUF file: tunekit export gguf --model ${options.model} --out ${here(base)}`,
              ]
            : []),
          ...(renderer.format.template === DEFAULT_CHAT_TEMPLATE
            ? [
                "The model has no chat template of its own: TEMPLATE is tunekit's default (User: … / Assistant: …).",
              ]
            : []),
        ],
      }),
    );
    written = file;
  }
  return {
    out,
    kind,
    type,
    architecture,
    bytes,
    tensors: tensors.length,
    notes,
    ...(written ? { modelfile: written } : {}),
  };
}

/**
 * tunekit's default template as llama.cpp should render it for this tokenizer. Its generation prompt
 * ends in "Assistant: ". A tokenizer whose normalizer strips the text (stories260K's) drops that space
 * in tunekit, while llama.cpp's tokenizers keep it as a token of its own, which the model never saw
 * after "Assistant:" in training. Where tunekit drops it, the written template leaves it out: the
 * same token ids on both.
 */
function defaultTemplate(tokenizer: LocalTokenizer): string {
  return keepsTrailingSpace(tokenizer)
    ? DEFAULT_CHAT_TEMPLATE
    : DEFAULT_CHAT_TEMPLATE.replace("{{ '\\nAssistant: ' }}{% endif %}", "{{ '\\nAssistant:' }}{% endif %}");
}

function keepsTrailingSpace(tokenizer: LocalTokenizer): boolean {
  const ids = (text: string) => tokenizer.encode(text, { addSpecialTokens: false }).join(",");
  return ids("User: hi\nAssistant: ") !== ids("User: hi\nAssistant:");
}

/** The adapter's modules, with the model's shapes checked, and its chat template. */
async function loadAdapter(
  dir: string,
  config: Awaited<ReturnType<typeof readModelConfig>>,
): Promise<{ modules: LoraModule[]; template: string | undefined }> {
  const shapeOf = (projection: Projection): { in: number; out: number } => {
    const { hiddenSize: hidden, intermediateSize: intermediate, numHeads, numKvHeads, headDim } = config;
    if (projection === "q_proj") return { in: hidden, out: numHeads * headDim };
    if (projection === "k_proj" || projection === "v_proj") return { in: hidden, out: numKvHeads * headDim };
    if (projection === "o_proj") return { in: numHeads * headDim, out: hidden };
    if (projection === "down_proj") return { in: intermediate, out: hidden };
    return { in: hidden, out: intermediate };
  };
  const { modules } = await readAdapter(dir, config.numLayers, shapeOf);
  const template = await readFile(join(dir, "chat_template.jinja"), "utf8").catch(() => undefined);
  return { modules, template };
}
