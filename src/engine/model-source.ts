/**
 * What a model argument names: a Hugging Face model folder on this machine, or a Hub id (`owner/name`)
 * to download into the HF cache (or find there offline). Every place that takes "a folder or a Hub id"
 * (LocalModel, LocalTrainer, the local provider, the local Validator target, the CLI) decides it here,
 * with the same checks and the same errors. Loads no native code.
 */
import { stat } from "node:fs/promises";
import { join, resolve } from "node:path";
import { ModelFormatError, ValidationError } from "../core/errors.js";
import { HUB_ID } from "../core/hub.js";
import type { ModelHubOptions } from "./hub.js";

export type ModelReference =
  /** An absolute folder holding `config.json`. */
  | { kind: "folder"; path: string }
  /** `owner/name` on the Hugging Face Hub. */
  | { kind: "hub"; id: string };

/**
 * Decides what `model` names. An existing folder must hold `config.json`; anything else must be a
 * Hub id. Errors: `invalid_option` (not a non-empty string), `missing_file` (no such folder and no
 * Hub id, or a folder without `config.json`), located at the folder.
 */
export async function modelReference(model: unknown): Promise<ModelReference> {
  if (typeof model !== "string" || model.trim() === "")
    throw new ValidationError(
      "invalid_argument",
      "the model must be a model folder or a Hugging Face Hub id (owner/name)",
    );
  const found = await stat(model).catch(() => undefined);
  if (found?.isDirectory()) {
    const path = resolve(model);
    if (!(await stat(join(path, "config.json")).catch(() => undefined))?.isFile())
      throw new ModelFormatError("file_not_found", "no config.json here: not a Hugging Face model folder", {
        location: { file: path },
      });
    return { kind: "folder", path };
  }
  if (found === undefined && HUB_ID.test(model)) return { kind: "hub", id: model };
  throw new ModelFormatError(
    "file_not_found",
    `no model folder here, and ${JSON.stringify(model)} is not a Hugging Face id (owner/name)`,
    { location: { file: resolve(model) } },
  );
}

/** The folder a model argument stands for: the folder itself, or the Hub model's snapshot in the cache. */
export async function modelFolder(model: unknown, options: ModelHubOptions = {}): Promise<string> {
  const reference = await modelReference(model);
  if (reference.kind === "folder") return reference.path;
  const { downloadModel } = await import("./hub.js");
  return downloadModel(reference.id, options);
}
