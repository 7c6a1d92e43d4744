/** What tunekit knows about a cloud model that can be fine-tuned. */
export interface ModelInfo {
  /** The dated snapshot an alias resolves to. */
  id: string;
  /** The longest training example, in tokens; longer ones are truncated. */
  contextLimit: number;
  /** The tiktoken encoding of the model. */
  encoding: "o200k_base" | "cl100k_base";
  /** Training price in US dollars per million tokens (see `OPENAI_TRAINING_PRICES`). */
  trainingPricePerMillion: number | undefined;
  /**
   * The day (UTC, YYYY-MM-DD) the model shuts down, and every fine-tune of it with it, where OpenAI has
   * announced one (its deprecations page).
   */
  shutdownDate?: string;
}

/**
 * OpenAI's training prices for supervised fine-tuning, USD per 1M training tokens, from the pricing
 * page of 2025. Pass `prices` to the Validator when yours differ.
 */
export const OPENAI_TRAINING_PRICES: Readonly<Record<string, number>> = {
  "gpt-4.1-2025-04-14": 25,
  "gpt-4.1-mini-2025-04-14": 5,
  "gpt-4.1-nano-2025-04-14": 1.5,
  "gpt-4o-2024-08-06": 25,
  "gpt-4o-mini-2024-07-18": 3,
  "gpt-3.5-turbo-0125": 8,
  "gpt-3.5-turbo-1106": 8,
  "gpt-3.5-turbo-0613": 8,
};

/**
 * Training context limits from OpenAI's fine-tuning guide; shutdown dates from its deprecations page
 * (the wind-down of fine-tuning, 2026: see docs/migrate-from-openai.md).
 */
const OPENAI_MODELS: ReadonlyArray<Omit<ModelInfo, "trainingPricePerMillion">> = [
  { id: "gpt-4.1-2025-04-14", contextLimit: 65_536, encoding: "o200k_base", shutdownDate: "2027-01-14" },
  { id: "gpt-4.1-mini-2025-04-14", contextLimit: 65_536, encoding: "o200k_base", shutdownDate: "2027-01-14" },
  { id: "gpt-4.1-nano-2025-04-14", contextLimit: 65_536, encoding: "o200k_base", shutdownDate: "2026-10-23" },
  { id: "gpt-4o-2024-08-06", contextLimit: 65_536, encoding: "o200k_base", shutdownDate: "2027-01-14" },
  { id: "gpt-4o-mini-2024-07-18", contextLimit: 65_536, encoding: "o200k_base", shutdownDate: "2027-01-14" },
  { id: "gpt-3.5-turbo-0125", contextLimit: 16_385, encoding: "cl100k_base" },
  { id: "gpt-3.5-turbo-1106", contextLimit: 16_385, encoding: "cl100k_base" },
  { id: "gpt-3.5-turbo-0613", contextLimit: 4_096, encoding: "cl100k_base" },
];

const OPENAI_ALIASES: Readonly<Record<string, string>> = {
  "gpt-4.1": "gpt-4.1-2025-04-14",
  "gpt-4.1-mini": "gpt-4.1-mini-2025-04-14",
  "gpt-4.1-nano": "gpt-4.1-nano-2025-04-14",
  "gpt-4o": "gpt-4o-2024-08-06",
  "gpt-4o-mini": "gpt-4o-mini-2024-07-18",
  "gpt-3.5-turbo": "gpt-3.5-turbo-0125",
};

/** The model OpenAI fine-tunes when none is named. */
export const DEFAULT_OPENAI_MODEL = "gpt-4o-mini-2024-07-18";

/**
 * Looks up an OpenAI model by snapshot or alias. A fine-tuned model (`ft:gpt-4o-mini-2024-07-18:org::id`)
 * resolves to its base. Undefined when unknown.
 */
export function openaiModel(
  model: string,
  prices: Readonly<Record<string, number>> = OPENAI_TRAINING_PRICES,
) {
  const base = model.startsWith("ft:") ? (model.split(":")[1] ?? model) : model;
  const id = OPENAI_ALIASES[base] ?? base;
  const info = OPENAI_MODELS.find((candidate) => candidate.id === id);
  if (!info) return undefined;
  return { ...info, trainingPricePerMillion: prices[id] ?? prices[model] } satisfies ModelInfo;
}

/** The tiktoken encoding a model name suggests: o200k_base for gpt-4o and newer, else cl100k_base. */
export function encodingForModel(model: string): ModelInfo["encoding"] {
  return /^(ft:)?(gpt-3\.5|gpt-4-|gpt-4$)/.test(model) ? "cl100k_base" : "o200k_base";
}

/**
 * What OpenAI charges to answer with a fine-tuned model, USD per million input / output tokens, by
 * base model (its pricing page of 2025; a base model itself costs less). For the cost estimate of a
 * recording; pass `prices` where yours differ.
 */
export const OPENAI_FINE_TUNED_INFERENCE_PRICES: Readonly<Record<string, { input: number; output: number }>> =
  {
    "gpt-4.1-2025-04-14": { input: 3, output: 12 },
    "gpt-4.1-mini-2025-04-14": { input: 0.8, output: 3.2 },
    "gpt-4.1-nano-2025-04-14": { input: 0.2, output: 0.8 },
    "gpt-4o-2024-08-06": { input: 3.75, output: 15 },
    "gpt-4o-mini-2024-07-18": { input: 0.3, output: 1.2 },
    "gpt-3.5-turbo-0125": { input: 3, output: 6 },
  };

/** The price of answering with an OpenAI fine-tune (`ft:BASE:…`), when tunekit knows it. */
export function inferencePrice(
  provider: string,
  model: string,
): { input: number; output: number } | undefined {
  if (provider !== "openai" || !model.startsWith("ft:")) return undefined;
  const id = openaiModel(model)?.id;
  return id === undefined ? undefined : OPENAI_FINE_TUNED_INFERENCE_PRICES[id];
}
