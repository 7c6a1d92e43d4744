import { DataFormatError } from "../../core/errors.js";
import type { JobMetrics } from "../spec.js";

/**
 * Where each column of OpenAI's result file goes. The fine-tuning guide documents
 * `step,train_loss,train_accuracy,valid_loss,valid_mean_token_accuracy`; newer files also carry the
 * names the events use (`train_mean_token_accuracy`, `full_valid_*`), read here as well.
 */
const COLUMNS: Readonly<Record<string, keyof JobMetrics>> = {
  step: "step",
  total_steps: "totalSteps",
  epoch: "epoch",
  train_loss: "trainLoss",
  train_accuracy: "trainTokenAccuracy",
  train_mean_token_accuracy: "trainTokenAccuracy",
  valid_loss: "validLoss",
  valid_accuracy: "validTokenAccuracy",
  valid_mean_token_accuracy: "validTokenAccuracy",
};
/** Whole-validation-file numbers, used where the per-step ones are empty. */
const FALLBACKS: Readonly<Record<string, keyof JobMetrics>> = {
  full_valid_loss: "validLoss",
  full_valid_mean_token_accuracy: "validTokenAccuracy",
};

/**
 * The step metrics of a result file. OpenAI serves the file's content base64-encoded (its cookbook
 * decodes it with `base64.b64decode` before reading the CSV); plain CSV is read as well. Empty cells are
 * numbers not reported at that step (validation runs only on some steps) and stay absent; columns
 * tunekit does not know are skipped. A cell that is not a number is a `DataFormatError` at its line.
 */
export function parseResultMetrics(content: string, file: string): JobMetrics[] {
  const text = decodeResultFile(content);
  const lines = text.split(/\r?\n/);
  const header = lines[0]
    ?.replace(/^\uFEFF/, "")
    .split(",")
    .map((name) => name.trim());
  if (!header?.includes("step")) {
    throw new DataFormatError("bad_result_file", 'the result file has no "step" column', {
      location: { file, line: 1 },
    });
  }
  const rows: JobMetrics[] = [];
  for (let index = 1; index < lines.length; index++) {
    const line = lines[index] ?? "";
    if (line.trim() === "") continue;
    const cells = line.split(",");
    const row: Partial<Record<keyof JobMetrics, number>> = {};
    const fallback: Partial<Record<keyof JobMetrics, number>> = {};
    header.forEach((name, column) => {
      const key = COLUMNS[name] ?? FALLBACKS[name];
      const cell = cells[column]?.trim() ?? "";
      if (!key || cell === "") return;
      const value = Number(cell);
      if (!Number.isFinite(value)) {
        throw new DataFormatError("bad_result_file", `"${cell}" in column ${name} is not a number`, {
          location: { file, line: index + 1, path: name },
        });
      }
      if (Object.hasOwn(COLUMNS, name)) row[key] = value;
      else fallback[key] = value;
    });
    const step = row.step;
    if (step === undefined) {
      throw new DataFormatError("bad_result_file", "a row has no step", {
        location: { file, line: index + 1 },
      });
    }
    rows.push({ ...fallback, ...row, step });
  }
  return rows;
}

/** The CSV itself: as it came when it reads as CSV, else decoded from base64. */
function decodeResultFile(content: string): string {
  const trimmed = content.trim();
  const firstLine = (trimmed.split(/\r?\n/, 1)[0] ?? "").replace(/^\uFEFF/, "");
  const isCsv = firstLine.split(",").some((name) => name.trim() === "step");
  if (isCsv || !/^[A-Za-z0-9+/=\s]+$/.test(trimmed)) return content;
  return Buffer.from(trimmed, "base64").toString("utf8");
}
