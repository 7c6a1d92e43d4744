/**
 * Turning examples into training sequences for a local model: each conversation rendered once with
 * the model's chat template (a documented default for a base model without one), labels on what is
 * learned (assistant turns by default), cut to `maxSeqLength` with a count of what was cut.
 */
import { type ChatMessage, contentText, type Example } from "../data/example.js";
import type { LocalTokenizer } from "../engine/tokenizer.js";
import { labelTokens, type MaskMessage, renderWithSpans } from "./assistant-mask.js";
import type { TokenizedExample } from "./packing.js";

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

const NO_TEMPLATE_WARNING =
  "the model has no chat template: conversations use tunekit's default (User: … / Assistant: …)";

export interface TokenizeOptions {
  maxSeqLength: number;
  /** "assistant" (default): learn the assistant turns; "all": every token. */
  trainOn?: "assistant" | "all";
}

export interface TokenizedDataset {
  examples: TokenizedExample[];
  /** Examples longer than maxSeqLength, cut to it. */
  truncated: number;
  /** Examples left with nothing to learn (all labels -100), or of a kind local training does not take. */
  skipped: number;
  warnings: string[];
}

/**
 * A chat message as chat templates read it (transformers' convention): text content (null on an
 * assistant message that only calls tools), each call's arguments as an object rather than OpenAI's
 * JSON string, and the tool message's id and name kept.
 */
function templateMessage(message: ChatMessage): MaskMessage {
  const calls = message.tool_calls;
  return {
    role: message.role,
    content: message.content === null && calls ? null : contentText(message.content),
    ...(message.weight !== undefined ? { weight: message.weight } : {}),
    ...(message.name !== undefined ? { name: message.name } : {}),
    ...(message.tool_call_id !== undefined ? { tool_call_id: message.tool_call_id } : {}),
    ...(calls
      ? {
          tool_calls: calls.map((call) => ({
            id: call.id,
            type: call.type,
            function: { name: call.function.name, arguments: parseArguments(call.function.arguments) },
          })),
        }
      : {}),
  };
}

function parseArguments(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/**
 * One example as the trainer takes it, before any cut to a length: its token ids, and labels that
 * are the id where the token is learned and -100 elsewhere. Undefined for a kind local training does
 * not take (a preference pair). Notes on how it was rendered (tunekit's default template, a system
 * message folded into the first user turn) go into `warnings`.
 */
export function tokenizeExample(
  example: Example,
  tokenizer: LocalTokenizer,
  options: { trainOn?: "assistant" | "all"; warnings?: Set<string> } = {},
): TokenizedExample | undefined {
  const trainOn = options.trainOn ?? "assistant";
  const encode = (text: string) => tokenizer.encode(text, { addSpecialTokens: false });
  if (example.kind === "chat") {
    const template = tokenizer.chatTemplate === undefined ? DEFAULT_CHAT_TEMPLATE : undefined;
    if (template !== undefined) options.warnings?.add(NO_TEMPLATE_WARNING);
    const messages: MaskMessage[] = example.messages.map(templateMessage);
    const tools = example.tools as unknown[] | undefined;
    const render = (list: MaskMessage[], renderOptions: { addGenerationPrompt?: boolean } = {}) =>
      tokenizer.applyChatTemplate(list, {
        ...renderOptions,
        ...(template === undefined ? {} : { template }),
        ...(tools ? { tools } : {}),
      });
    const rendered = renderWithSpans(render, messages, { trainOn });
    for (const warning of rendered.warnings) options.warnings?.add(warning);
    return labelTokens(encode, rendered);
  }
  if (example.kind === "completion" || example.kind === "text") {
    // Prompt tokens are context; the completion (or, for text, everything) is learned, then EOS.
    const eos = tokenizer.eosTokenId;
    const prompt = example.kind === "completion" ? tokenizer.encode(example.prompt) : [];
    const target =
      example.kind === "completion" ? encode(example.completion) : tokenizer.encode(example.text);
    const inputIds = [...prompt, ...target, ...(eos === undefined ? [] : [eos])];
    const labels = inputIds.map((id, index) =>
      index < prompt.length && trainOn === "assistant" ? -100 : id,
    );
    return { inputIds, labels };
  }
  return undefined;
}

/**
 * The labels the loss learns from: those set, after the first (the first token of a sequence is never
 * predicted). An example with none is skipped.
 */
export function learnedTokens(labels: readonly number[]): number {
  let learned = 0;
  for (let index = 1; index < labels.length; index++) if (labels[index] !== -100) learned++;
  return learned;
}

export async function tokenizeExamples(
  source: AsyncIterable<Example> | Iterable<Example>,
  tokenizer: LocalTokenizer,
  options: TokenizeOptions,
): Promise<TokenizedDataset> {
  const warnings = new Set<string>();
  if (tokenizer.chatTemplate === undefined) warnings.add(NO_TEMPLATE_WARNING);
  const result: TokenizedDataset = { examples: [], truncated: 0, skipped: 0, warnings: [] };
  for await (const example of source) {
    const tokenized = tokenizeExample(example, tokenizer, {
      trainOn: options.trainOn ?? "assistant",
      warnings,
    });
    if (tokenized === undefined) {
      warnings.add("preference (DPO) examples are not trained locally: they were skipped");
      result.skipped++;
      continue;
    }
    let { inputIds, labels } = tokenized;
    if (inputIds.length > options.maxSeqLength) {
      inputIds = inputIds.slice(0, options.maxSeqLength);
      labels = labels.slice(0, options.maxSeqLength);
      result.truncated++;
    }
    if (learnedTokens(labels) === 0) {
      result.skipped++;
      continue;
    }
    result.examples.push({ inputIds, labels });
  }
  if (result.truncated > 0)
    warnings.add(
      `${result.truncated} example(s) were longer than maxSeqLength (${options.maxSeqLength}) and were cut`,
    );
  result.warnings = [...warnings];
  return result;
}
