import type { ProblemCode, SourceLocation } from "../../core/errors.js";
import { type Problem, problem } from "../../data/problem.js";

export interface MessageRules {
  roles: readonly string[];
  keys: readonly string[];
  /** Assistant messages may carry `tool_calls` (then content may be null or absent). */
  toolCalls: boolean;
}

const describe = (value: unknown) =>
  value === null ? "null" : Array.isArray(value) ? "an array" : typeof value;

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function validContent(content: unknown): boolean {
  if (typeof content === "string") return true;
  if (!Array.isArray(content) || content.length === 0) return false;
  return content.every(
    (part) =>
      isObject(part) &&
      ((part.type === "text" && typeof part.text === "string") ||
        (part.type === "image_url" && isObject(part.image_url) && typeof part.image_url.url === "string")),
  );
}

/**
 * The OpenAI Cookbook's message checks, under its codes (`message_missing_key`,
 * `message_unrecognized_key`, `unrecognized_role`, `missing_content`), brought up to today's API:
 * tool messages and calls, `weight`, content parts, null content beside tool calls.
 */
export function checkMessages(
  messages: unknown,
  path: string,
  rules: MessageRules,
  location: SourceLocation,
): Problem[] {
  const problems: Problem[] = [];
  const error = (code: ProblemCode, message: string, at: string) =>
    problems.push(problem("error", code, message, location, at));
  if (!Array.isArray(messages) || messages.length === 0) {
    error("missing_messages_list", `${path} must be a non-empty list of messages`, path);
    return problems;
  }
  const callIds = new Set<string>();
  for (const [index, message] of messages.entries()) {
    const at = `${path}[${index}]`;
    if (!isObject(message)) {
      error("data_type", `a message must be an object, not ${describe(message)}`, at);
      continue;
    }
    const unknown = Object.keys(message).filter((key) => !rules.keys.includes(key));
    if (unknown.length > 0) {
      error(
        "message_unrecognized_key",
        `unrecognized key${unknown.length > 1 ? "s" : ""}: ${unknown.join(", ")}`,
        at,
      );
    }
    const { role, content } = message;
    const hasCalls =
      rules.toolCalls &&
      role === "assistant" &&
      (message.tool_calls !== undefined || message.function_call !== undefined);
    if (!("role" in message)) error("message_missing_key", "message has no role", at);
    else if (typeof role !== "string" || !rules.roles.includes(role)) {
      error(
        "unrecognized_role",
        `role must be one of ${rules.roles.join(", ")}, got ${JSON.stringify(role)}`,
        `${at}.role`,
      );
    }
    if (!("content" in message) && !hasCalls) error("message_missing_key", "message has no content", at);
    else if ("content" in message && !(content === null && hasCalls) && !validContent(content)) {
      error(
        "missing_content",
        `content must be a string or a list of text/image parts, got ${describe(content)}`,
        `${at}.content`,
      );
    } else if (content === "" && !hasCalls) {
      problems.push(problem("warning", "empty_content", "content is empty", location, `${at}.content`));
    }
    if ("name" in message && typeof message.name !== "string")
      error("invalid_name", "name must be a string", `${at}.name`);
    if ("weight" in message) {
      if (role !== "assistant")
        error("invalid_weight", "weight is only allowed on assistant messages", `${at}.weight`);
      else if (message.weight !== 0 && message.weight !== 1) {
        error(
          "invalid_weight",
          `weight must be 0 or 1, got ${JSON.stringify(message.weight)}`,
          `${at}.weight`,
        );
      }
    }
    if (rules.toolCalls && "tool_calls" in message) {
      const calls = message.tool_calls;
      if (role !== "assistant")
        error("invalid_tool_calls", "tool_calls are only allowed on assistant messages", `${at}.tool_calls`);
      else if (!Array.isArray(calls) || calls.length === 0)
        error("invalid_tool_calls", "tool_calls must be a non-empty list", `${at}.tool_calls`);
      else {
        for (const [callIndex, call] of calls.entries()) {
          const callAt = `${at}.tool_calls[${callIndex}]`;
          const fn = isObject(call) ? call.function : undefined;
          if (!isObject(call) || typeof call.id !== "string" || call.type !== "function" || !isObject(fn)) {
            error(
              "invalid_tool_calls",
              'a tool call needs id, type "function" and function {name, arguments}',
              callAt,
            );
          } else if (typeof fn.name !== "string" || typeof fn.arguments !== "string") {
            error(
              "invalid_tool_calls",
              "function.name and function.arguments (a JSON string) must be strings",
              `${callAt}.function`,
            );
          } else {
            callIds.add(call.id);
          }
        }
      }
    }
    if (rules.toolCalls && role === "tool") {
      const id = message.tool_call_id;
      if (typeof id !== "string")
        error("missing_tool_call_id", "a tool message needs the tool_call_id it answers", at);
      else if (!callIds.has(id))
        error(
          "unknown_tool_call_id",
          `no earlier assistant tool call has id ${JSON.stringify(id)}`,
          `${at}.tool_call_id`,
        );
    }
  }
  return problems;
}

/** Checks the `tools` (or legacy `functions`) list of a record. */
export function checkTools(record: Record<string, unknown>, location: SourceLocation, base = ""): Problem[] {
  const problems: Problem[] = [];
  for (const key of ["tools", "functions"] as const) {
    if (!(key in record)) continue;
    const list = record[key];
    const at = base ? `${base}.${key}` : key;
    if (!Array.isArray(list)) {
      problems.push(problem("error", "invalid_tools", `${key} must be a list`, location, at));
      continue;
    }
    for (const [index, tool] of list.entries()) {
      const fn =
        key === "tools" ? (isObject(tool) && tool.type === "function" ? tool.function : undefined) : tool;
      if (!isObject(fn) || typeof fn.name !== "string") {
        const shape =
          key === "tools" ? '{type: "function", function: {name, parameters}}' : "{name, parameters}";
        problems.push(
          problem("error", "invalid_tools", `each entry must be ${shape}`, location, `${at}[${index}]`),
        );
      }
    }
  }
  return problems;
}

export { isObject };

/** Each of `keys` must hold a string (an instruction or text record's fields). */
export function checkStrings(
  record: Record<string, unknown>,
  keys: string[],
  location: SourceLocation,
): Problem[] {
  return keys
    .filter((key) => typeof record[key] !== "string")
    .map((key) => problem("error", "missing_content", `${key} must be a string`, location, key));
}
