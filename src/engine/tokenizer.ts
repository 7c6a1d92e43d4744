/**
 * A model's tokenizer: `@huggingface/tokenizers` over `tokenizer.json` + `tokenizer_config.json`, and
 * its chat template rendered with `@huggingface/jinja` the way transformers' `apply_chat_template`
 * renders it (the special tokens in scope, the template's text encoded without adding special
 * tokens again, so a template that writes BOS gets exactly one).
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { Template } from "@huggingface/jinja";
import { Tokenizer } from "@huggingface/tokenizers";
import { ModelFormatError, ValidationError } from "../core/errors.js";

/** A chat message as chat templates expect it. */
export interface TemplateMessage {
  role: string;
  content: string | null;
  [key: string]: unknown;
}

export interface ChatTemplateOptions {
  /** Ends the text with the assistant's header so the model writes the reply. Default false. */
  addGenerationPrompt?: boolean;
  /** Tool definitions, for templates that describe tools. */
  tools?: unknown[];
  /** Extra variables for the template (e.g. `enable_thinking`). */
  variables?: Record<string, unknown>;
  /** A template to use instead of the model's own (e.g. a default one for a base model). */
  template?: string;
}

type TokenizerConfig = Record<string, unknown>;

function tokenText(value: unknown): string | undefined {
  if (typeof value === "string") return value;
  if (
    typeof value === "object" &&
    value !== null &&
    typeof (value as { content?: unknown }).content === "string"
  )
    return (value as { content: string }).content;
  return undefined;
}

async function readJson(file: string, required: boolean): Promise<Record<string, unknown> | undefined> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (error) {
    if (!required) return undefined;
    throw new ModelFormatError("file_not_found", "missing tokenizer file", {
      location: { file },
      cause: error,
    });
  }
  try {
    const json = JSON.parse(text);
    if (typeof json !== "object" || json === null) throw new Error("not an object");
    return json;
  } catch (error) {
    throw new ModelFormatError("bad_tokenizer", `not a JSON object (${(error as Error).message})`, {
      location: { file },
    });
  }
}

/** A tokenizer config's `chat_template`: a string, or a list of named templates of which "default" is used. */
export function configTemplate(config: Record<string, unknown>): string | undefined {
  const value = config.chat_template;
  if (typeof value === "string") return value;
  if (Array.isArray(value)) {
    const named = value.find((entry) => entry?.name === "default") ?? value[0];
    return typeof named?.template === "string" ? named.template : undefined;
  }
  return undefined;
}

/** The longest token in a tokenizer.json's vocabulary (BPE/WordPiece: an object; Unigram: pairs). */
function longestToken(json: Record<string, unknown>): number {
  let longest = 1;
  const model = json.model as { vocab?: unknown } | undefined;
  const vocab = model?.vocab;
  const entries = Array.isArray(vocab)
    ? vocab.map((entry) => (Array.isArray(entry) ? entry[0] : entry))
    : typeof vocab === "object" && vocab !== null
      ? Object.keys(vocab)
      : [];
  const added = Array.isArray(json.added_tokens)
    ? json.added_tokens.map((token) => (token as { content?: unknown })?.content)
    : [];
  for (const entry of [...entries, ...added])
    if (typeof entry === "string" && entry.length > longest) longest = entry.length;
  // A vocabulary the file does not list (an unknown model type): assume long tokens.
  return entries.length > 0 ? longest : 256;
}

/** The tokenizer of a local model. */
export class LocalTokenizer {
  /** The chat template, or undefined for a base model without one. */
  readonly chatTemplate: string | undefined;
  readonly bosToken: string | undefined;
  readonly eosToken: string | undefined;
  readonly bosTokenId: number | undefined;
  readonly eosTokenId: number | undefined;
  /**
   * The most characters of text one token can stand for (the longest vocabulary entry or added
   * token, as stored; a byte-level entry's length is its bytes, never fewer than its characters).
   * N tokens never cover more than N × this many characters, which bounds what must be tokenized
   * to know the first N tokens of a long text.
   */
  readonly longestTokenChars: number;
  readonly #tokenizer: Tokenizer;
  readonly #config: TokenizerConfig;
  /** Compiled templates by source: a render per message of every training example reuses them. */
  readonly #templates = new Map<string, Template>();

  private constructor(
    tokenizer: Tokenizer,
    config: TokenizerConfig,
    chatTemplate: string | undefined,
    longestTokenChars: number,
  ) {
    this.longestTokenChars = longestTokenChars;
    this.#tokenizer = tokenizer;
    this.#config = config;
    this.chatTemplate = chatTemplate;
    this.bosToken = tokenText(config.bos_token);
    this.eosToken = tokenText(config.eos_token);
    this.bosTokenId = this.bosToken === undefined ? undefined : tokenizer.token_to_id(this.bosToken);
    this.eosTokenId = this.eosToken === undefined ? undefined : tokenizer.token_to_id(this.eosToken);
  }

  /**
   * Reads `tokenizer.json`, `tokenizer_config.json` (optional) and `chat_template.jinja` (optional,
   * preferred over the config's template, as transformers does) from a model folder.
   */
  static async fromFolder(dir: string): Promise<LocalTokenizer> {
    const json = (await readJson(join(dir, "tokenizer.json"), true)) as Record<string, unknown>;
    const config = (await readJson(join(dir, "tokenizer_config.json"), false)) ?? {};
    let template: string | undefined;
    try {
      template = await readFile(join(dir, "chat_template.jinja"), "utf8");
    } catch {
      template = configTemplate(config);
    }
    let tokenizer: Tokenizer;
    try {
      tokenizer = new Tokenizer(json, config);
    } catch (error) {
      throw new ModelFormatError(
        "bad_tokenizer",
        `cannot build the tokenizer (${(error as Error).message})`,
        {
          location: { file: join(dir, "tokenizer.json") },
          cause: error,
        },
      );
    }
    return new LocalTokenizer(tokenizer, config, template, longestToken(json));
  }

  /** Token ids of a text; `addSpecialTokens` (default true) adds what the tokenizer adds, e.g. BOS. */
  encode(text: string, options: { addSpecialTokens?: boolean } = {}): number[] {
    return this.#tokenizer.encode(text, { add_special_tokens: options.addSpecialTokens ?? true }).ids;
  }

  /** The text of token ids; `skipSpecialTokens` defaults to true. */
  decode(ids: ArrayLike<number>, options: { skipSpecialTokens?: boolean } = {}): string {
    if (ids.length === 0) return "";
    return this.#tokenizer.decode(Array.from(ids), {
      skip_special_tokens: options.skipSpecialTokens ?? true,
    });
  }

  /** The id of a token string, such as `<|im_end|>`. */
  tokenToId(token: string): number | undefined {
    return this.#tokenizer.token_to_id(token);
  }

  /** Renders messages with the chat template, as text. */
  applyChatTemplate(messages: TemplateMessage[], options: ChatTemplateOptions = {}): string {
    const source = options.template ?? this.chatTemplate;
    if (source === undefined)
      throw new ValidationError(
        "no_chat_template",
        "this model has no chat template (tokenizer_config.json chat_template or chat_template.jinja): pass text instead of messages",
      );
    let template = this.#templates.get(source);
    if (template === undefined) {
      try {
        template = new Template(source);
      } catch (error) {
        throw new ValidationError(
          "chat_template_error",
          `the chat template does not parse: ${(error as Error).message}`,
          {
            cause: error,
          },
        );
      }
      if (this.#templates.size >= 8) this.#templates.clear();
      this.#templates.set(source, template);
    }
    const special: Record<string, unknown> = {};
    for (const name of [
      "bos_token",
      "eos_token",
      "unk_token",
      "pad_token",
      "sep_token",
      "cls_token",
      "mask_token",
    ]) {
      const text = tokenText(this.#config[name]);
      if (text !== undefined) special[name] = text;
    }
    if (Array.isArray(this.#config.additional_special_tokens))
      special.additional_special_tokens = this.#config.additional_special_tokens.map(tokenText);
    try {
      // @huggingface/jinja provides raise_exception (it throws) and strftime_now itself.
      return template.render({
        ...special,
        ...options.variables,
        messages,
        ...(options.tools ? { tools: options.tools } : {}),
        add_generation_prompt: options.addGenerationPrompt ?? false,
      });
    } catch (error) {
      throw new ValidationError(
        "chat_template_error",
        `the chat template refused the messages: ${(error as Error).message}`,
        { cause: error },
      );
    }
  }
}

/** Prompt tokens a StreamDecoder decodes before the first new one. */
const CONTEXT_TOKENS = 5;

/**
 * Turns generated ids into text piece by piece without ever splitting a character: text is emitted
 * only when the decode of a short window of tokens is complete (no U+FFFD at the end), the way
 * text-generation-inference's `decode_token` does, so byte-fallback tokens of one emoji come out together.
 */
export class StreamDecoder {
  readonly #tokenizer: LocalTokenizer;
  readonly #ids: number[] = [];
  #prefixOffset = 0;
  #readOffset = 0;

  /**
   * `context`: the ids before the first pushed one (the end of the prompt). Decoding in context
   * keeps what the first token means there, e.g. its leading space, which a decode from the start of
   * a text would strip.
   */
  constructor(tokenizer: LocalTokenizer, context: ArrayLike<number> = []) {
    this.#tokenizer = tokenizer;
    const tail = Array.from(context).slice(-CONTEXT_TOKENS);
    this.#ids.push(...tail);
    this.#readOffset = tail.length;
  }

  /** Adds one id; returns the text it completes ("" while a character is still incomplete). */
  push(id: number): string {
    this.#ids.push(id);
    const prefix = this.#tokenizer.decode(this.#ids.slice(this.#prefixOffset, this.#readOffset));
    const text = this.#tokenizer.decode(this.#ids.slice(this.#prefixOffset));
    if (text.length > prefix.length && !text.endsWith("\uFFFD")) {
      this.#prefixOffset = this.#readOffset;
      this.#readOffset = this.#ids.length;
      return text.slice(prefix.length);
    }
    return "";
  }
}
