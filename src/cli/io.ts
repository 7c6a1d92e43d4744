/** Where the CLI writes, and what it reads from its surroundings: the process, or a test's capture. */
export interface CliIO {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  /** Whether stdout is a terminal (progress lines rewrite themselves there). */
  isTTY: boolean;
  /** The terminal's width, when stdout is one; progress lines are cut to it. Default 80. */
  columns?: number;
  env: Record<string, string | undefined>;
  /**
   * Calls `listener` on each Ctrl-C (or SIGTERM) until the returned function is called; while
   * subscribed, neither ends the process. Default: the process's SIGINT and SIGTERM.
   */
  onInterrupt?: (listener: () => void) => () => void;
  /** Ends the process at once (a second Ctrl-C). Default: `process.exit`. */
  exit?: (code: number) => void;
}

export const processIO: CliIO = {
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
  isTTY: process.stdout.isTTY === true,
  get columns() {
    return process.stdout.columns;
  },
  env: process.env,
  onInterrupt: (listener) => {
    process.on("SIGINT", listener);
    process.on("SIGTERM", listener);
    return () => {
      process.off("SIGINT", listener);
      process.off("SIGTERM", listener);
    };
  },
  exit: (code) => process.exit(code),
};

/** A wrong flag, argument or value: exit code 2. `command` says whose `--help` to point to. */
export class UsageError extends Error {
  readonly command: string | undefined;

  constructor(message: string, command?: string) {
    super(message);
    this.command = command;
  }
}
