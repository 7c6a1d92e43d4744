/**
 * Which tokens of a rendered conversation to learn: the assistant turns (their content and every
 * token the chat template writes to close them: `<|eot_id|>`, `<|im_end|>`, `<|end|>`, and an EOS it
 * writes right after), found by rendering, not by searching for token patterns:
 *
 * - the conversation is rendered once as it will be trained on;
 * - for each assistant turn, the same conversation with that turn's content replaced by a sentinel
 *   shows where the content starts, and (since only that content differs) where it ends;
 * - the conversation rendered up to that turn shows what the template writes after a turn's content,
 *   and as much of it as the full text repeats there (to the end of a line or a special token) is
 *   the closing of the turn.
 * - a turn with tool calls and no content has no content to mark: it starts where the conversation
 *   rendered before it with the generation prompt stops agreeing with the full text, and ends where
 *   the conversation rendered up to and including it does.
 *
 * Character spans become token positions by tokenizing prefixes of the text.
 */
import { ValidationError } from "../core/errors.js";
import type { ChatMessage } from "../data/example.js";
import { type ChatRenderer, renderFolding, templateMessage } from "./chat-template.js";

/** A message as a chat template sees it. */
export interface MaskMessage {
  role: string;
  /** Null on an assistant message that only calls tools. */
  content: string | null;
  /** Calls of an assistant message, as the chat template reads them. */
  tool_calls?: unknown[];
  /** 0 leaves an assistant message out of the loss. */
  weight?: 0 | 1;
  [key: string]: unknown;
}

/** Renders messages with the chat template (`addGenerationPrompt` false unless asked). */
export type Render = (messages: MaskMessage[], options?: { addGenerationPrompt?: boolean }) => string;

/** Characters [start, end) of the rendered text that are trained. */
export interface Span {
  start: number;
  end: number;
}

export interface RenderedConversation {
  text: string;
  spans: Span[];
  warnings: string[];
}

const SENTINEL = (index: number) => `\u2063tunekit-${index}\u2063`;

function commonPrefix(a: string, b: string): number {
  let length = 0;
  while (length < a.length && length < b.length && a[length] === b[length]) length++;
  return length;
}

/**
 * Renders a conversation and finds the characters of each trained assistant turn. A template that
 * refuses the system role gets the system text folded into the first user message, with a warning
 * (the engine's `renderFolding`, as every chat target renders).
 */
export function renderWithSpans(
  render: Render,
  input: readonly MaskMessage[],
  options: { trainOn?: "assistant" | "all" } = {},
): RenderedConversation {
  const rendered = renderFolding((list, renderOptions) => render(list, renderOptions), input);
  const { text, warnings } = rendered;
  const messages = rendered.messages as MaskMessage[];
  if (options.trainOn === "all") return { text, spans: [{ start: 0, end: text.length }], warnings };

  const spans: Span[] = [];
  for (const [index, message] of messages.entries()) {
    if (message.role !== "assistant" || message.weight === 0) continue;
    if (!message.content && (message.tool_calls?.length ?? 0) > 0) {
      spans.push(toolCallSpan(render, messages, index, text));
      continue;
    }
    const sentinel = SENTINEL(index);
    const marked = messages.map((other, position) =>
      position === index ? { ...other, content: sentinel } : other,
    );
    const withSentinel = render(marked);
    const start = withSentinel.indexOf(sentinel);
    if (start < 0)
      throw new ValidationError(
        "chat_template_error",
        `the chat template does not write the content of message ${index}`,
      );
    // Only the content differs between the two renders, so the rest lines up on both sides of it.
    const contentEnd = start + text.length - (withSentinel.length - sentinel.length);
    if (
      contentEnd < start ||
      text.slice(0, start) !== withSentinel.slice(0, start) ||
      text.slice(contentEnd) !== withSentinel.slice(start + sentinel.length)
    )
      throw new ValidationError(
        "chat_template_error",
        `the chat template renders message ${index} in a way tunekit cannot line up with the conversation`,
      );
    // What the template writes after a turn's content, from the conversation rendered up to this turn.
    const upTo = render(marked.slice(0, index + 1));
    const closing = upTo.slice(upTo.indexOf(sentinel) + sentinel.length);
    spans.push({ start, end: contentEnd + agreedLength(closing, text.slice(contentEnd)) });
  }
  return { text, spans, warnings };
}

/**
 * How much of `expected` (a render the conversation should repeat) `actual` repeats. A partial match
 * stops where a unit ends (a newline, or the '>' of a special token), so a closing "<|end|>\n</s>"
 * against "<|end|>\n<|user|>" trains "<|end|>\n", not a stray "<".
 */
function agreedLength(expected: string, actual: string): number {
  let matched = commonPrefix(expected, actual);
  if (matched < expected.length)
    while (matched > 0 && !/[\n>]/.test(expected[matched - 1] as string)) matched--;
  return matched;
}

/** The characters of an assistant turn that only calls tools, found by rendering prefixes. */
function toolCallSpan(render: Render, messages: MaskMessage[], index: number, text: string): Span {
  // Where the conversation before the turn, ready for the assistant's reply, stops agreeing.
  const start = agreedLength(render(messages.slice(0, index), { addGenerationPrompt: true }), text);
  const upTo = render(messages.slice(0, index + 1));
  const end =
    upTo.slice(0, start) === text.slice(0, start)
      ? start + agreedLength(upTo.slice(start), text.slice(start))
      : start;
  if (end <= start || ignoresCalls(render, messages.slice(0, index + 1), upTo))
    throw new ValidationError(
      "chat_template_error",
      `the chat template does not write the tool calls of message ${index}`,
    );
  return { start, end };
}

/** How a tokenizer encodes text without adding special tokens. */
export type Encode = (text: string) => number[];

/**
 * The token ids of a rendered conversation and their labels: each token's id inside a span, -100
 * elsewhere. A span's edges become token positions by tokenizing the text up to them (where a token
 * straddles an edge, it belongs to the side where it starts).
 */
export function labelTokens(
  encode: Encode,
  rendered: RenderedConversation,
): { inputIds: number[]; labels: number[] } {
  const inputIds = encode(rendered.text);
  const labels = new Array<number>(inputIds.length).fill(-100);
  const position = (characters: number) => {
    if (characters >= rendered.text.length) return inputIds.length;
    const prefix = encode(rendered.text.slice(0, characters));
    let same = 0;
    while (same < prefix.length && prefix[same] === inputIds[same]) same++;
    return same;
  };
  for (const span of rendered.spans) {
    const from = position(span.start);
    const to = position(span.end);
    for (let token = from; token < to; token++) labels[token] = inputIds[token] as number;
  }
  return { inputIds, labels };
}

/** Whether the template renders the last message the same with its tool calls taken away. */
function ignoresCalls(render: Render, messages: MaskMessage[], rendered: string): boolean {
  const last = messages.length - 1;
  const withoutCalls = messages.map((message, position) => {
    if (position !== last) return message;
    const { tool_calls: _, ...rest } = message;
    return { ...rest, content: "" };
  });
  try {
    return render(withoutCalls) === rendered;
  } catch {
    return false;
  }
}

/**
 * A conversation as training sees it, rendered with `renderer`: its token ids, and labels that are the
 * id on every trained token (each assistant turn with its closing, or everything with trainOn "all")
 * and -100 elsewhere. An assistant message with `weight: 0` is context, not trained.
 */
export function tokenizeConversation(
  renderer: ChatRenderer,
  messages: ChatMessage[],
  options: { tools?: unknown[]; trainOn?: "assistant" | "all" } = {},
): { inputIds: number[]; labels: number[]; warnings: string[] } {
  const tools = options.tools;
  const render: Render = (list, renderOptions = {}) =>
    renderer.renderExactly(list, { ...renderOptions, ...(tools ? { tools } : {}) });
  const rendered = renderWithSpans(render, messages.map(templateMessage) as MaskMessage[], {
    trainOn: options.trainOn ?? "assistant",
  });
  const encode = (text: string) => renderer.tokenizer.encode(text, { addSpecialTokens: false });
  return { ...labelTokens(encode, rendered), warnings: rendered.warnings };
}
