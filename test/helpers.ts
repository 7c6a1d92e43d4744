import { existsSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach } from "vitest";

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
/** The shared fixtures beside the checkout; tests that need them skip when they are absent. */
export const FIXTURES = resolve(ROOT, "../shared/fixtures");
export const HAS_FIXTURES = existsSync(FIXTURES);
if (!HAS_FIXTURES) console.warn(`fixtures not found at ${FIXTURES}: tests that need them are skipped`);

const made: string[] = [];
afterEach(async () => {
  for (const dir of made.splice(0)) await rm(dir, { recursive: true, force: true });
});

/** A fresh temporary folder, removed after the test. */
export async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "tunekit-test-"));
  made.push(dir);
  return dir;
}

/** Writes a file in a fresh temporary folder and returns its path. */
export async function tempFile(name: string, content: string | Uint8Array): Promise<string> {
  const path = join(await tempDir(), name);
  await writeFile(path, content);
  return path;
}

export const jsonl = (rows: unknown[]) => `${rows.map((row) => JSON.stringify(row)).join("\n")}\n`;

/** A valid single-turn chat record. */
export function chatRow(user = "Where is my order?", assistant = "It ships tomorrow.", system?: string) {
  const messages = [
    ...(system ? [{ role: "system", content: system }] : []),
    { role: "user", content: user },
    { role: "assistant", content: assistant },
  ];
  return { messages };
}
