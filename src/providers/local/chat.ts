/**
 * Chat with local models: a base model (folder or Hugging Face id) or a fine-tuned one (an adapter
 * folder, such as a local job's `fineTunedModel` or one of its checkpoints). Each target is the
 * model's own `ChatTarget` (`LocalModel.view`), so it renders with the template the adapter was
 * trained with, exactly as training and `LocalModel` do. Models load on first use and stay loaded
 * until the provider is disposed.
 */
import { createHash } from "node:crypto";
import { readFileSync, statSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { z } from "zod";
import type { ChatCapabilities, ChatTarget } from "../../core/chat.js";
import { chatStream } from "../../core/chat-stream.js";
import { DisposedError, ModelFormatError, ValidationError } from "../../core/errors.js";
import { DEFAULT_CHAT_TEMPLATE } from "../../engine/chat-template.js";
import type { LocalModelView } from "../../engine/local-chat.js";
import { LocalModel } from "../../engine/local-model.js";
import { configTemplate } from "../../engine/tokenizer.js";
import { PROVIDER, recordSchema } from "./record.js";
import type { LoadSettings } from "./settings.js";

const adapterConfigSchema = z.looseObject({ base_model_name_or_path: z.string().min(1) });
/** What the identity hashes of an adapter folder: everything that decides its answers. */
const ADAPTER_FILES = ["adapter_config.json", "adapter_model.safetensors", "chat_template.jinja"];

/** What a model id stands for: a model alone, or a base model with an adapter on it. */
interface ModelSource {
  base: string;
  adapter?: string;
  load: LoadSettings;
  /** Names the weights, quantization and template: the target's identity and the cache key of its model. */
  identity: string;
  /** The template the model will render with, when the files tell it before loading. */
  template: string | undefined;
}

/** The models chat targets use, loaded once per identity and freed together. */
export class LocalChatModels {
  readonly #defaults: LoadSettings;
  readonly #models = new Map<string, Promise<LocalModel>>();
  #disposed = false;

  constructor(defaults: LoadSettings) {
    this.#defaults = defaults;
  }

  target(modelId: string): ChatTarget {
    if (typeof modelId !== "string" || modelId.trim() === "") {
      throw new ValidationError(
        "invalid_argument",
        "local: chat needs a model: a model folder, a Hugging Face id or an adapter folder",
        { location: { path: "modelId" } },
      );
    }
    const source = modelSource(modelId, this.#defaults);
    const view = async (): Promise<LocalModelView> =>
      (await this.#model(source)).view({
        adapter: source.adapter !== undefined,
        provider: PROVIDER,
        modelId,
      });
    const template = source.template;
    const capabilities: ChatCapabilities = {
      tools: template !== undefined && (template === DEFAULT_CHAT_TEMPLATE || /\btools\b/.test(template)),
      logprobs: true,
    };
    return {
      specificationVersion: "v2",
      provider: PROVIDER,
      modelId,
      identity: source.identity,
      capabilities,
      complete: async (messages, options) => (await view()).complete(messages, options),
      // The model loads inside the stream, so a load failure reaches the loop and `result`.
      completeStream: (messages, options = {}) =>
        chatStream(async (emit, signal) => {
          const inner = (await view()).completeStream(messages, { ...options, signal });
          for await (const delta of inner) emit(delta);
          return inner.result;
        }, options.signal),
      completeBatch: async (conversations, options) => (await view()).completeBatch(conversations, options),
      answerLoss: async (messages, expected, options) =>
        (await view()).answerLoss(messages, expected, options),
    };
  }

  #model(source: ModelSource): Promise<LocalModel> {
    if (this.#disposed) throw new DisposedError("disposed", "local: this provider has been disposed");
    let model = this.#models.get(source.identity);
    if (!model) {
      model = this.#load(source);
      this.#models.set(source.identity, model);
      // A failed load is not cached: the next call tries again.
      model.catch(() => this.#models.delete(source.identity));
    }
    return model;
  }

  async #load(source: ModelSource): Promise<LocalModel> {
    const model = await LocalModel.load(source.base, {
      quantization: source.load.quantization ?? "nf4",
      ...(source.load.doubleQuant !== undefined ? { doubleQuant: source.load.doubleQuant } : {}),
      ...(source.load.computeDtype !== undefined ? { computeDtype: source.load.computeDtype } : {}),
      ...(source.load.threads !== undefined ? { threads: source.load.threads } : {}),
      ...(source.load.revision !== undefined ? { revision: source.load.revision } : {}),
    });
    try {
      if (source.adapter !== undefined) await model.loadAdapter(source.adapter);
    } catch (error) {
      model.dispose();
      throw error;
    }
    return model;
  }

  /** Frees every loaded model (after the calls under way finish). */
  async dispose(): Promise<void> {
    this.#disposed = true;
    const models = [...this.#models.values()];
    this.#models.clear();
    for (const result of await Promise.allSettled(models))
      if (result.status === "fulfilled") result.value.dispose();
  }
}

/** bf16 products answer differently from fp32 ones: their targets are told apart (fp32's name stays). */
function compute(load: LoadSettings): string {
  return load.computeDtype === "bf16" ? "&compute=bf16" : "";
}

/**
 * An adapter folder (with `adapter_config.json`) names its base model; a folder in a local job's
 * output (`jobs/<id>/adapter`, `jobs/<id>/checkpoint-N`) loads the base as the job trained it (NF4 or
 * not). Anything else is a model folder or a Hub id. Read at once (synchronously): a target's identity
 * is the content hash of the adapter's files, known before the model loads.
 */
function modelSource(modelId: string, defaults: LoadSettings): ModelSource {
  const configFile = join(modelId, "adapter_config.json");
  if (!isFile(configFile)) {
    const local = isFile(join(modelId, "config.json"));
    const base = local ? resolve(modelId) : modelId;
    const revision = defaults.revision ? `@${defaults.revision}` : "";
    return {
      base,
      load: defaults,
      identity: `local:${base}${local ? "" : revision}?quantization=${defaults.quantization ?? "nf4"}${compute(defaults)}`,
      template: local ? folderTemplate(base) : undefined,
    };
  }
  let config: z.infer<typeof adapterConfigSchema>;
  try {
    config = adapterConfigSchema.parse(JSON.parse(readFileSync(configFile, "utf8")));
  } catch (error) {
    throw new ModelFormatError(
      "bad_adapter",
      "cannot read the adapter's base model (base_model_name_or_path)",
      { location: { file: configFile }, cause: error },
    );
  }
  const adapter = resolve(modelId);
  const record = jobRecord(join(dirname(adapter), "job.json"));
  const load = record ? { ...defaults, ...record.load } : defaults;
  const hash = createHash("sha256");
  for (const file of ADAPTER_FILES) {
    hash.update(`${file}\u0000`);
    if (isFile(join(adapter, file))) hash.update(readFileSync(join(adapter, file)));
  }
  const base = config.base_model_name_or_path;
  const ownTemplate = isFile(join(adapter, "chat_template.jinja"))
    ? readFileSync(join(adapter, "chat_template.jinja"), "utf8")
    : undefined;
  return {
    base,
    adapter,
    load,
    identity: `local:${base}?quantization=${load.quantization ?? "nf4"}${compute(load)}&adapter=${hash.digest("hex").slice(0, 32)}`,
    template: ownTemplate ?? (isFile(join(base, "config.json")) ? folderTemplate(base) : undefined),
  };
}

/** The template a model folder renders with: its chat_template.jinja, its tokenizer config's, or tunekit's default. */
function folderTemplate(dir: string): string | undefined {
  if (isFile(join(dir, "chat_template.jinja"))) return readFileSync(join(dir, "chat_template.jinja"), "utf8");
  try {
    return (
      configTemplate(JSON.parse(readFileSync(join(dir, "tokenizer_config.json"), "utf8"))) ??
      DEFAULT_CHAT_TEMPLATE
    );
  } catch {
    return DEFAULT_CHAT_TEMPLATE; // no readable tokenizer config: the model has no template
  }
}

function jobRecord(file: string): z.infer<typeof recordSchema> | undefined {
  try {
    const result = recordSchema.safeParse(JSON.parse(readFileSync(file, "utf8")));
    return result.success ? result.data : undefined;
  } catch {
    return undefined;
  }
}

function isFile(path: string): boolean {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
}
