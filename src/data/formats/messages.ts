import { z } from "zod";
import type { ChatMessage, ContentPart, Example, ToolCall, ToolDefinition } from "../example.js";

/* Zod schemas shared by the chat-shaped formats, and the conversion of OpenAI's legacy function calling. */

const textPart = z.object({ type: z.literal("text"), text: z.string() });
const imagePart = z.object({
  type: z.literal("image_url"),
  image_url: z.object({ url: z.string(), detail: z.enum(["auto", "low", "high"]).optional() }),
});
export const contentSchema = z.union([
  z.string(),
  z.array(z.discriminatedUnion("type", [textPart, imagePart])),
]);

const functionCall = z.object({ name: z.string(), arguments: z.string() });
export const toolCallSchema = z.object({
  id: z.string(),
  type: z.literal("function"),
  function: functionCall,
});

export const toolDefinitionSchema = z.object({
  type: z.literal("function"),
  function: z.object({
    name: z.string(),
    description: z.string().optional(),
    parameters: z.record(z.string(), z.unknown()).optional(),
    strict: z.boolean().optional(),
  }),
});

const legacyFunctionSchema = toolDefinitionSchema.shape.function;

export const messageSchema = z
  .object({
    role: z.enum(["system", "developer", "user", "assistant", "tool", "function"]),
    content: contentSchema.nullable().optional(),
    name: z.string().optional(),
    weight: z.union([z.literal(0), z.literal(1)]).optional(),
    tool_calls: z.array(toolCallSchema).optional(),
    tool_call_id: z.string().optional(),
    function_call: functionCall.optional(),
  })
  .refine(
    (message) => typeof message.content === "string" || Array.isArray(message.content) || isCall(message),
    {
      message:
        "content must be a string or a list of parts (null only on an assistant message with tool_calls)",
      path: ["content"],
    },
  );

export type WireMessage = z.infer<typeof messageSchema>;

export const toolsSchema = z.array(toolDefinitionSchema);
export const functionsSchema = z.array(legacyFunctionSchema);

function isCall(message: { role: string; tool_calls?: unknown; function_call?: unknown }): boolean {
  return (
    message.role === "assistant" && (message.tool_calls !== undefined || message.function_call !== undefined)
  );
}

/**
 * Wire messages → canonical messages. `developer` becomes `system`; legacy `function_call` becomes a
 * tool call with a made-up id and a `function` message becomes the `tool` message answering it.
 */
export function toCanonicalMessages(messages: readonly WireMessage[]): ChatMessage[] {
  const lastCallId = new Map<string, string>();
  let calls = 0;
  return messages.map((message) => {
    const role =
      message.role === "developer" ? "system" : message.role === "function" ? "tool" : message.role;
    const result: ChatMessage = { role, content: (message.content ?? null) as ChatMessage["content"] };
    if (message.name !== undefined && message.role !== "function") result.name = message.name;
    if (message.weight !== undefined) result.weight = message.weight;
    const toolCalls: ToolCall[] = message.tool_calls ? message.tool_calls.map((call) => ({ ...call })) : [];
    if (message.function_call) {
      toolCalls.push({ id: `call_${++calls}`, type: "function", function: { ...message.function_call } });
    }
    for (const call of toolCalls) lastCallId.set(call.function.name, call.id);
    if (toolCalls.length > 0) result.tool_calls = toolCalls;
    if (message.tool_call_id !== undefined) result.tool_call_id = message.tool_call_id;
    else if (message.role === "function" && message.name !== undefined) {
      const id = lastCallId.get(message.name);
      if (id !== undefined) result.tool_call_id = id;
      result.name = message.name;
    }
    return result;
  });
}

export function toCanonicalTools(
  tools: z.infer<typeof toolsSchema> | undefined,
  functions: z.infer<typeof functionsSchema> | undefined,
): ToolDefinition[] | undefined {
  const list = tools ?? functions?.map((fn) => ({ type: "function" as const, function: fn }));
  return list?.map((tool) => ({ type: "function", function: stripUndefined(tool.function) }));
}

/** Canonical message → OpenAI wire message (the same shape, without fields that are unset). */
export function toWireMessage(message: ChatMessage): Record<string, unknown> {
  const wire: Record<string, unknown> = { role: message.role, content: message.content };
  if (message.name !== undefined) wire.name = message.name;
  if (message.tool_calls !== undefined) wire.tool_calls = message.tool_calls;
  if (message.tool_call_id !== undefined) wire.tool_call_id = message.tool_call_id;
  if (message.weight !== undefined) wire.weight = message.weight;
  return wire;
}

/** A completion example seen as a chat: one user turn and one assistant turn. */
export function asChat(example: Example): ChatMessage[] | undefined {
  if (example.kind === "chat") return example.messages;
  if (example.kind === "completion") {
    return [
      { role: "user", content: example.prompt },
      { role: "assistant", content: example.completion },
    ];
  }
  return undefined;
}

export function stripUndefined<T extends object>(value: T): { [K in keyof T]: Exclude<T[K], undefined> } {
  const result: Record<string, unknown> = {};
  for (const [key, entry] of Object.entries(value)) if (entry !== undefined) result[key] = entry;
  return result as { [K in keyof T]: Exclude<T[K], undefined> };
}

export type { ContentPart };
