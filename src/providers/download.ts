/**
 * Bringing a job's trained adapter home: every file into a temporary folder beside `dir`, checked as a
 * PEFT LoRA adapter (its `adapter_config.json` and the safetensors header of its weights), then renamed
 * to `dir` in one step, so that `dir` holds a whole adapter or nothing.
 */
import { existsSync } from "node:fs";
import { mkdir, readdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";
import { ModelFormatError, ValidationError } from "../core/errors.js";
import { temporaryPath } from "../core/files.js";
import { readSafetensorsHeader } from "../engine/safetensors.js";

export interface AdapterFile {
  name: string;
  bytes: Uint8Array;
}

/** Writes the files as an adapter folder at `dir` (see the module comment); returns their names. */
export async function writeAdapterFolder(
  dir: string,
  files: AsyncIterable<AdapterFile> | AdapterFile[],
): Promise<string[]> {
  const target = resolve(dir);
  if (existsSync(target) && (await readdir(target)).length > 0)
    throw new ValidationError("exists", `${target} is not empty: download the adapter into a new folder`, {
      location: { file: target },
    });
  await mkdir(dirname(target), { recursive: true });
  const staging = temporaryPath(target);
  await mkdir(staging, { recursive: true });
  try {
    const names: string[] = [];
    for await (const file of files) {
      const name = basename(file.name);
      if (name !== file.name || name === "" || name.startsWith("."))
        throw new ModelFormatError(
          "bad_adapter",
          `the provider sent a file named ${JSON.stringify(file.name)}`,
          {
            location: { file: target },
          },
        );
      await writeFile(join(staging, name), file.bytes);
      names.push(name);
    }
    await checkAdapter(staging, target);
    if (existsSync(target)) await rm(target, { recursive: true });
    await rename(staging, target);
    return names.sort();
  } catch (error) {
    await rm(staging, { recursive: true, force: true });
    throw error;
  }
}

/** A PEFT LoRA adapter: `adapter_config.json` with `peft_type` LORA, and readable safetensors weights. */
async function checkAdapter(folder: string, shownAs: string): Promise<void> {
  const configPath = join(folder, "adapter_config.json");
  let config: { peft_type?: unknown };
  try {
    config = JSON.parse(await readFile(configPath, "utf8"));
  } catch (error) {
    throw new ModelFormatError(
      "bad_adapter",
      `no readable adapter_config.json in what the provider sent (${(error as Error).message})`,
      {
        location: { file: join(shownAs, "adapter_config.json") },
      },
    );
  }
  if (config.peft_type !== "LORA")
    throw new ModelFormatError(
      "bad_adapter",
      `adapter_config.json says peft_type ${JSON.stringify(config.peft_type)}, not "LORA"`,
      {
        location: { file: join(shownAs, "adapter_config.json") },
      },
    );
  const weights = join(folder, "adapter_model.safetensors");
  if (!existsSync(weights))
    throw new ModelFormatError("bad_adapter", "the provider sent no adapter_model.safetensors", {
      location: { file: shownAs },
    });
  await readSafetensorsHeader(weights);
}
