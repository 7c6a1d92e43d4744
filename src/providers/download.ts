/**
 * Bringing a job's trained weights home: every file into a temporary folder beside `dir`, streamed to
 * disk as it arrives (a merged 8B model is 16 GB), checked as what it claims to be (a PEFT LoRA
 * adapter, or a merged Hugging Face model), then renamed to `dir` in one step, so that `dir` holds a
 * whole download or nothing. Files may come one by one (Nebius, Fireworks) or out of one archive
 * (Together's tar.zst, `writeArchiveFolder`).
 */
import { createWriteStream, existsSync } from "node:fs";
import { mkdir, readdir, readFile, rename, rm } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { pipeline } from "node:stream/promises";
import { decompress } from "../core/decompress.js";
import {
  ConnectionError,
  DataFormatError,
  ModelFormatError,
  ProviderError,
  ValidationError,
} from "../core/errors.js";
import { temporaryPath } from "../core/files.js";
import { readTar } from "../core/tar.js";
import { readSafetensorsHeader } from "../engine/safetensors.js";

/** What a download holds: a PEFT LoRA adapter, or the base model with the adapter merged in. */
export type WeightsKind = "adapter" | "merged";

/** One file of a download: its bytes, or its content as it streams in. */
export interface WeightsFile {
  /** Its path in the folder, `/`-separated (`adapter_config.json`). */
  name: string;
  bytes?: Uint8Array;
  chunks?: AsyncIterable<Uint8Array>;
  /** The size the sender announced, checked once the file is written. */
  size?: number;
}

/** Kept for the adapters that bring whole files. */
export type AdapterFile = WeightsFile;

/**
 * Writes the files as a folder at `dir` (see the module comment); returns their names, sorted. Files
 * that all sit in one top folder come out of it.
 */
export async function writeWeightsFolder(
  dir: string,
  files: AsyncIterable<WeightsFile> | Iterable<WeightsFile>,
  options: { kind: WeightsKind; provider: string; signal?: AbortSignal | undefined },
): Promise<string[]> {
  return fillFolder(dir, options, async (staging, names) => {
    for await (const file of files)
      await writeOne(staging, checkName(file.name, dir, options.provider), file, names, options);
    await unwrapTopFolder(staging, names);
  });
}

/** Writes a PEFT adapter's files (see `writeWeightsFolder`). */
export function writeAdapterFolder(
  dir: string,
  files: AsyncIterable<WeightsFile> | Iterable<WeightsFile>,
  provider = "the provider",
): Promise<string[]> {
  return writeWeightsFolder(dir, files, { kind: "adapter", provider });
}

/**
 * Unpacks an archive (tar, tar.gz or tar.zst, told apart by its first bytes) as it streams in, as a
 * folder at `dir`. An archive that wraps everything in one top folder is unwrapped.
 */
export async function writeArchiveFolder(
  dir: string,
  chunks: AsyncIterable<Uint8Array>,
  options: { kind: WeightsKind; provider: string; signal?: AbortSignal | undefined; name?: string },
): Promise<string[]> {
  const archive = options.name ?? `the archive ${options.provider} sent`;
  return fillFolder(dir, options, async (staging, names) => {
    await readTar(
      decompress(chunks, archive),
      async (entry) => {
        const file = { name: entry.path, chunks: entry.content, size: entry.size };
        await writeOne(staging, checkName(entry.path, dir, options.provider), file, names, options);
      },
      archive,
    );
    await unwrapTopFolder(staging, names);
  });
}

interface WriteOptions {
  kind: WeightsKind;
  provider: string;
  signal?: AbortSignal | undefined;
}

/**
 * A response body's chunks, checked against `content-length` when the server sent one; a connection
 * that drops midway is a `ConnectionError` (worth another try), never a damaged file.
 */
export async function* bodyChunks(
  response: Response,
  client: { provider: string; redact(text: string): string },
  signal: AbortSignal | undefined,
): AsyncGenerator<Uint8Array> {
  const announced = Number(response.headers.get("content-length") ?? Number.NaN);
  let received = 0;
  const broke = (reason: string, cause?: unknown) =>
    new ConnectionError("connection_failed", client.redact(`the download broke off ${reason}; try again`), {
      provider: client.provider,
      ...(cause !== undefined ? { cause } : {}),
    });
  if (response.body) {
    const reader = response.body.getReader();
    try {
      for (;;) {
        let next: Awaited<ReturnType<typeof reader.read>>;
        try {
          next = await reader.read();
        } catch (error) {
          if (signal?.aborted) throw signal.reason;
          throw broke(`after ${received} bytes (${(error as Error).message})`, error);
        }
        if (next.done) break;
        received += next.value.length;
        yield next.value;
      }
    } finally {
      reader.releaseLock();
      void response.body.cancel().catch(() => {});
    }
  }
  if (Number.isFinite(announced) && received !== announced)
    throw broke(`after ${received} of ${announced} bytes`);
}

async function fillFolder(
  dir: string,
  { kind, signal }: WriteOptions,
  fill: (staging: string, names: string[]) => Promise<void>,
): Promise<string[]> {
  const target = resolve(dir);
  if (existsSync(target) && (await readdir(target)).length > 0)
    throw new ValidationError("exists", `${target} is not empty: download into a new folder`, {
      location: { file: target },
    });
  await mkdir(dirname(target), { recursive: true });
  const staging = temporaryPath(target);
  await mkdir(staging, { recursive: true });
  try {
    const names: string[] = [];
    await fill(staging, names);
    if (kind === "adapter") await checkAdapter(staging, target, names);
    else await checkMergedModel(staging, target, names);
    signal?.throwIfAborted();
    if (existsSync(target)) await rm(target, { recursive: true });
    await rename(staging, target);
    return names.sort();
  } catch (error) {
    await rm(staging, { recursive: true, force: true });
    throw error;
  }
}

async function writeOne(
  staging: string,
  name: string,
  file: WeightsFile,
  names: string[],
  { provider, signal }: WriteOptions,
): Promise<void> {
  signal?.throwIfAborted();
  if (names.includes(name))
    throw new ModelFormatError("bad_adapter", `${provider} sent ${JSON.stringify(name)} twice`);
  const path = join(staging, ...name.split("/"));
  await mkdir(dirname(path), { recursive: true });
  let written = 0;
  const counted = async function* () {
    if (file.bytes) {
      written += file.bytes.length;
      yield file.bytes;
    }
    for await (const chunk of file.chunks ?? []) {
      signal?.throwIfAborted();
      written += chunk.length;
      yield chunk;
    }
  };
  await pipeline(counted(), createWriteStream(path, { flags: "wx" }));
  if (file.size !== undefined && written !== file.size)
    throw new ProviderError(
      "invalid_response",
      `${name} arrived with ${written} bytes of the ${file.size} ${provider} announced`,
      { provider },
    );
  names.push(name);
}

/** A relative `/`-separated path whose parts are ordinary names: nothing absolute, no `..`, no dot files. */
function checkName(name: string, dir: string, provider: string): string {
  const parts = name.split("/").filter((part) => part !== "" && part !== ".");
  const fine =
    parts.length > 0 &&
    !name.startsWith("/") &&
    !name.includes("\\") &&
    parts.every((part) => !part.startsWith(".") && !part.includes("\0"));
  if (!fine)
    throw new ModelFormatError("bad_adapter", `${provider} sent a file named ${JSON.stringify(name)}`, {
      location: { file: resolve(dir) },
    });
  return parts.join("/");
}

/** `model/config.json`, `model/…` → `config.json`, `…`, when every file sits in one top folder. */
async function unwrapTopFolder(staging: string, names: string[]): Promise<void> {
  const tops = new Set(names.map((name) => name.split("/")[0]));
  const [top] = tops;
  if (tops.size !== 1 || top === undefined || !names.every((name) => name.includes("/"))) return;
  const inner = join(staging, top);
  const aside = `${staging}.${top}`;
  await rename(inner, aside);
  for (const entry of await readdir(aside)) await rename(join(aside, entry), join(staging, entry));
  await rm(aside, { recursive: true });
  for (const [index, name] of names.entries()) names[index] = name.slice(top.length + 1);
}

/** A PEFT LoRA adapter: `adapter_config.json` with `peft_type` LORA, and readable safetensors weights. */
async function checkAdapter(folder: string, shownAs: string, names: string[]): Promise<void> {
  const configPath = join(folder, "adapter_config.json");
  let config: { peft_type?: unknown };
  try {
    config = JSON.parse(await readFile(configPath, "utf8"));
  } catch (error) {
    const sent = names.length > 0 ? `it sent ${names.slice(0, 8).join(", ")}` : "it sent no files";
    throw new ModelFormatError(
      "bad_adapter",
      `no readable adapter_config.json in what the provider sent (${sent}; ${(error as Error).message})`,
      { location: { file: join(shownAs, "adapter_config.json") } },
    );
  }
  if (config.peft_type !== "LORA")
    throw new ModelFormatError(
      "bad_adapter",
      `adapter_config.json says peft_type ${JSON.stringify(config.peft_type)}, not "LORA"`,
      { location: { file: join(shownAs, "adapter_config.json") } },
    );
  const weights = join(folder, "adapter_model.safetensors");
  if (!existsSync(weights))
    throw new ModelFormatError("bad_adapter", "the provider sent no adapter_model.safetensors", {
      location: { file: shownAs },
    });
  await readSafetensorsHeader(weights);
}

/**
 * A Hugging Face model folder: a `config.json` naming the architecture, and safetensors weights whose
 * headers read (every shard the index names, when there is an index).
 */
async function checkMergedModel(folder: string, shownAs: string, names: string[]): Promise<void> {
  let config: { model_type?: unknown };
  try {
    config = JSON.parse(await readFile(join(folder, "config.json"), "utf8"));
  } catch (error) {
    throw new ModelFormatError(
      "bad_config",
      `no readable config.json in the merged model the provider sent (${(error as Error).message})`,
      { location: { file: join(shownAs, "config.json") } },
    );
  }
  if (typeof config.model_type !== "string")
    throw new ModelFormatError("bad_config", "config.json names no model_type", {
      location: { file: join(shownAs, "config.json") },
    });
  let shards = names.filter((name) => name.endsWith(".safetensors"));
  if (names.includes("model.safetensors.index.json")) {
    let index: { weight_map?: Record<string, string> };
    try {
      index = JSON.parse(await readFile(join(folder, "model.safetensors.index.json"), "utf8"));
    } catch (error) {
      throw new DataFormatError("bad_safetensors", `model.safetensors.index.json is not JSON`, {
        location: { file: join(shownAs, "model.safetensors.index.json") },
        cause: error,
      });
    }
    shards = [...new Set(Object.values(index.weight_map ?? {}))];
    const missing = shards.filter((shard) => !names.includes(shard));
    if (missing.length > 0)
      throw new ModelFormatError("hub_missing_shard", `the merged model lacks ${missing.join(", ")}`, {
        location: { file: shownAs },
      });
  }
  if (shards.length === 0)
    throw new ModelFormatError(
      "hub_no_safetensors",
      "the merged model has no safetensors weights (tunekit reads safetensors only)",
      { location: { file: shownAs } },
    );
  for (const shard of shards) await readSafetensorsHeader(join(folder, shard));
}
