/**
 * `ChatTarget`, version 2: "a model you send chat messages to", whole or streamed. Local models, the
 * trainer's views, the local provider, OpenAI, Together, any OpenAI-compatible server and the test
 * doubles implement it; the Evaluator and the server stand on it. Types only: no behaviour lives here.
 */
import type { ChatMessage, ToolCall, ToolDefinition } from "../data/example.js";

/** Why a reply ended. */
export type FinishReason =
  /** The model ended its turn, or a stop string or stop token came. */
  | "stop"
  /** `maxTokens` (or the model's context) ran out. */
  | "length"
  /** The model called tools: `toolCalls` holds the calls. */
  | "tool_calls"
  /** The caller's signal aborted a reply under way; `text` holds what came before. */
  | "abort"
  /** A cloud provider's content filter cut the reply. */
  | "content_filter";

export interface ChatOptions {
  /** New tokens at most. Default: the target's own (a local model's generation_config, else 256). */
  maxTokens?: number;
  /** 0 is greedy. Default: the target's own. */
  temperature?: number;
  /** Nucleus sampling. Default: the target's own. */
  topP?: number;
  /** Texts that end the reply; the reply stops before them. */
  stop?: string[];
  /** The same seed, messages and settings give the same reply where the target is deterministic. */
  seed?: number;
  /** Functions the model may call (targets whose `capabilities.tools` is true). */
  tools?: ToolDefinition[];
  /** Return each generated token's log-probability (targets whose `capabilities.logprobs` is true). */
  logprobs?: boolean;
  /** With `logprobs`: this many most likely alternatives per token. Default 0. */
  topLogprobs?: number;
  signal?: AbortSignal;
}

export interface ChatUsage {
  promptTokens: number;
  completionTokens: number;
}

export interface TokenLogprob {
  token: string;
  logprob: number;
  /** With `topLogprobs`: the most likely tokens at this position, most likely first. */
  topLogprobs?: { token: string; logprob: number }[];
}

export interface ChatResult {
  /** The reply's text (without the tool calls' markup). */
  text: string;
  finishReason: FinishReason;
  /** The calls of a reply with `finishReason: "tool_calls"`. */
  toolCalls?: ToolCall[];
  /** With `logprobs`: one entry per generated token. */
  logprobs?: TokenLogprob[];
  /** Tokens read and written. Every tunekit target reports it; an OpenAI-compatible server may not. */
  usage?: ChatUsage;
}

/** Part of a streamed tool call: the first delta of call `index` names it, later ones add arguments. */
export interface ToolCallDelta {
  index: number;
  id?: string;
  name?: string;
  /** The next characters of the JSON arguments. */
  arguments?: string;
}

/** A piece of a streamed reply. The `text` of all deltas joined is the result's `text`. */
export interface ChatDelta {
  text: string;
  toolCalls?: ToolCallDelta[];
  /** With `logprobs`: those of the tokens this delta's text comes from (targets that stream them). */
  logprobs?: TokenLogprob[];
}

/**
 * A reply as it is generated: iterate it for the deltas (once); `result` resolves to what `complete`
 * returns once the reply has ended, and rejects if it failed. Leaving the loop early ends the reply
 * (`finishReason: "abort"`).
 */
export interface ChatStream extends AsyncIterable<ChatDelta> {
  readonly result: Promise<ChatResult>;
}

/** The loss of an expected reply under the model: how likely the model finds it, token by token. */
export interface AnswerLoss {
  /** Mean cross-entropy of the reply's tokens (and the end of its turn), in nats. */
  loss: number;
  /** Tokens scored. */
  tokens: number;
  /** Tokens that greedy decoding would have chosen. */
  correct: number;
  /** With `perToken`: each scored token's text and loss (nats), in order. */
  perToken?: Array<{ token: string; loss: number }>;
}

/** What a target supports beyond `complete` and `completeStream`; callers test these before relying on them. */
export interface ChatCapabilities {
  /** `tools` are rendered or sent, and calls come back as `toolCalls`. */
  tools: boolean;
  /** `logprobs` / `topLogprobs` are honoured. */
  logprobs: boolean;
}

/** A model that takes chat messages and gives back text, whole or streamed. */
export interface ChatTarget {
  readonly specificationVersion: "v2";
  /** `local`, `openai`, `together`, `openai-compatible`, `mock`, … */
  readonly provider: string;
  /** The model as the caller named it. */
  readonly modelId: string;
  /**
   * A stable string naming exactly what answers: the provider, the endpoint and the model, and for a
   * local model the weights' quantization, the adapter's content hash and the chat template. It
   * changes when the adapter's weights change: a cache key for evaluations.
   */
  readonly identity: string;
  readonly capabilities: ChatCapabilities;
  complete(messages: ChatMessage[], options?: ChatOptions): Promise<ChatResult>;
  completeStream(messages: ChatMessage[], options?: ChatOptions): ChatStream;
  /**
   * Several conversations at once (local models decode them as one batch). Conversation i samples
   * with `seed + i`, so each result is what `complete` gives it with that seed.
   */
  completeBatch?(conversations: ChatMessage[][], options?: ChatOptions): Promise<ChatResult[]>;
  /** The loss of `expected` as the assistant's reply to `messages` (local models). */
  answerLoss?(
    messages: ChatMessage[],
    expected: string,
    options?: { signal?: AbortSignal; perToken?: boolean },
  ): Promise<AnswerLoss>;
}
