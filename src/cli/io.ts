/** Where the CLI writes, and what it reads from its surroundings: the process, or a test's capture. */
export interface CliIO {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  /** Whether stdout is a terminal (progress lines rewrite themselves there). */
  isTTY: boolean;
  env: Record<string, string | undefined>;
}

export const processIO: CliIO = {
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
  isTTY: process.stdout.isTTY === true,
  env: process.env,
};

/** A wrong flag, argument or value: exit code 2. */
export class UsageError extends Error {}
