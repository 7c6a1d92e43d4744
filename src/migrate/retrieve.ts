/**
 * Getting a fine-tune's data back from OpenAI: the job's training and validation files, downloaded
 * where the API still allows it (`GET /files/{id}/content`), written atomically and read back as a
 * Dataset on arrival. A file the API refuses (deleted, or a purpose it does not let out) is reported
 * with the API's reason, so the caller can fall back to a recording of the model's answers.
 */
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { NotFoundError, ProviderError, ValidationError } from "../core/errors.js";
import { writeFileAtomically } from "../core/files.js";
import { Dataset } from "../data/dataset.js";
import type { FineTunedModel } from "../providers/openai/inventory.js";
import type { OpenAIProvider } from "../providers/openai/provider.js";
import type { CallOptions } from "../providers/spec.js";

export interface RetrievedFile {
  role: "training" | "validation";
  fileId: string;
  /** Where it was written; absent when the API refused it. */
  path?: string;
  /** Chat examples read back from it. */
  examples?: number;
  /** Records that are not examples (each located in `problems`). */
  invalid?: number;
  problems?: string[];
  /** Why it could not be had, in the API's words. */
  refused?: string;
}

/** The fine-tune `model` (an `ft:` id) of the organisation, from the inventory, or a clear error. */
export async function findFineTune(
  provider: OpenAIProvider,
  model: string,
  options: CallOptions = {},
): Promise<FineTunedModel> {
  const items = await provider.inventory(options);
  const found = items.find((item) => item.model === model);
  if (!found)
    throw new NotFoundError(
      "not_found",
      `no fine-tuned model ${model} in this organisation${items.length > 0 ? `; it has ${items.map((item) => item.model).join(", ")}` : " (it has none)"}`,
      { provider: "openai" },
    );
  return found;
}

/**
 * Downloads the job's training and validation files into `dir` (`training.jsonl`, `validation.jsonl`),
 * each read back as a Dataset. Files already there are read, not downloaded again.
 */
export async function retrieveTrainingData(
  provider: OpenAIProvider,
  fineTune: FineTunedModel,
  dir: string,
  options: CallOptions = {},
): Promise<RetrievedFile[]> {
  await mkdir(dir, { recursive: true });
  const files: RetrievedFile[] = [];
  for (const [role, file] of [
    ["training", fineTune.trainingFile],
    ["validation", fineTune.validationFile],
  ] as const) {
    if (!file) continue;
    const entry: RetrievedFile = { role, fileId: file.id };
    const path = join(dir, `${role}.jsonl`);
    const { existsSync } = await import("node:fs");
    if (!existsSync(path)) {
      try {
        await writeFileAtomically(path, await provider.downloadFile(file.id, options));
      } catch (error) {
        if (!(error instanceof ProviderError) || error.status === undefined) throw error;
        entry.refused = error.message.replace(/^openai: /, "");
        files.push(entry);
        continue;
      }
    }
    entry.path = path;
    const dataset = await Dataset.fromFile(path);
    const stats = await dataset.stats();
    entry.examples = stats.examples;
    entry.invalid = stats.invalid;
    const problems: string[] = [];
    for await (const record of dataset.records())
      for (const problem of record.problems ?? [])
        if (problem.severity === "error" && problems.length < 10)
          problems.push(`${path}:${problem.line ?? "?"}: ${problem.message} [${problem.code}]`);
    entry.problems = problems;
    if (entry.examples === 0)
      throw new ValidationError(
        "invalid_dataset",
        `${path}: the ${role} file holds no example tunekit can read`,
        {
          location: { file: path },
        },
      );
    files.push(entry);
  }
  return files;
}
