import type { SourceLocation } from "../../core/errors.js";
import { type Problem, problem } from "../../data/problem.js";
import { checkMessages, checkTools, isObject, type MessageRules } from "./messages.js";
import type { RuleSet } from "./rule-set.js";

/**
 * What the local trainer hands the chat template (src/local/tokenize.ts): roles (developer and function
 * become system and tool on reading), text content, weight, name, tool calls and the id a tool message
 * answers, with the record's tools.
 */
const MESSAGE_RULES: MessageRules = {
  roles: ["system", "developer", "user", "assistant", "tool", "function"],
  keys: ["role", "content", "name", "weight", "tool_calls", "tool_call_id", "function_call", "refusal"],
  toolCalls: true,
};

// `metadata` is where tunekit's recordings keep their provenance (`record`): it is not trained on.
const CHAT_KEYS = ["messages", "tools", "functions", "metadata"];

function checkChat(record: Record<string, unknown>, location: SourceLocation): Problem[] {
  const problems = checkMessages(record.messages, "messages", MESSAGE_RULES, location);
  problems.push(...checkTools(record, location));
  const messages = Array.isArray(record.messages) ? record.messages : [];
  for (const [index, message] of messages.entries()) {
    if (!isObject(message)) continue;
    const at = `messages[${index}]`;
    if ("refusal" in message) {
      const text = "refusal is not passed to the chat template: local training ignores it";
      problems.push(problem("warning", "ignored_key", text, location, `${at}.refusal`));
    }
    if (Array.isArray(message.content) && message.content.some((part) => part?.type === "image_url")) {
      const text = "image parts are left out: local training is text only";
      problems.push(problem("warning", "ignored_images", text, location, `${at}.content`));
    }
  }
  const ignored = Object.keys(record).filter((key) => !CHAT_KEYS.includes(key));
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
 * only (a preference pair is an error: it would be skipped); chat messages as OpenAI's chat format has
 * them, tool calls included, `weight` 0 or 1 on assistant messages, at least one assistant message;
 * what the trainer leaves out (images, refusal) is a warning. No minimum beyond one example and no
 * file size limit. The Validator adds the exact token counts, and a template's refusal of a conversation.
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
