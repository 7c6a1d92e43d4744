import type { ChatMessage, Example } from "../example.js";
import { cannotWrite, type FormatName } from "./format.js";

/** A conversation as an optional system prompt and user/assistant pairs of plain text. */
export interface Turns {
  system?: string;
  pairs: Array<{ user: string; assistant: string }>;
}

export function turnsToMessages(turns: Turns): ChatMessage[] {
  const messages: ChatMessage[] =
    turns.system !== undefined ? [{ role: "system", content: turns.system }] : [];
  for (const pair of turns.pairs) {
    messages.push({ role: "user", content: pair.user }, { role: "assistant", content: pair.assistant });
  }
  return messages;
}

/** Reads a chat (or completion) example as turns; throws when it does not have that simple shape. */
export function exampleToTurns(example: Example, format: FormatName): Turns {
  if (example.kind === "completion")
    return { pairs: [{ user: example.prompt, assistant: example.completion }] };
  if (example.kind !== "chat") throw cannotWrite(example, format);
  const messages = [...example.messages];
  const turns: Turns = { pairs: [] };
  const fail = () =>
    cannotWrite(
      example,
      format,
      "it needs an optional system message, then user/assistant pairs of plain text",
    );
  if (messages[0]?.role === "system") {
    const system = messages.shift()?.content;
    if (typeof system !== "string") throw fail();
    turns.system = system;
  }
  if (messages.length === 0 || messages.length % 2 !== 0) throw fail();
  for (let index = 0; index < messages.length; index += 2) {
    const user = messages[index];
    const assistant = messages[index + 1];
    if (user?.role !== "user" || assistant?.role !== "assistant") throw fail();
    if (typeof user.content !== "string" || typeof assistant.content !== "string") throw fail();
    if (assistant.tool_calls || assistant.weight === 0) throw fail();
    turns.pairs.push({ user: user.content, assistant: assistant.content });
  }
  return turns;
}
