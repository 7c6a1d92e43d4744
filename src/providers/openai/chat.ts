/**
 * OpenAI's chat models, and any OpenAI-compatible server (`openai({ baseURL })`: vLLM, llama.cpp's
 * server, Ollama, `tunekit serve`), as a `ChatTarget` over the official SDK's `chat.completions.create`,
 * whole or streamed.
 */
import type OpenAI from "openai";
import type { ChatCapabilities, ChatOptions, ChatResult, ChatTarget } from "../../core/chat.js";
import { chatStream } from "../../core/chat-stream.js";
import { ProviderError, ValidationError } from "../../core/errors.js";
import type { ChatMessage } from "../../data/example.js";
import {
  ChunkAccumulator,
  chatChunkSchema,
  chatCompletionSchema,
  requestBody,
  resultOf,
  type WireDialect,
} from "../chat-completions.js";
import type { CallOptions } from "../spec.js";
import { PROVIDER } from "./objects.js";

/** How the provider runs one SDK call: the client, error mapping and the caller's signal. */
export type Call = <T>(
  options: CallOptions | undefined,
  run: (client: OpenAI, request: { signal?: AbortSignal }) => Promise<T>,
) => Promise<T>;

/** Which server answers: OpenAI's own API, or another that speaks its protocol at `baseURL`. */
export interface ChatEndpoint {
  /** Undefined for the provider's own API. */
  baseURL: string | undefined;
  /** The provider whose own API it is: "openai" (default) or "nebius", which follows OpenAI's. */
  provider?: string;
}

const CAPABILITIES: ChatCapabilities = { tools: true, logprobs: true };

/** A chat target over `POST /chat/completions`. */
export function chatTarget(modelId: string, call: Call, endpoint: ChatEndpoint): ChatTarget {
  if (typeof modelId !== "string" || modelId.trim() === "") {
    throw new ValidationError("invalid_argument", "chat() needs a model id", {
      location: { path: "modelId" },
    });
  }
  const compatible = endpoint.baseURL !== undefined;
  const own = endpoint.provider ?? PROVIDER;
  const dialect: WireDialect = {
    provider: compatible ? "openai-compatible" : own,
    // Other servers know the older name; OpenAI's reasoning models take only the new one.
    maxTokens: compatible || own !== PROVIDER ? "max_tokens" : "max_completion_tokens",
    logprobs: "openai",
  };
  const body = (messages: ChatMessage[], options: ChatOptions, stream: boolean) =>
    requestBody(modelId, messages, options, dialect, stream) as unknown as OpenAI.ChatCompletionCreateParams;
  return {
    specificationVersion: "v2",
    provider: compatible ? "openai-compatible" : own,
    modelId,
    identity: compatible ? `openai-compatible:${endpoint.baseURL}#${modelId}` : `${own}:${modelId}`,
    capabilities: CAPABILITIES,
    async complete(messages, options = {}) {
      const request = body(messages, options, false) as OpenAI.ChatCompletionCreateParamsNonStreaming;
      const completion = await call(options, (client, sdk) => client.chat.completions.create(request, sdk));
      return resultOf(parse(chatCompletionSchema, completion));
    },
    completeStream(messages, options = {}) {
      const request = body(messages, options, true) as OpenAI.ChatCompletionCreateParamsStreaming;
      return chatStream(async (emit, signal) => {
        signal.throwIfAborted();
        const answer = new ChunkAccumulator();
        // The signal goes to the SDK alone: an abort ends the reading, and the reply so far is the result.
        return call({}, async (client): Promise<ChatResult> => {
          try {
            const stream = await client.chat.completions.create(request, { signal });
            for await (const chunk of stream) {
              const delta = answer.push(parse(chatChunkSchema, chunk));
              if (delta) emit(delta);
            }
          } catch (error) {
            if (signal.aborted) return answer.result("abort");
            throw error;
          }
          return signal.aborted ? answer.result("abort") : answer.result();
        });
      }, options.signal);
    },
  };
}

/** An SDK object checked against the protocol's schema (the SDK does not check what servers send). */
function parse<S extends typeof chatCompletionSchema | typeof chatChunkSchema>(schema: S, value: unknown) {
  const parsed = schema.safeParse(value);
  if (parsed.success) return parsed.data as ReturnType<S["parse"]>;
  const issue = parsed.error.issues[0];
  const where = issue?.path.length ? ` at ${issue.path.join(".")}` : "";
  throw new ProviderError(
    "invalid_response",
    `unexpected answer from the chat API: ${issue?.message ?? "invalid"}${where}`,
    {
      provider: PROVIDER,
      cause: parsed.error,
    },
  );
}
