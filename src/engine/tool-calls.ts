/**
 * Tool calls in a local model's reply. Open models write them in one of two ways, and both are read:
 *
 * - Hermes / Qwen 2.5: `<tool_call>\n{"name": …, "arguments": {…}}\n</tool_call>` (the closing tag
 *   may be missing when the reply stopped at the end of turn);
 * - a JSON object alone on a line, `{"name": …, "arguments": {…}}` (tunekit's default template writes
 *   calls so) or `{"name": …, "parameters": {…}}` (Llama 3.1 and 3.2, after `<|python_tag|>` or not).
 *
 * Only calls of the tools offered count. The calls' text is taken out of the reply's content.
 */
import { createHash } from "node:crypto";
import type { ToolCall, ToolDefinition } from "../data/example.js";

const TAGGED = /<tool_call>\s*([\s\S]*?)\s*(?:<\/tool_call>|$)/g;

/** The content of a reply without its tool calls, and the calls, in order. */
export function parseToolCalls(
  text: string,
  tools: readonly ToolDefinition[],
): { content: string; toolCalls: ToolCall[] } {
  const names = new Set(tools.map((tool) => tool.function.name));
  const found: { start: number; end: number; name: string; arguments: string }[] = [];
  for (const match of text.matchAll(TAGGED)) {
    const call = readCall(match[1] as string, names);
    if (call) found.push({ start: match.index, end: match.index + match[0].length, ...call });
  }
  if (found.length === 0) {
    let offset = 0;
    for (const line of text.split("\n")) {
      // Llama 3.1 may open a call with its <|python_tag|> token, when special tokens are kept.
      const trimmed = line.trim().replace(/^<\|python_tag\|>/, "");
      const call = trimmed.startsWith("{") ? readCall(trimmed, names) : undefined;
      if (call) found.push({ start: offset, end: offset + line.length, ...call });
      offset += line.length + 1;
    }
  }
  if (found.length === 0) return { content: text, toolCalls: [] };
  let content = "";
  let from = 0;
  for (const call of found) {
    content += text.slice(from, call.start);
    from = call.end;
  }
  // Trailing whitespace (the newline before a call) goes with the call.
  content = (content + text.slice(from)).trimEnd();
  const toolCalls = found.map((call, index) => ({
    id: `call_${createHash("sha256").update(`${index}\u0000${text}`).digest("hex").slice(0, 24)}`,
    type: "function" as const,
    function: { name: call.name, arguments: call.arguments },
  }));
  return { content, toolCalls };
}

/**
 * How much of a reply under way is surely content: up to where a tool call may start (`<tool_call>`,
 * or a line starting with "{"), less the whitespace before it, which goes with a call.
 */
export function contentSoFar(text: string): number {
  const tagged = text.indexOf("<tool_call>");
  const newline = text.indexOf("\n{");
  const line = text.startsWith("{") ? 0 : newline < 0 ? -1 : newline + 1;
  const starts = [tagged, line].filter((at) => at >= 0);
  const end = starts.length === 0 ? text.length : Math.min(...starts);
  return text.slice(0, end).trimEnd().length;
}

function readCall(json: string, names: ReadonlySet<string>): { name: string; arguments: string } | undefined {
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch {
    return undefined;
  }
  if (typeof value !== "object" || value === null) return undefined;
  const record = value as Record<string, unknown>;
  const name = record.name;
  const args = record.arguments ?? record.parameters ?? {};
  if (typeof name !== "string" || !names.has(name)) return undefined;
  return { name, arguments: typeof args === "string" ? args : JSON.stringify(args) };
}
