/**
 * The one place where chat messages become a local model's prompt. Training tokenization, LocalModel's
 * `generate` / `stream` / `generateBatch`, the local chat targets and the Validator's `local` target all
 * render through a `ChatRenderer`, which decides, once per model:
 *
 * - the template: the one saved with a loaded adapter (`chat_template.jinja`, so a tuned model renders
 *   as its training did), else the model's own, else tunekit's default for a base model;
 * - the system-role fold for templates that refuse a system message (its text goes at the start of the
 *   first user message, with a warning);
 * - what ends an assistant turn in that template: its end-of-turn token (`<|im_end|>`, `<|eot_id|>`,
 *   `<|end|>`, EOS) and, where the next turn starts with plain text (tunekit's default: "\nUser:"),
 *   that text as a stop string.
 */
import { ValidationError } from "../core/errors.js";
import { type ChatMessage, contentText, type ToolCall } from "../data/example.js";
import type { LocalTokenizer, TemplateMessage } from "./tokenizer.js";

/**
 * The template of a base model that has none: one line per message (the system text; `User: …`;
 * `Assistant: …` closed by EOS so the model learns to stop; `Tool: …`), an assistant's tool calls as
 * `{"name": …, "arguments": …}` lines. Newlines are written as `{{ '\n' }}`: a literal newline right
 * after a block tag would be dropped (chat templates render with trim_blocks).
 */
export const DEFAULT_CHAT_TEMPLATE =
  "{{ bos_token }}{% for message in messages %}{% if not loop.first %}{{ '\\n' }}{% endif %}" +
  "{% if message.role == 'system' %}{{ message.content }}" +
  "{% elif message.role == 'user' %}User: {{ message.content }}" +
  "{% elif message.role == 'assistant' %}Assistant: {% if message.content %}{{ message.content }}{% endif %}" +
  "{% for call in message.tool_calls or [] %}{% if message.content or not loop.first %}{{ '\\n' }}{% endif %}" +
  "{{ {'name': call.function.name, 'arguments': call.function.arguments} | tojson }}{% endfor %}{{ eos_token }}" +
  "{% elif message.role == 'tool' %}Tool: {{ message.content }}" +
  "{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '\\nAssistant: ' }}{% endif %}";

/** Where the template in use came from. */
export type TemplateSource = "adapter" | "model" | "default";

/** How a model renders conversations, and what ends an assistant's turn in that rendering. */
export interface ChatFormat {
  /** The Jinja source. */
  template: string;
  source: TemplateSource;
  /** Token ids that end a reply besides the model's EOS ids: the template's end-of-turn token. */
  stopTokens: number[];
  /** Text that ends a reply: where the template starts the next turn in plain text ("\nUser:"). */
  stopStrings: string[];
}

export interface RenderChatOptions {
  /** End with the assistant's header, for the model to write the reply. Default false. */
  addGenerationPrompt?: boolean;
  /** Tool definitions, for templates that describe tools. */
  tools?: unknown[];
  /** Extra variables for the template (e.g. `enable_thinking`). */
  variables?: Record<string, unknown>;
}

export interface RenderedChat {
  text: string;
  /** The messages as the template rendered them (the system message folded in where it had to be). */
  messages: TemplateMessage[];
  warnings: string[];
}

/** The note a training report and a Validator carry when a model has no template of its own. */
export const DEFAULT_TEMPLATE_WARNING =
  "the model has no chat template: conversations use tunekit's default (User: … / Assistant: …)";
const SYSTEM_FOLD_WARNING =
  "the chat template refuses the system role: the system text was put at the start of the first user message";
const REPLY = "\u2063tunekit-reply\u2063";
const NEXT = "\u2063tunekit-next\u2063";

/**
 * A chat message as chat templates read it (transformers' convention): text content (null on an
 * assistant message that only calls tools), each call's arguments as an object rather than OpenAI's
 * JSON string, and the tool message's id and name kept; a training `weight` stays on it for the masks.
 */
export function templateMessage(message: ChatMessage | TemplateMessage): TemplateMessage {
  const { role, content, tool_calls: calls, ...rest } = message as TemplateMessage;
  const text =
    content === null || content === undefined ? content : contentText(content as ChatMessage["content"]);
  return {
    ...rest,
    role,
    content: text === null && Array.isArray(calls) ? null : (text ?? ""),
    ...(Array.isArray(calls)
      ? {
          tool_calls: calls.map((call: ToolCall) => ({
            ...call,
            function: { ...call.function, arguments: parseArguments(call.function.arguments) },
          })),
        }
      : {}),
  };
}

/** OpenAI's JSON-string arguments as the object templates expect (a string that is not JSON stays). */
function parseArguments(value: unknown): unknown {
  if (typeof value !== "string") return value;
  try {
    return JSON.parse(value);
  } catch {
    return value;
  }
}

/** Renders conversations for one model with one template. */
export class ChatRenderer {
  readonly tokenizer: LocalTokenizer;
  readonly format: ChatFormat;

  /** `template`: the one to use; default the tokenizer's own, else tunekit's default. */
  constructor(tokenizer: LocalTokenizer, template?: { template: string; source: TemplateSource }) {
    this.tokenizer = tokenizer;
    const chosen =
      template ??
      (tokenizer.chatTemplate !== undefined
        ? { template: tokenizer.chatTemplate, source: "model" as const }
        : { template: DEFAULT_CHAT_TEMPLATE, source: "default" as const });
    this.format = { ...chosen, ...turnEnd(tokenizer, chosen.template) };
  }

  /** The template applied to exactly these messages. */
  renderExactly(messages: TemplateMessage[], options: RenderChatOptions = {}): string {
    return this.tokenizer.applyChatTemplate(messages, {
      template: this.format.template,
      ...(options.addGenerationPrompt !== undefined
        ? { addGenerationPrompt: options.addGenerationPrompt }
        : {}),
      ...(options.tools !== undefined ? { tools: options.tools } : {}),
      ...(options.variables !== undefined ? { variables: options.variables } : {}),
    });
  }

  /**
   * Renders a conversation; a template that refuses the system role gets the system text folded into
   * the first user message (with a warning), as training and every chat target do.
   */
  render(messages: TemplateMessage[], options: RenderChatOptions = {}): RenderedChat {
    return renderFolding((list, renderOptions) => this.renderExactly(list, renderOptions), messages, options);
  }

  /** The prompt's token ids for chat messages: rendered with the generation prompt and encoded. */
  encodePrompt(
    messages: Array<ChatMessage | TemplateMessage>,
    options: Omit<RenderChatOptions, "addGenerationPrompt"> = {},
  ): { inputIds: number[]; text: string; warnings: string[] } {
    if (!Array.isArray(messages) || messages.length === 0)
      throw new ValidationError("invalid_argument", "a conversation needs at least one message", {
        location: { path: "messages" },
      });
    const rendered = this.render(messages.map(templateMessage), { ...options, addGenerationPrompt: true });
    return {
      inputIds: this.tokenizer.encode(rendered.text, { addSpecialTokens: false }),
      text: rendered.text,
      warnings: rendered.warnings,
    };
  }
}

/**
 * `messages` rendered with the tokenizer's template (tunekit's default for a base model), the system
 * message folded where the template refuses it.
 */
export function renderChat(
  tokenizer: LocalTokenizer,
  messages: Array<ChatMessage | TemplateMessage>,
  options: RenderChatOptions = {},
): RenderedChat {
  return new ChatRenderer(tokenizer).render(messages.map(templateMessage), options);
}

/**
 * Renders with `render`; when the template refuses the system role, renders again with the system
 * text at the start of the first user message, and says so. Every conversation tunekit renders for a
 * local model goes through here.
 */
export function renderFolding(
  render: (messages: TemplateMessage[], options: RenderChatOptions) => string,
  messages: readonly TemplateMessage[],
  options: RenderChatOptions = {},
): RenderedChat {
  const input = messages.map((message) => ({ ...message }));
  try {
    return { text: render(input, options), messages: input, warnings: [] };
  } catch (error) {
    const folded = foldSystem(input, error);
    if (!folded) throw error;
    return { text: render(folded, options), messages: folded, warnings: [SYSTEM_FOLD_WARNING] };
  }
}

/** The messages with the system text moved into the first user message, when `error` is a refusal of the system role. */
function foldSystem(messages: TemplateMessage[], error: unknown): TemplateMessage[] | undefined {
  const system = messages.findIndex((message) => message.role === "system");
  const hasUser = messages.some((message) => message.role === "user");
  if (system < 0 || !hasUser || !/system/i.test((error as Error)?.message ?? "")) return undefined;
  const systemText = messages[system]?.content ?? "";
  const rest = messages.filter((_, index) => index !== system);
  const first = rest.findIndex((message) => message.role === "user");
  const target = rest[first] as TemplateMessage;
  rest[first] = { ...target, content: `${systemText}\n\n${target.content ?? ""}` };
  return rest;
}

/**
 * What the template writes after an assistant's reply, found by rendering a reply and the turn after
 * it: the first token of the closing when it is a special token (the end-of-turn token), and the start
 * of the next turn when it survives decoding as plain text (tunekit's default template: "\nUser:").
 * A template that cannot render the probe conversation gets neither: EOS alone ends its replies.
 */
function turnEnd(
  tokenizer: LocalTokenizer,
  template: string,
): Pick<ChatFormat, "stopTokens" | "stopStrings"> {
  const render = (messages: TemplateMessage[]) => tokenizer.applyChatTemplate(messages, { template });
  const user = (content: string) => ({ role: "user", content });
  const reply = { role: "assistant", content: REPLY };
  const stopTokens: number[] = [];
  const stopStrings: string[] = [];
  try {
    const upToReply = render([user("Hi"), reply]);
    const closing = upToReply.slice(upToReply.indexOf(REPLY) + REPLY.length);
    const [first] = tokenizer.encode(closing, { addSpecialTokens: false });
    if (first !== undefined && isSpecial(tokenizer, first)) stopTokens.push(first);
    const withNext = render([user("Hi"), reply, user(NEXT)]);
    const between = withNext.slice(withNext.indexOf(REPLY) + REPLY.length, withNext.indexOf(NEXT));
    const header = (between.startsWith(closing) ? between.slice(closing.length) : between).trimEnd();
    if (header.trim() !== "" && roundTrips(tokenizer, header)) stopStrings.push(header);
  } catch {
    // A template that refuses this conversation: no turn markers are known.
  }
  return { stopTokens, stopStrings };
}

function isSpecial(tokenizer: LocalTokenizer, id: number): boolean {
  return tokenizer.decode([id]) === "" && tokenizer.decode([id], { skipSpecialTokens: false }) !== "";
}

/**
 * Whether text decodes back to itself after other text (no special tokens in it that decoding drops;
 * after other text, as it comes in a reply: SentencePiece treats the start of a text apart).
 */
function roundTrips(tokenizer: LocalTokenizer, text: string): boolean {
  const inContext = `x${text}`;
  return tokenizer.decode(tokenizer.encode(inContext, { addSpecialTokens: false })) === inContext;
}
