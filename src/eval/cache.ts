/**
 * The on-disk cache of outputs. The key is sha256 of `{ version, target: identity, input, generation }`
 * (`identity` is the ChatTarget's: for a local model it includes the adapter's content hash, so a
 * retrained adapter never reads an old answer). Entries are written atomically; an unreadable entry
 * is a miss.
 */
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { homedir } from "node:os";
import { join } from "node:path";
import type { ChatUsage, FinishReason } from "../core/chat.js";
import { writeJsonAtomically } from "../core/files.js";
import type { ChatMessage } from "../data/example.js";
import type { GenerationOptions } from "./types.js";

const VERSION = 1;

export interface CachedOutput {
  text: string;
  finishReason?: FinishReason;
  usage?: ChatUsage;
}

/** `$TUNEKIT_CACHE/eval`, else `$XDG_CACHE_HOME/tunekit/eval`, else `~/.cache/tunekit/eval`. */
export function defaultCacheDir(env: Record<string, string | undefined> = process.env): string {
  if (env.TUNEKIT_CACHE) return join(env.TUNEKIT_CACHE, "eval");
  return join(env.XDG_CACHE_HOME || join(homedir(), ".cache"), "tunekit", "eval");
}

export function cacheKey(
  identity: string,
  input: readonly ChatMessage[],
  generation: GenerationOptions,
): string {
  return createHash("sha256")
    .update(JSON.stringify({ version: VERSION, target: identity, input, generation }))
    .digest("hex");
}

export class OutputCache {
  readonly dir: string;
  constructor(dir: string) {
    this.dir = dir;
  }

  #path(key: string): string {
    return join(this.dir, key.slice(0, 2), `${key}.json`);
  }

  async get(key: string): Promise<CachedOutput | undefined> {
    try {
      const value = JSON.parse(await readFile(this.#path(key), "utf8")) as CachedOutput;
      return typeof value?.text === "string" ? value : undefined;
    } catch {
      return undefined;
    }
  }

  async set(key: string, output: CachedOutput): Promise<void> {
    await writeJsonAtomically(this.#path(key), output);
  }
}
