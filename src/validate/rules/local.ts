import type { SourceLocation } from "../../core/errors.js";
import { type Problem, problem } from "../../data/problem.js";
import { checkMessages, isObject, type MessageRules } from "./messages.js";
import type { RuleSet } from "./rule-set.js";

/**
 * What the local trainer hands the chat template (src/local/tokenize.ts): role, text content and
 * weight. Tool calls are among the keys only so that they get their own, clearer error below.
 */
const MESSAGE_RULES: MessageRules = {
  roles: ["system", "user", "assistant"],
  keys: ["role", "content", "weight", "name", "tool_calls", "function_call", "tool_call_id"],
  toolCalls: false,
};

const CALL_KEYS = ["tool_calls", "function_call", "tool_call_id"] as const;

function checkChat(record: Record<string, unknown>, location: SourceLocation): Problem[] {
  const found = checkMessages(record.messages, "messages", MESSAGE_RULES, location);
  const messages = Array.isArray(record.messages) ? record.messages : [];
  const withCalls = new Set<string>();
  const extra: Problem[] = [];
  for (const [index, message] of messages.entries()) {
    if (!isObject(message)) continue;
    const at = `messages[${index}]`;
    for (const key of CALL_KEYS) {
      if (!(key in message)) continue;
      withCalls.add(`${at}.content`);
      const text = `${key}: local training renders text turns only; the chat template would not see tool calls`;
      extra.push(problem("error", "unsupported_tool_calls", text, location, `${at}.${key}`));
    }
    if ("name" in message) {
      const text = "name is not passed to the chat template: local training ignores it";
      extra.push(problem("warning", "ignored_key", text, location, `${at}.name`));
    }
    if (Array.isArray(message.content) && message.content.some((part) => part?.type === "image_url")) {
      const text = "image parts are left out: local training is text only";
      extra.push(problem("warning", "ignored_images", text, location, `${at}.content`));
    }
  }
  // A message with tool calls already has its error; its null content adds nothing.
  const problems = found.filter(
    (entry) => !(entry.code === "missing_content" && withCalls.has(entry.path ?? "")),
  );
  problems.push(...extra);
  const ignored = Object.keys(record).filter((key) => key !== "messages");
  if (ignored.length > 0) {
    const text = `keys local training ignores: ${ignored.join(", ")}`;
    problems.push(problem("warning", "unrecognized_key", text, location));
  }
  const objects = messages.filter(isObject);
  if (objects.length > 0 && !objects.some((message) => message.role === "assistant")) {
    problems.push(
      problem("error", "example_missing_assistant_message", "no assistant message to learn from", location),
    );
  }
  return problems;
}

function checkStrings(record: Record<string, unknown>, keys: string[], location: SourceLocation): Problem[] {
  const problems: Problem[] = [];
  for (const key of keys) {
    if (typeof record[key] !== "string")
      problems.push(problem("error", "missing_content", `${key} must be a string`, location, key));
  }
  const learned = keys[keys.length - 1] as string;
  if (record[learned] === "") {
    const text = `${learned} is empty: at most the end-of-text token is learned`;
    problems.push(problem("warning", "empty_content", text, location, learned));
  }
  return problems;
}

/**
 * The local trainer's rules (src/local/tokenize.ts): chat, completion and text examples, supervised
 * only (a preference pair is an error: it would be skipped); chat messages are system, user and
 * assistant text turns, `weight` 0 or 1 on assistant messages, at least one assistant message. No
 * minimum beyond one example and no file size limit. The Validator adds the exact token counts.
 */
export const localRules: RuleSet = {
  target: "local",
  nativeFormats: ["chat", "completion", "text"],
  uploadFormat(example) {
    if (example.kind === "preference")
      return {
        unsupported:
          "local training is supervised only: a preference (DPO) pair would be skipped; use chat examples",
      };
    return example.kind;
  },
  check(record, format, location) {
    switch (format) {
      case "completion":
        return checkStrings(record, ["prompt", "completion"], location);
      case "text":
        return checkStrings(record, ["text"], location);
      default:
        return checkChat(record, location);
    }
  },
  minExamples: 1,
  maxFileBytes: undefined,
};
