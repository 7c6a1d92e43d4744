/**
 * Chat with local models: a base model (folder or Hugging Face id) or a fine-tuned one (an adapter
 * folder, such as a local job's `fineTunedModel` or one of its checkpoints), rendered with the model's
 * chat template exactly as training renders conversations. Models load on first use and stay loaded
 * until the provider is disposed.
 */
import { readFile, stat } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { z } from "zod";
import { DisposedError, ModelFormatError, ValidationError } from "../../core/errors.js";
import { type ChatMessage, contentText } from "../../data/example.js";
import { LocalModel } from "../../engine/local-model.js";
import type { TemplateMessage } from "../../engine/tokenizer.js";
import { DEFAULT_CHAT_TEMPLATE } from "../../local/tokenize.js";
import type { ChatTarget } from "../spec.js";
import { PROVIDER, readRecord } from "./record.js";
import type { LoadSettings } from "./settings.js";

const adapterConfigSchema = z.looseObject({ base_model_name_or_path: z.string().min(1) });

/** What a model id stands for: a model alone, or a base model with an adapter on it. */
interface ModelSource {
  base: string;
  adapter?: string;
  load: LoadSettings;
}

/** The models chat targets use, loaded once per id and freed together. */
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
    return {
      provider: PROVIDER,
      modelId,
      complete: async (messages, options = {}) => {
        if (!Array.isArray(messages) || messages.length === 0) {
          throw new ValidationError("invalid_argument", "local: complete() needs at least one message", {
            location: { path: "messages" },
          });
        }
        options.signal?.throwIfAborted();
        const model = await this.#model(modelId);
        const { inputIds, defaultTemplate } = render(model, messages);
        const result = await model.generate(
          { inputIds },
          {
            ...(options.maxTokens !== undefined ? { maxTokens: options.maxTokens } : {}),
            ...(options.temperature !== undefined ? { temperature: options.temperature } : {}),
            ...(options.signal !== undefined ? { signal: options.signal } : {}),
            // tunekit's default template has no end-of-turn token but EOS; a tuned base model may go on.
            ...(defaultTemplate ? { stop: ["\nUser:"] } : {}),
          },
        );
        return {
          text: result.text,
          usage: { promptTokens: result.promptTokens, completionTokens: result.tokenIds.length },
        };
      },
    };
  }

  #model(modelId: string): Promise<LocalModel> {
    if (this.#disposed) {
      throw new DisposedError("disposed", "local: this provider has been disposed");
    }
    const key = modelId;
    let model = this.#models.get(key);
    if (!model) {
      model = this.#load(modelId);
      this.#models.set(key, model);
      // A failed load is not cached: the next call tries again.
      model.catch(() => this.#models.delete(key));
    }
    return model;
  }

  async #load(modelId: string): Promise<LocalModel> {
    const source = await modelSource(modelId, this.#defaults);
    const model = await LocalModel.load(source.base, {
      quantization: source.load.quantization ?? "nf4",
      ...(source.load.doubleQuant !== undefined ? { doubleQuant: source.load.doubleQuant } : {}),
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

/**
 * An adapter folder (with `adapter_config.json`) names its base model; a folder in a local job's
 * output (`jobs/<id>/adapter`, `jobs/<id>/checkpoint-N`) loads the base as the job trained it (NF4 or
 * not). Anything else is a model folder or a Hub id.
 */
async function modelSource(modelId: string, defaults: LoadSettings): Promise<ModelSource> {
  const folder = await stat(modelId).catch(() => undefined);
  const configFile = join(modelId, "adapter_config.json");
  if (!folder?.isDirectory() || !(await stat(configFile).catch(() => undefined))) {
    return { base: modelId, load: defaults };
  }
  let config: z.infer<typeof adapterConfigSchema>;
  try {
    config = adapterConfigSchema.parse(JSON.parse(await readFile(configFile, "utf8")));
  } catch (error) {
    throw new ModelFormatError(
      "bad_adapter",
      "cannot read the adapter's base model (base_model_name_or_path)",
      { location: { file: configFile }, cause: error },
    );
  }
  const record = await readRecord(join(dirname(resolve(modelId)), "job.json")).catch(() => undefined);
  return {
    base: config.base_model_name_or_path,
    adapter: modelId,
    load: record ? { ...defaults, ...record.load } : defaults,
  };
}

/**
 * The prompt's token ids: the messages through the chat template with the generation prompt, or
 * through tunekit's default template for a model without one (the one training used). A template
 * that refuses the system role gets the system text at the start of the first user message, as in
 * training.
 */
function render(
  model: LocalModel,
  messages: ChatMessage[],
): { inputIds: number[]; defaultTemplate: boolean } {
  const tokenizer = model.tokenizer;
  const defaultTemplate = tokenizer.chatTemplate === undefined;
  const options = {
    addGenerationPrompt: true,
    ...(defaultTemplate ? { template: DEFAULT_CHAT_TEMPLATE } : {}),
  };
  let list: TemplateMessage[] = messages.map((message) => ({
    role: message.role,
    content: contentText(message.content),
  }));
  let text: string;
  try {
    text = tokenizer.applyChatTemplate(list, options);
  } catch (error) {
    const system = list.findIndex((message) => message.role === "system");
    const user = list.findIndex((message) => message.role === "user");
    if (system < 0 || user < 0 || !/system/i.test((error as Error).message)) throw error;
    const systemText = list[system]?.content ?? "";
    list = list.filter((_, index) => index !== system);
    list = list.map((message, index) =>
      index === list.findIndex((other) => other.role === "user")
        ? { ...message, content: `${systemText}\n\n${message.content ?? ""}` }
        : message,
    );
    text = tokenizer.applyChatTemplate(list, options);
  }
  return { inputIds: tokenizer.encode(text, { addSpecialTokens: false }), defaultTemplate };
}
