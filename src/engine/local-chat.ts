/**
 * A local model as a `ChatTarget`, with its adapter on or off: what `LocalModel` itself answers as,
 * what `trainer.model()` and `trainer.baseModel()` return, and what `local().chat(id)` hands out.
 * Messages are rendered by the model's chat renderer (the template training used), replies end at
 * the template's turn end, and the token-level `generate` / `stream` / `generateBatch` of the model
 * are here too, bound to the view's adapter setting.
 */

import type {
  AnswerLoss,
  ChatCapabilities,
  ChatDelta,
  ChatOptions,
  ChatResult,
  ChatStream,
  ChatTarget,
  TokenLogprob,
} from "../core/chat.js";
import { chatStream } from "../core/chat-stream.js";
import { ValidationError } from "../core/errors.js";
import type { ChatMessage, ToolDefinition } from "../data/example.js";
import { tokenizeConversation } from "./assistant-mask.js";
import { DEFAULT_CHAT_TEMPLATE } from "./chat-template.js";
import type {
  AdapterChoice,
  GenerateInput,
  GenerateOptions,
  GenerateResult,
  LocalModel,
  LossResult,
  StreamChunk,
  TokenLogprobIds,
} from "./local-model.js";
import { contentSoFar, parseToolCalls } from "./tool-calls.js";

/** Most alternatives per token `topLogprobs` may ask for, as OpenAI allows. */
const MAX_TOP_LOGPROBS = 20;

/** A prepared reply: the prompt and the generation options a `ChatOptions` stands for. */
interface Request {
  inputIds: number[];
  generate: GenerateOptions;
  tools: ToolDefinition[] | undefined;
  topLogprobs: number | undefined;
}

export class LocalModelView implements ChatTarget {
  readonly specificationVersion = "v2" as const;
  readonly provider: string;
  readonly modelId: string;
  readonly #model: LocalModel;
  readonly #adapter: AdapterChoice;

  /** `adapter`: the attached adapter (true, applied when one is attached), none, or a resident one. */
  constructor(model: LocalModel, options: { adapter: AdapterChoice; provider?: string; modelId?: string }) {
    this.#model = model;
    this.#adapter = options.adapter;
    this.provider = options.provider ?? "local";
    this.modelId = options.modelId ?? model.path;
  }

  get tokenizer(): LocalModel["tokenizer"] {
    return this.#model.tokenizer;
  }

  /** The adapter this view answers with: the attached one (true), none (false), or a resident one. */
  get adapter(): AdapterChoice {
    return this.#adapter;
  }

  /** The model this view answers with. */
  get model(): LocalModel {
    return this.#model;
  }

  /** How this view renders conversations (a resident adapter's own template, when it has one). */
  get chatRenderer(): LocalModel["chatRenderer"] {
    return this.#model.rendererFor(this.#adapter);
  }

  /** The model folder, quantization, template and (adapter on) the adapter's content hash. */
  get identity(): string {
    return this.#model.identityFor({ adapter: this.#adapter });
  }

  /** Tools where the template renders them (or is tunekit's default, which writes calls as JSON lines). */
  get capabilities(): ChatCapabilities {
    const template = this.chatRenderer.format.template;
    return { tools: template === DEFAULT_CHAT_TEMPLATE || /\btools\b/.test(template), logprobs: true };
  }

  // ---- Token level ------------------------------------------------------------------------------

  generate(input: GenerateInput, options: GenerateOptions = {}): Promise<GenerateResult> {
    return this.#model.generate(input, { ...options, adapter: this.#adapter });
  }

  generateBatch(inputs: GenerateInput[], options: GenerateOptions = {}): Promise<GenerateResult[]> {
    return this.#model.generateBatch(inputs, { ...options, adapter: this.#adapter });
  }

  stream(input: GenerateInput, options: GenerateOptions = {}): AsyncGenerator<StreamChunk, GenerateResult> {
    return this.#model.stream(input, { ...options, adapter: this.#adapter });
  }

  logits(inputIds: ArrayLike<number>): Promise<Float32Array> {
    return this.#model.logits(inputIds, { adapter: this.#adapter });
  }

  loss(inputIds: ArrayLike<number>, labels?: ArrayLike<number>): Promise<LossResult> {
    return this.#model.loss(inputIds, labels, { adapter: this.#adapter });
  }

  // ---- ChatTarget -------------------------------------------------------------------------------

  async complete(messages: ChatMessage[], options: ChatOptions = {}): Promise<ChatResult> {
    const request = this.#request(messages, options);
    return this.#result(await this.generate({ inputIds: request.inputIds }, request.generate), request);
  }

  completeStream(messages: ChatMessage[], options: ChatOptions = {}): ChatStream {
    return chatStream(async (emit, signal) => {
      const request = this.#request(messages, options);
      const tokens = this.stream({ inputIds: request.inputIds }, { ...request.generate, signal });
      // With tools, text from where a call may start is held back until the reply is complete. Each
      // token's log-probabilities go out with the first delta that carries its text.
      let text = "";
      let emitted = 0;
      let pending: TokenLogprob[] = [];
      const withLogprobs = (delta: ChatDelta): ChatDelta => {
        if (pending.length === 0) return delta;
        const out = { ...delta, logprobs: pending };
        pending = [];
        return out;
      };
      let step = await tokens.next();
      while (!step.done) {
        text += step.value.text;
        if (step.value.logprobs) pending.push(this.#tokenLogprob(step.value.logprobs));
        const upTo = request.tools ? contentSoFar(text) : text.length;
        if (upTo > emitted) {
          emit(withLogprobs({ text: text.slice(emitted, upTo) }));
          emitted = upTo;
        }
        step = await tokens.next();
      }
      const result = this.#result(step.value, request);
      const rest: ChatDelta = withLogprobs({ text: result.text.slice(emitted) });
      if (result.toolCalls)
        rest.toolCalls = result.toolCalls.map((call, index) => ({
          index,
          id: call.id,
          name: call.function.name,
          arguments: call.function.arguments,
        }));
      if (rest.text !== "" || rest.toolCalls || rest.logprobs) emit(rest);
      return result;
    }, options.signal);
  }

  /** Every conversation decoded together; conversation i samples with `seed + i`. */
  async completeBatch(conversations: ChatMessage[][], options: ChatOptions = {}): Promise<ChatResult[]> {
    if (!Array.isArray(conversations) || conversations.length === 0)
      throw new ValidationError("invalid_argument", "completeBatch needs a non-empty list of conversations");
    const requests = conversations.map((messages) => this.#request(messages, options));
    const [first] = requests as [Request];
    const results = await this.generateBatch(
      requests.map((request) => ({ inputIds: request.inputIds })),
      first.generate,
    );
    return results.map((result, index) => this.#result(result, requests[index] as Request));
  }

  /**
   * The loss of `expected` as the assistant's reply, exactly as training would score it: the
   * conversation rendered with the template in use, the reply's tokens and its turn's closing labelled.
   */
  async answerLoss(
    messages: ChatMessage[],
    expected: string,
    options: { signal?: AbortSignal; perToken?: boolean } = {},
  ): Promise<AnswerLoss> {
    if (typeof expected !== "string")
      throw new ValidationError("invalid_argument", "answerLoss needs the expected reply as text", {
        location: { path: "expected" },
      });
    checkMessages(messages);
    options.signal?.throwIfAborted();
    // Earlier assistant turns are context: only the expected reply is scored.
    const context = messages.map((message) =>
      message.role === "assistant" ? { ...message, weight: 0 as const } : message,
    );
    const { inputIds, labels } = tokenizeConversation(this.chatRenderer, [
      ...context,
      { role: "assistant", content: expected },
    ]);
    const { loss, tokens, correct } = await this.loss(inputIds, labels);
    if (!options.perToken) return { loss, tokens, correct };
    // One more forward pass for the logits: each labelled token's own loss, as the mean is made of.
    const logits = await this.logits(inputIds);
    const vocab = logits.length / inputIds.length;
    const perToken: Array<{ token: string; loss: number }> = [];
    const tokenizer = this.chatRenderer.tokenizer;
    // A token's text is what it adds to the decoded reply (a SentencePiece token alone loses its space).
    const scored: number[] = [];
    let decoded = "";
    for (let position = 1; position < labels.length; position++) {
      const label = labels[position] as number;
      if (label === -100) continue;
      scored.push(label);
      const text = tokenizer.decode(scored, { skipSpecialTokens: false });
      const token = text.startsWith(decoded)
        ? text.slice(decoded.length)
        : tokenizer.decode([label], { skipSpecialTokens: false });
      decoded = text;
      const row = logits.subarray((position - 1) * vocab, position * vocab);
      let max = Number.NEGATIVE_INFINITY;
      for (const value of row) if (value > max) max = value;
      let sum = 0;
      for (const value of row) sum += Math.exp(value - max);
      perToken.push({ token, loss: max + Math.log(sum) - (row[label] as number) });
    }
    return { loss, tokens, correct, perToken };
  }

  // ---- Helpers ----------------------------------------------------------------------------------

  #request(messages: ChatMessage[], options: ChatOptions): Request {
    checkMessages(messages);
    const tools = options.tools?.length ? options.tools : undefined;
    if (tools && !this.capabilities.tools)
      throw new ValidationError(
        "unsupported",
        "this model's chat template does not render tools: it cannot be offered any (options.tools)",
        { location: { path: "tools" } },
      );
    const top = options.topLogprobs;
    if (top !== undefined && !(Number.isInteger(top) && top >= 0 && top <= MAX_TOP_LOGPROBS))
      throw new ValidationError(
        "invalid_argument",
        `topLogprobs must be an integer in [0, ${MAX_TOP_LOGPROBS}]`,
        {
          location: { path: "topLogprobs" },
        },
      );
    if (
      options.stop !== undefined &&
      !(Array.isArray(options.stop) && options.stop.every((stop) => typeof stop === "string"))
    )
      throw new ValidationError("invalid_argument", "stop must be a list of strings", {
        location: { path: "stop" },
      });
    const { inputIds } = this.chatRenderer.encodePrompt(messages, tools ? { tools } : {});
    const stops = this.#model.chatStops(this.#adapter);
    const generate: GenerateOptions = {
      stop: [...(options.stop ?? []), ...stops.stopStrings],
      stopTokens: stops.stopTokens,
      logprobs: options.logprobs === true,
      ...(options.logprobs ? { topLogprobs: top ?? 0 } : {}),
      ...(options.maxTokens !== undefined ? { maxTokens: options.maxTokens } : {}),
      ...(options.temperature !== undefined ? { temperature: options.temperature } : {}),
      ...(options.topP !== undefined ? { topP: options.topP } : {}),
      ...(options.seed !== undefined ? { seed: options.seed } : {}),
      ...(options.signal !== undefined ? { signal: options.signal } : {}),
    };
    return { inputIds, generate, tools, topLogprobs: options.logprobs ? (top ?? 0) : undefined };
  }

  #result(generation: GenerateResult, request: Request): ChatResult {
    const result: ChatResult = {
      text: generation.text,
      finishReason: generation.finishReason,
      usage: { promptTokens: generation.promptTokens, completionTokens: generation.tokenIds.length },
    };
    if (request.tools) {
      const { content, toolCalls } = parseToolCalls(generation.text, request.tools);
      if (toolCalls.length > 0) {
        result.text = content;
        result.toolCalls = toolCalls;
        if (generation.finishReason === "stop") result.finishReason = "tool_calls";
      }
    }
    if (request.topLogprobs !== undefined && generation.logprobs)
      result.logprobs = generation.logprobs.map((entry) => this.#tokenLogprob(entry));
    return result;
  }

  /** A token's log-probabilities with the tokens' texts. */
  #tokenLogprob(entry: TokenLogprobIds): TokenLogprob {
    const text = (id: number) => this.tokenizer.decode([id], { skipSpecialTokens: false });
    const out: TokenLogprob = { token: text(entry.tokenId), logprob: entry.logprob };
    if (entry.top)
      out.topLogprobs = entry.top.map((alternative) => ({
        token: text(alternative.tokenId),
        logprob: alternative.logprob,
      }));
    return out;
  }
}

function checkMessages(messages: unknown): asserts messages is ChatMessage[] {
  if (!Array.isArray(messages) || messages.length === 0)
    throw new ValidationError("invalid_argument", "a conversation needs at least one message", {
      location: { path: "messages" },
    });
  for (const [index, message] of messages.entries())
    if (typeof message !== "object" || message === null || typeof (message as ChatMessage).role !== "string")
      throw new ValidationError("invalid_argument", "each message needs a role", {
        location: { path: `messages[${index}].role` },
      });
}
