/**
 * The CLI's flags, read by tunekit itself: every refusal is one line that names the flag and what it
 * takes (Node's own parser words its errors for programmers and refuses negative numbers).
 */
import { UsageError } from "./io.js";

/**
 * `optional`: a string flag whose value may be left out (`--resume` alone), then `bare` is its value;
 * `multiple`: a string flag given any number of times, its values in order.
 */
export type FlagSpec = Record<
  string,
  { type: "string" | "boolean" | "multiple" } | { type: "optional"; bare: string }
>;
export type FlagValues<S extends FlagSpec> = {
  [K in keyof S]?: S[K]["type"] extends "boolean"
    ? boolean
    : S[K]["type"] extends "multiple"
      ? string[]
      : string;
};

/** Edit distance, for "did you mean". */
function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, index) => index);
  for (let i = 1; i <= a.length; i++) {
    let diagonal = row[0] as number;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const above = row[j] as number;
      row[j] = Math.min(above + 1, (row[j - 1] as number) + 1, diagonal + (a[i - 1] === b[j - 1] ? 0 : 1));
      diagonal = above;
    }
  }
  return row[b.length] as number;
}

/** `; did you mean --model?` when one known name is close. */
export function suggestion(name: string, known: readonly string[], prefix = "--"): string {
  const close = known
    .map((candidate) => ({ candidate, cost: distance(name, candidate) }))
    .filter(({ cost }) => cost <= Math.max(2, Math.floor(name.length / 3)))
    .sort((a, b) => a.cost - b.cost)[0];
  return close ? `; did you mean ${prefix}${close.candidate}?` : "";
}

const NUMBER = /^[-+]?(\d+\.?\d*|\.\d+)(e[-+]?\d+)?$/i;

/**
 * Reads `--name value`, `--name=value`, boolean `--name`, `-h` (help) and positionals (everything
 * after `--` is positional). A string flag's value may be a negative number; any other value that
 * starts with `-` is taken for a forgotten value. Unknown flags are refused with the nearest known one.
 */
export function parseFlags<S extends FlagSpec>(
  command: string,
  argv: readonly string[],
  spec: S,
): { values: FlagValues<S>; positionals: string[]; help: boolean } {
  const values: Record<string, string | boolean | string[]> = {};
  const positionals: string[] = [];
  let help = false;
  const names = Object.keys(spec);
  for (let index = 0; index < argv.length; index++) {
    const arg = argv[index] as string;
    if (arg === "--") {
      positionals.push(...argv.slice(index + 1));
      break;
    }
    if (arg === "-h" || arg === "--help") {
      help = true;
      continue;
    }
    if (!arg.startsWith("-") || arg === "-" || NUMBER.test(arg)) {
      positionals.push(arg);
      continue;
    }
    if (!arg.startsWith("--")) throw new UsageError(`unknown option ${arg} for ${command}`, command);
    const equals = arg.indexOf("=");
    const name = arg.slice(2, equals === -1 ? undefined : equals);
    const flag = spec[name];
    if (!flag)
      throw new UsageError(`unknown option --${name} for ${command}${suggestion(name, names)}`, command);
    if (flag.type === "boolean") {
      if (equals !== -1) throw new UsageError(`--${name} takes no value`, command);
      values[name] = true;
      continue;
    }
    let value: string | undefined;
    if (equals !== -1) value = arg.slice(equals + 1);
    else {
      const next = argv[index + 1];
      if (next !== undefined && (!next.startsWith("-") || NUMBER.test(next))) {
        value = next;
        index++;
      }
    }
    if (value === undefined && flag.type === "optional") value = flag.bare;
    if (value === undefined || value === "") throw new UsageError(`--${name} needs a value`, command);
    if (flag.type === "multiple") {
      values[name] = [...((values[name] as string[] | undefined) ?? []), value];
      continue;
    }
    if (name in values) throw new UsageError(`--${name} is given twice`, command);
    values[name] = value;
  }
  return { values: values as FlagValues<S>, positionals, help };
}

/** A whole number flag within [min, max]; the message names the range and what was given. */
export function integerFlag(
  value: string | undefined,
  flag: string,
  { min = 1, max = Number.MAX_SAFE_INTEGER, command }: { min?: number; max?: number; command?: string } = {},
): number | undefined {
  if (value === undefined) return undefined;
  const parsed = NUMBER.test(value) ? Number(value) : Number.NaN;
  if (!Number.isSafeInteger(parsed) || parsed < min || parsed > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `from ${min} to ${max}`;
    throw new UsageError(`${flag} takes a whole number ${range}, got "${value}"`, command);
  }
  return parsed;
}

/** A number flag > `above` (default 0), or >= `min` when given. */
export function numberFlag(
  value: string | undefined,
  flag: string,
  { above = 0, atLeast, command }: { above?: number; atLeast?: number; command?: string } = {},
): number | undefined {
  if (value === undefined) return undefined;
  const parsed = NUMBER.test(value) ? Number(value) : Number.NaN;
  const fits = atLeast === undefined ? parsed > above : parsed >= atLeast;
  if (!Number.isFinite(parsed) || !fits)
    throw new UsageError(
      `${flag} takes a number ${atLeast === undefined ? `> ${above}` : `>= ${atLeast}`}, got "${value}"`,
      command,
    );
  return parsed;
}

/** `--quantization nf4|none`: how a local model loads (default `fallback`). */
export function quantizationFlag(
  value: string | undefined,
  command: string,
  fallback: "nf4" | "none" = "nf4",
): "nf4" | "none" {
  const quantization = value ?? fallback;
  if (quantization !== "nf4" && quantization !== "none")
    throw new UsageError(`--quantization: unknown "${quantization}"; use nf4 or none`, command);
  return quantization;
}

/** `--compute-dtype f32|bf16`: the type of a local model's matrix products (LoadOptions.computeDtype). */
export function computeDtypeFlag(value: string | undefined, command: string): "f32" | "bf16" | undefined {
  if (value !== undefined && value !== "f32" && value !== "bf16")
    throw new UsageError(`--compute-dtype: unknown "${value}"; use f32 or bf16`, command);
  return value;
}

/** `--max-record-bytes`: bytes, or with a unit (`16MB`, `512KiB`). */
export function bytesFlag(value: string | undefined, flag: string, command?: string): number | undefined {
  if (value === undefined) return undefined;
  const match = /^(\d+(?:\.\d+)?)\s*(b|kb|kib|mb|mib|gb|gib)?$/i.exec(value.trim());
  const units: Record<string, number> = {
    b: 1,
    kb: 1e3,
    kib: 1024,
    mb: 1e6,
    mib: 1024 ** 2,
    gb: 1e9,
    gib: 1024 ** 3,
  };
  const bytes = match ? Math.floor(Number(match[1]) * (units[(match[2] ?? "b").toLowerCase()] ?? 1)) : 0;
  if (!(bytes > 0 && Number.isSafeInteger(bytes)))
    throw new UsageError(
      `${flag} takes a size > 0 in bytes (or with KB, KiB, MB, MiB), got "${value}"`,
      command,
    );
  return bytes;
}

/** An argument as a shell reads it back. */
export function quoteArg(value: string): string {
  return /^[\w@%+=:,./-]+$/.test(value) ? value : `'${value.replaceAll("'", "'\\''")}'`;
}
