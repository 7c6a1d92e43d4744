/**
 * The canonical example: the one shape every file format converts to and from. Chat messages use
 * the field names of OpenAI's chat format (`tool_calls`, `tool_call_id`), so a chat example is written
 * to OpenAI JSONL without renaming anything.
 */

export type Role = "system" | "user" | "assistant" | "tool";

export interface TextPart {
  type: "text";
  text: string;
}

export interface ImagePart {
  type: "image_url";
  image_url: { url: string; detail?: "auto" | "low" | "high" };
}

export type ContentPart = TextPart | ImagePart;

export interface ToolCall {
  id: string;
  type: "function";
  function: { name: string; arguments: string };
}

export interface ToolDefinition {
  type: "function";
  function: { name: string; description?: string; parameters?: Record<string, unknown>; strict?: boolean };
}

export interface ChatMessage {
  role: Role;
  /** Null only on an assistant message that carries `tool_calls`. */
  content: string | ContentPart[] | null;
  name?: string;
  /** On assistant messages: 0 leaves the message out of the loss, 1 (the default) trains on it. */
  weight?: 0 | 1;
  tool_calls?: ToolCall[];
  /** On tool messages: the id of the call this message answers. */
  tool_call_id?: string;
}

/** A conversation to learn the assistant turns of (supervised fine-tuning). */
export interface ChatExample {
  kind: "chat";
  messages: ChatMessage[];
  tools?: ToolDefinition[];
  parallel_tool_calls?: boolean;
}

/** A prompt with a preferred and a rejected reply (DPO). */
export interface PreferenceExample {
  kind: "preference";
  /** The conversation so far, ending before the reply. */
  input: ChatMessage[];
  tools?: ToolDefinition[];
  parallel_tool_calls?: boolean;
  preferred: ChatMessage[];
  rejected: ChatMessage[];
}

/** A raw prompt and its continuation (instruction format without a chat template). */
export interface CompletionExample {
  kind: "completion";
  prompt: string;
  completion: string;
}

/** Plain text to learn every token of (continued pre-training). */
export interface TextExample {
  kind: "text";
  text: string;
}

export type Example = ChatExample | PreferenceExample | CompletionExample | TextExample;

export type ExampleKind = Example["kind"];

/** The text of a message's content: string content as is, text parts joined, images left out. */
export function contentText(content: ChatMessage["content"]): string {
  if (content === null) return "";
  if (typeof content === "string") return content;
  let text = "";
  for (const part of content) if (part.type === "text") text += part.text;
  return text;
}
