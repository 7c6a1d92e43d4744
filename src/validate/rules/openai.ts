import type { SourceLocation } from "../../core/errors.js";
import { contentText } from "../../data/example.js";
import { type Problem, problem } from "../../data/problem.js";
import { checkMessages, checkTools, isObject, type MessageRules } from "./messages.js";
import type { RuleSet } from "./rule-set.js";

const MESSAGE_RULES: MessageRules = {
  roles: ["system", "developer", "user", "assistant", "tool", "function"],
  keys: ["role", "content", "name", "weight", "tool_calls", "tool_call_id", "function_call", "refusal"],
  toolCalls: true,
};

const CHAT_KEYS = ["messages", "tools", "functions", "parallel_tool_calls"];

function checkChat(record: Record<string, unknown>, location: SourceLocation): Problem[] {
  const problems = checkMessages(record.messages, "messages", MESSAGE_RULES, location);
  problems.push(...checkTools(record, location), ...unknownKeys(record, CHAT_KEYS, location));
  const messages = Array.isArray(record.messages) ? record.messages.filter(isObject) : [];
  const assistants = messages.filter((message) => message.role === "assistant");
  if (messages.length > 0 && assistants.length === 0) {
    problems.push(
      problem("error", "example_missing_assistant_message", "no assistant message to learn from", location),
    );
  } else if (assistants.length > 0 && assistants.every((message) => message.weight === 0)) {
    problems.push(
      problem(
        "warning",
        "no_trained_messages",
        "every assistant message has weight 0: nothing is learned",
        location,
      ),
    );
  }
  return problems;
}

function checkPreference(record: Record<string, unknown>, location: SourceLocation): Problem[] {
  const problems: Problem[] = [];
  const input = record.input;
  if (!isObject(input)) {
    problems.push(
      problem("error", "missing_input", "input must be an object with a messages list", location, "input"),
    );
  } else {
    problems.push(...checkMessages(input.messages, "input.messages", MESSAGE_RULES, location));
    problems.push(...checkTools(input, location, "input"));
    const last = Array.isArray(input.messages) ? input.messages[input.messages.length - 1] : undefined;
    if (isObject(last) && last.role === "assistant") {
      const message = "input ends with an assistant message; it should end where the reply begins";
      problems.push(
        problem("warning", "preference_input_ends_with_assistant", message, location, "input.messages"),
      );
    }
  }
  const outputs: string[] = [];
  for (const key of ["preferred_output", "non_preferred_output"]) {
    const output = record[key];
    const found = checkMessages(output, key, MESSAGE_RULES, location);
    problems.push(...found);
    if (found.some((entry) => entry.severity === "error")) continue;
    const list = output as Array<Record<string, unknown>>;
    if (list.length !== 1 || list[0]?.role !== "assistant") {
      const message = `${key} must hold exactly one assistant message`;
      problems.push(problem("error", "invalid_preference_output", message, location, key));
    } else {
      outputs.push(
        contentText((list[0]?.content ?? null) as never) + JSON.stringify(list[0]?.tool_calls ?? null),
      );
    }
  }
  if (outputs.length === 2 && outputs[0] === outputs[1]) {
    problems.push(
      problem("warning", "identical_outputs", "preferred and non-preferred outputs are the same", location),
    );
  }
  problems.push(...unknownKeys(record, ["input", "preferred_output", "non_preferred_output"], location));
  return problems;
}

function unknownKeys(record: Record<string, unknown>, known: string[], location: SourceLocation): Problem[] {
  const unknown = Object.keys(record).filter((key) => !known.includes(key));
  if (unknown.length === 0) return [];
  return [problem("warning", "unrecognized_key", `keys the API ignores: ${unknown.join(", ")}`, location)];
}

/**
 * OpenAI's rules: chat format for supervised fine-tuning, preference format for DPO, at least 10
 * examples, 512 MB per file (the Files API limit for fine-tuning uploads).
 */
export const openaiRules: RuleSet = {
  target: "openai",
  nativeFormats: ["chat", "preference"],
  uploadFormat(example) {
    if (example.kind === "preference") return "preference";
    if (example.kind === "text")
      return { unsupported: "OpenAI fine-tuning has no plain-text format; use chat examples" };
    return "chat";
  },
  check: (record, format, location) =>
    format === "preference" ? checkPreference(record, location) : checkChat(record, location),
  minExamples: 10,
  maxFileBytes: 512 * 1024 * 1024,
};
