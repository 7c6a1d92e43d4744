/** The CLI run in process, for tests. Apart from helpers.ts, which must not load the CLI (and with it the engine). */
import type { CliIO } from "../src/cli/io.js";
import { run } from "../src/cli/main.js";

/** What the CLI wrote, and its exit code. */
export interface CliCapture {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs the CLI in process, capturing what it writes; `io` overrides the defaults (not a terminal, an
 * empty environment, no Ctrl-C).
 */
export async function runCli(argv: string[], io: Partial<CliIO> = {}): Promise<CliCapture> {
  let stdout = "";
  let stderr = "";
  const code = await run(argv, {
    stdout: (text) => {
      stdout += text;
    },
    stderr: (text) => {
      stderr += text;
    },
    isTTY: false,
    env: {},
    onInterrupt: () => () => undefined,
    ...io,
  });
  return { code, stdout, stderr };
}
