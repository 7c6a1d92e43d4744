/**
 * `MockChatTarget`: a scripted `ChatTarget` for unit tests of code that talks to models (an
 * evaluation, a server, an app): it answers what you script, honours the options as a real model
 * would (stop strings, maxTokens, abort, streaming, batches), counts tokens as words, and records
 * every call. No network, no model.
 */

import type {
  AnswerLoss,
  ChatCapabilities,
  ChatOptions,
  ChatResult,
  ChatStream,
  ChatTarget,
  FinishReason,
} from "../core/chat.js";
import { chatStream, cutAtStop } from "../core/chat-stream.js";
import { ValidationError } from "../core/errors.js";
import { type ChatMessage, contentText, type ToolCall } from "../data/example.js";

/** One scripted answer: its text, or more of a result (tool calls, a finish reason), or an error to throw. */
export type MockReply = string | (Partial<Omit<ChatResult, "usage">> & { text?: string }) | Error;

/** What a scripted function is told about the call it answers. */
export interface MockChatCall {
  method: "complete" | "completeStream" | "completeBatch" | "answerLoss";
  messages: ChatMessage[];
  options: ChatOptions;
  /** 0 for the first call of this target. */
  index: number;
}

export interface MockChatTargetOptions {
  /**
   * The answers: one for every call, a list taken one per call (the last repeats), or a function of
   * the call. Default: "echo: " and the last user message.
   */
  reply?: MockReply | MockReply[] | ((call: MockChatCall) => MockReply | Promise<MockReply>);
  /** Default "mock". */
  provider?: string;
  /** Default "mock-model". */
  modelId?: string;
  /** Default `${provider}:${modelId}`. */
  identity?: string;
  /** Default: tools and logprobs both supported. */
  capabilities?: Partial<ChatCapabilities>;
  /** Gives the target an `answerLoss`: the loss of an expected reply, scripted. */
  answerLoss?: (messages: ChatMessage[], expected: string) => AnswerLoss | Promise<AnswerLoss>;
  /** Milliseconds between streamed deltas (for tests that abort a stream under way). Default 0. */
  delayMs?: number;
}

/** A scripted model. Tokens are words with the whitespace before them. */
export class MockChatTarget implements ChatTarget {
  readonly specificationVersion = "v2" as const;
  readonly provider: string;
  readonly modelId: string;
  readonly identity: string;
  readonly capabilities: ChatCapabilities;
  /** Every call, in order. */
  readonly calls: MockChatCall[] = [];
  readonly answerLoss?: (
    messages: ChatMessage[],
    expected: string,
    options?: { signal?: AbortSignal },
  ) => Promise<AnswerLoss>;
  readonly #options: MockChatTargetOptions;

  constructor(options: MockChatTargetOptions = {}) {
    this.#options = options;
    this.provider = options.provider ?? "mock";
    this.modelId = options.modelId ?? "mock-model";
    this.identity = options.identity ?? `${this.provider}:${this.modelId}`;
    this.capabilities = { tools: true, logprobs: true, ...options.capabilities };
    const score = options.answerLoss;
    if (score)
      this.answerLoss = async (messages, expected, callOptions = {}) => {
        checkMessages(messages);
        callOptions.signal?.throwIfAborted();
        this.#record("answerLoss", messages, {});
        return score(messages, expected);
      };
  }

  async complete(messages: ChatMessage[], options: ChatOptions = {}): Promise<ChatResult> {
    const reply = await this.#reply("complete", messages, options);
    return shape(reply, messages, options);
  }

  completeStream(messages: ChatMessage[], options: ChatOptions = {}): ChatStream {
    return chatStream(async (emit, signal) => {
      const result = shape(await this.#reply("completeStream", messages, options), messages, options);
      let text = "";
      for (const piece of tokens(result.text)) {
        if (this.#options.delayMs) await sleep(this.#options.delayMs);
        if (signal.aborted) return { ...result, text, finishReason: "abort" };
        emit({ text: piece });
        text += piece;
      }
      if (result.toolCalls)
        emit({
          text: "",
          toolCalls: result.toolCalls.map((call, index) => ({
            index,
            id: call.id,
            name: call.function.name,
            arguments: call.function.arguments,
          })),
        });
      return result;
    }, options.signal);
  }

  /** Each conversation answered in turn; conversation i is told `seed + i`. */
  async completeBatch(conversations: ChatMessage[][], options: ChatOptions = {}): Promise<ChatResult[]> {
    if (!Array.isArray(conversations) || conversations.length === 0)
      throw new ValidationError("invalid_argument", "completeBatch needs a non-empty list of conversations");
    const results: ChatResult[] = [];
    for (const [index, messages] of conversations.entries()) {
      const own = options.seed === undefined ? options : { ...options, seed: options.seed + index };
      results.push(shape(await this.#reply("completeBatch", messages, own), messages, own));
    }
    return results;
  }

  #record(method: MockChatCall["method"], messages: ChatMessage[], options: ChatOptions): MockChatCall {
    const call = { method, messages, options, index: this.calls.length };
    this.calls.push(call);
    return call;
  }

  async #reply(
    method: MockChatCall["method"],
    messages: ChatMessage[],
    options: ChatOptions,
  ): Promise<Exclude<MockReply, Error>> {
    checkMessages(messages);
    options.signal?.throwIfAborted();
    if (options.tools?.length && !this.capabilities.tools)
      throw new ValidationError("unsupported", `${this.provider}: this target takes no tools`);
    const call = this.#record(method, messages, options);
    const script = this.#options.reply;
    let reply: MockReply;
    if (script === undefined) reply = `echo: ${lastUserText(messages)}`;
    else if (typeof script === "function") reply = await script(call);
    else if (Array.isArray(script)) reply = script[Math.min(call.index, script.length - 1)] as MockReply;
    else reply = script;
    if (reply instanceof Error) throw reply;
    return reply;
  }
}

/** A scripted reply as a model would give it under these options: stop strings, maxTokens, usage. */
function shape(reply: Exclude<MockReply, Error>, messages: ChatMessage[], options: ChatOptions): ChatResult {
  const scripted = typeof reply === "string" ? { text: reply } : reply;
  let text = scripted.text ?? "";
  let finishReason: FinishReason =
    scripted.finishReason ?? (scripted.toolCalls?.length ? "tool_calls" : "stop");
  const cut = cutAtStop(text, options.stop);
  if (cut.stopped) {
    text = cut.text;
    finishReason = "stop";
  }
  const pieces = tokens(text);
  if (options.maxTokens !== undefined && pieces.length > options.maxTokens) {
    text = pieces.slice(0, options.maxTokens).join("");
    finishReason = "length";
  }
  const completionTokens = tokens(text).length;
  const result: ChatResult = {
    text,
    finishReason,
    usage: {
      promptTokens: messages.reduce((sum, message) => sum + tokens(contentText(message.content)).length, 0),
      completionTokens,
    },
  };
  const toolCalls: ToolCall[] | undefined = finishReason === "tool_calls" ? scripted.toolCalls : undefined;
  if (toolCalls?.length) result.toolCalls = toolCalls;
  if (options.logprobs)
    result.logprobs =
      scripted.logprobs ??
      tokens(text).map((token) => ({
        token,
        logprob: CHOSEN_LOGPROB,
        ...(options.topLogprobs
          ? {
              topLogprobs: Array.from({ length: options.topLogprobs }, (_, rank) => ({
                token: rank === 0 ? token : `${token}${rank}`,
                logprob: rank === 0 ? CHOSEN_LOGPROB : CHOSEN_LOGPROB - 2 - rank,
              })),
            }
          : {}),
      }));
  return result;
}

/** How likely the mock finds each word it says (about 90%); its made-up alternatives far less. */
const CHOSEN_LOGPROB = -0.1;

/** Words with the whitespace before them (and any whitespace at the end): the mock's tokens. */
function tokens(text: string): string[] {
  return text.match(/\s*\S+|\s+$/g) ?? [];
}

function lastUserText(messages: ChatMessage[]): string {
  const last = [...messages].reverse().find((message) => message.role === "user");
  return last ? contentText(last.content) : "";
}

function checkMessages(messages: unknown): void {
  if (!Array.isArray(messages) || messages.length === 0)
    throw new ValidationError("invalid_argument", "a conversation needs at least one message", {
      location: { path: "messages" },
    });
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
