/**
 * The shell examples of README.md and docs/*.md, run as written, so that a doc cannot drift from
 * the CLI. Each `sh` block's `tunekit` / `npx tunekit` lines run in a copy of `examples/`, in order
 * (a later line may read what an earlier one wrote), with the built CLI. A line that needs what
 * tests never have ends with a marker the test reads and skips: `# needs: network`, `# needs:
 * OPENAI_API_KEY`. Synopses (`text` blocks) are not run.
 */
import { execFile } from "node:child_process";
import { cp, mkdtemp, readdir, readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { ROOT } from "./helpers.js";

const run = promisify(execFile);
const CLI = join(ROOT, "dist/cli/index.js");

interface Command {
  file: string;
  line: number;
  text: string;
  needs: string | undefined;
}

/** The tunekit commands of a Markdown file's sh blocks, backslash continuations joined. */
function commands(file: string, markdown: string): Command[] {
  const found: Command[] = [];
  const lines = markdown.split("\n");
  let inShell = false;
  let pending: { line: number; text: string } | undefined;
  for (const [index, raw] of lines.entries()) {
    const fence = /^```(\w*)/.exec(raw);
    if (fence) {
      // An opening fence of a shell block starts one; any other fence ends it (or opens another kind).
      inShell = !inShell && ["sh", "bash", "shell"].includes(fence[1] ?? "");
      continue;
    }
    if (!inShell) continue;
    const text = pending ? `${pending.text} ${raw.trim()}` : raw.trim();
    if (text.endsWith("\\")) {
      pending = { line: pending?.line ?? index + 1, text: text.slice(0, -1).trim() };
      continue;
    }
    const line = pending?.line ?? index + 1;
    pending = undefined;
    if (!/^(npx )?tunekit /.test(text)) continue;
    const needs = /#\s*needs:\s*(.+)$/.exec(text)?.[1]?.trim();
    found.push({ file, line, text: text.replace(/\s+#.*$/, ""), needs });
  }
  return found;
}

/** Splits a command line as a shell would, for the simple quoting docs use. */
function words(text: string): string[] {
  return [...text.matchAll(/'([^']*)'|"([^"]*)"|(\S+)/g)].map(
    (match) => match[1] ?? match[2] ?? match[3] ?? "",
  );
}

const docs = [
  "README.md",
  ...(await readdir(join(ROOT, "docs"))).filter((name) => name.endsWith(".md")).map((name) => `docs/${name}`),
];
const all = (
  await Promise.all(docs.map(async (file) => commands(file, await readFile(join(ROOT, file), "utf8"))))
).flat();

describe("the docs' shell examples run as written", () => {
  it("finds them (and the markers of the ones that need a network or a key)", () => {
    expect(all.length).toBeGreaterThanOrEqual(8);
    expect(all.some((command) => command.needs)).toBe(true);
  });

  for (const file of docs) {
    const own = all.filter((command) => command.file === file);
    if (own.length === 0) continue;
    it(`${file}: ${own.length} command(s)`, { timeout: 120_000 }, async () => {
      const cwd = await mkdtemp(join(tmpdir(), "tunekit-docs-"));
      await cp(join(ROOT, "examples"), join(cwd, "examples"), { recursive: true });
      for (const command of own) {
        if (command.needs) continue;
        const args = words(command.text.replace(/^npx /, "")).slice(1);
        const where = `${command.file}:${command.line}: ${command.text}`;
        const result = await run(process.execPath, [CLI, ...args], {
          cwd,
          env: { PATH: process.env.PATH },
        }).then(
          ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
          (error: { code: number; stdout: string; stderr: string }) => error,
        );
        expect(result.code, `${where}\n${result.stderr}`).toBe(0);
        expect(result.stderr, where).not.toMatch(/\n\s+at /);
      }
    });
  }
});
