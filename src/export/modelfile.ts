/**
 * An Ollama Modelfile (github.com/ollama/ollama docs/modelfile.md) beside an exported GGUF: `FROM` the
 * model file (or, for an adapter, its base's), `ADAPTER` the adapter file, `PARAMETER stop` for what
 * ends an assistant's turn in the template, and a `TEMPLATE` in Go's template language where Ollama
 * cannot recognise the chat template on its own: tunekit's default one (`User: …` / `Assistant: …`),
 * which no model ships with.
 */
import { DEFAULT_CHAT_TEMPLATE } from "../engine/chat-template.js";

export interface ModelfileInput {
  /** The model GGUF, relative to the Modelfile (`FROM`). */
  from: string;
  /** The adapter GGUF, when the export is an adapter (`ADAPTER`). */
  adapter?: string;
  /** The chat template the model was trained with. */
  template: string | undefined;
  /** What ends an assistant's turn: end-of-turn token texts and stop strings. */
  stops: string[];
  /** The EOS token's text, which tunekit's default template writes after each answer. */
  eosToken: string | undefined;
  /** The default template's generation prompt: "Assistant: ", or without the space where the tokenizer drops it. */
  generationPrompt?: string;
  /** Lines of comment at the top. */
  notes?: string[];
}

/** tunekit's default template in Go's template language, as Ollama renders a conversation. */
export function defaultTemplateForOllama(
  eosToken: string | undefined,
  generationPrompt = "Assistant: ",
): string {
  const eos = eosToken ?? "";
  return [
    "{{- range $i, $m := .Messages }}{{ if $i }}",
    '{{ end }}{{ if eq .Role "system" }}{{ .Content }}',
    '{{- else if eq .Role "user" }}User: {{ .Content }}',
    `{{- else if eq .Role "assistant" }}Assistant: {{ .Content }}${eos}`,
    '{{- else if eq .Role "tool" }}Tool: {{ .Content }}{{ end }}{{ end }}',
    generationPrompt,
  ].join("\n");
}

export function modelfile(input: ModelfileInput): string {
  const lines = [...(input.notes ?? []).map((note) => `# ${note}`), `FROM ${input.from}`];
  if (input.adapter) lines.push(`ADAPTER ${input.adapter}`);
  for (const stop of [...new Set(input.stops)].filter((stop) => stop !== ""))
    lines.push(`PARAMETER stop ${quote(stop)}`);
  if (input.template === undefined || input.template === DEFAULT_CHAT_TEMPLATE)
    lines.push(`TEMPLATE """${defaultTemplateForOllama(input.eosToken, input.generationPrompt)}"""`);
  return `${lines.join("\n")}\n`;
}

/** A Modelfile string: JSON's quoting, which Ollama's parser reads (\n, \", \\). */
function quote(text: string): string {
  return JSON.stringify(text);
}
