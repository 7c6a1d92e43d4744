/**
 * Hugging Face Hub datasets: which data files make a split (the conventions of Python's `datasets`),
 * and getting them into the Hugging Face cache that Python shares, with its offline behaviour.
 */
import { join } from "node:path";
import { datasetInfo } from "@huggingface/hub";
import { z } from "zod";
import { type ErrorCode, SourceError, ValidationError } from "../core/errors.js";
import {
  type CacheFallback,
  cachedSnapshot,
  cacheFailure,
  downloadFiles,
  type HubAccessOptions,
  type HubRepo,
  type HubSession,
  isRelativePath,
  listCommit,
  listOrFallback,
  optionalString,
  type RepoFile,
  recordRevision,
  redact,
  resolveHubRepo,
} from "../core/hub.js";

/** Where a Hub dataset is and which split to read; see `HubAccessOptions` for the rest. */
export interface HubOptions extends HubAccessOptions {
  /** Split to read. Default "train". */
  split?: string;
  /** Dataset config (subset): a folder of data files, or a `configs` entry of the dataset card. */
  config?: string;
}

const DATA_EXTENSIONS = [
  ".jsonl",
  ".jsonl.gz",
  ".json",
  ".json.gz",
  ".ndjson",
  ".csv",
  ".csv.gz",
  ".parquet",
];
/** Metadata files that `datasets` never reads as data (they would otherwise pass for JSON records). */
const IGNORED_FILES = new Set([
  "readme.md",
  "config.json",
  "dataset_info.json",
  "dataset_infos.json",
  "dataset_dict.json",
]);
/** The words `datasets` looks for in paths, by the split they name. */
const SPLIT_KEYWORDS: Record<string, readonly string[]> = {
  train: ["train", "training"],
  validation: ["validation", "valid", "dev", "val"],
  test: ["test", "testing", "eval", "evaluation"],
};
const SPLIT_ORDER = Object.keys(SPLIT_KEYWORDS);
/** A keyword counts only as a word: bounded by the path's start or end, `/ - _ .`, a space or a digit. */
const KEYWORD_RULES = Object.entries(SPLIT_KEYWORDS).map(
  ([split, words]) =>
    [split, new RegExp(`(?:^|[-/_. 0-9])(?:${words.join("|")})(?=[-/_. 0-9]|$)`, "i")] as const,
);
const SPLIT_NAME = String.raw`\w+(?:\.\w+)*`;
/** Layouts that name their splits outright, tried in order before the keywords (any split name goes). */
const NAMED_SPLIT_RULES = [
  // push_to_hub: data/train-00000-of-00001.parquet, or {config}/train-00000-of-00001.parquet
  new RegExp(String.raw`^(?:data/)?(${SPLIT_NAME})-\d{5}-of-\d{5}[^/]*$`),
  new RegExp(`^data/(${SPLIT_NAME})/.+$`),
  // the Hub's Parquet export (refs/convert/parquet): {config}/{split}/0000.parquet, partial-{split} when cut short
  new RegExp(String.raw`^(?:partial-)?(${SPLIT_NAME})/\d+\.parquet$`),
];
const EXPORT_LAYOUT = new RegExp(String.raw`^[^/]+/(?:partial-)?${SPLIT_NAME}/\d+\.parquet$`);

const patterns = z.union([z.string(), z.array(z.string())]);
const cardSchema = z.object({
  configs: z
    .array(
      z.object({
        config_name: z.string().min(1).default("default"),
        data_dir: z.string().optional(),
        data_files: z
          .union([
            patterns,
            z.array(z.object({ split: z.string(), path: patterns })),
            z.record(z.string(), patterns),
          ])
          .optional(),
        default: z.boolean().optional(),
      }),
    )
    .optional(),
});
type CardConfig = NonNullable<z.infer<typeof cardSchema>["configs"]>[number];

/** The split and config asked for. */
interface DatasetChoice {
  split: string;
  config: string | undefined;
}

type Problem = { problem: { code: ErrorCode; message: string } };
type Selection = { files: string[] } | Problem;
type Layout = { splits: Map<string, string[]>; where: string; patterns?: Map<string, string[]> } | Problem;

/**
 * Resolves a split of a Hub dataset to local data files in the HF cache, downloading what is missing.
 * Online it asks the Hub which commit the revision is and which files it holds, downloads the split's
 * files that the cache lacks and records the revision in `refs/`, like `huggingface_hub`. When the Hub
 * cannot be reached, or `HF_HUB_OFFLINE=1`, it answers from the cached snapshot of the revision.
 * Offline the dataset card is not read, so a `configs` entry of the card resolves only when its files
 * sit in a folder named for the config.
 */
export async function readHubDataset(repo: string, options: HubOptions = {}): Promise<string[]> {
  const hub = resolveHubRepo("dataset", repo, options, process.env);
  const choice = resolveChoice(options);
  const connection = await listOrFallback(hub, listRevision);
  if ("fallback" in connection) return fromCache(hub, choice, connection.fallback);
  const { session, listing } = connection;

  const selection = selectFiles([...listing.files.keys()], choice, listing.card);
  if ("problem" in selection) {
    throw new SourceError(selection.problem.code, redact(selection.problem.message, hub), {
      location: { file: hub.location },
    });
  }
  const wanted = selection.files.map((path) => listing.files.get(path) as RepoFile);
  const files = await downloadFiles(session, listing.commit, wanted);
  await recordRevision(hub, listing.commit);
  return files;
}

/** Which commit the revision is, the dataset card's configs, and every file of that commit. */
async function listRevision(session: HubSession) {
  const { repo } = session;
  const info = await datasetInfo({
    name: repo.name,
    revision: repo.revision,
    additionalFields: ["sha", "cardData"],
    ...session.common,
  });
  const card = parseCard(info.cardData, repo);
  return { ...(await listCommit(session, info.sha)), card };
}

function resolveChoice(options: HubOptions): DatasetChoice {
  const split = optionalString(options.split, "split") ?? "train";
  if (!new RegExp(`^${SPLIT_NAME}$`).test(split)) {
    const hint = split.includes("[") ? "; slicing a split is not supported, use take() on the dataset" : "";
    throw new ValidationError(
      "invalid_argument",
      `split must be a split name like "train", got "${split}"${hint}`,
    );
  }
  const config = optionalString(options.config, "config");
  if (config !== undefined && !isRelativePath(config)) {
    throw new ValidationError(
      "invalid_argument",
      `config must be a config name or a folder of the dataset, got "${config}"`,
    );
  }
  return { split, config };
}

function parseCard(cardData: unknown, hub: HubRepo): CardConfig[] | undefined {
  const parsed = cardSchema.safeParse(cardData ?? {});
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue ? `${issue.path.join(".")}: ${issue.message}` : "";
    throw new SourceError("hub_bad_card", `the dataset card's configs are not valid (${where})`, {
      location: { file: `${hub.location}/README.md` },
    });
  }
  const configs = parsed.data.configs;
  return configs && configs.length > 0 ? configs : undefined;
}

/** Picks the split's data files among a revision's paths; see `readHubDataset`. */
function selectFiles(
  paths: readonly string[],
  choice: DatasetChoice,
  card: CardConfig[] | undefined,
): Selection {
  const dataFiles = paths.filter(isDataFile).sort(byPath);
  if (dataFiles.length === 0) {
    return problem(
      "hub_no_data_files",
      `the dataset has no data files tunekit can read (${DATA_EXTENSIONS.join(", ")})`,
    );
  }
  const layout = splitLayout(dataFiles, choice.config, card);
  if ("problem" in layout) return layout;
  const { split } = choice;
  const canonical = Object.keys(SPLIT_KEYWORDS).find((name) => SPLIT_KEYWORDS[name]?.includes(split));
  const files =
    layout.splits.get(split) ?? (canonical === undefined ? undefined : layout.splits.get(canonical));
  if (files === undefined) {
    const names = [...layout.splits.keys()].sort(bySplit);
    return problem(
      "hub_split_not_found",
      `split "${split}" not found${layout.where}; the splits are: ${names.join(", ")}`,
    );
  }
  if (files.length === 0) {
    const declared = layout.patterns?.get(split)?.join(", ") ?? "";
    return problem(
      "hub_no_data_files",
      `the dataset card gives split "${split}"${layout.where} as ${declared}, which matches no file tunekit can read (${DATA_EXTENSIONS.join(", ")})`,
    );
  }
  return { files };
}

function splitLayout(
  dataFiles: string[],
  config: string | undefined,
  card: CardConfig[] | undefined,
): Layout {
  if (card) {
    const chosen =
      config === undefined
        ? (card.find((entry) => entry.default) ??
          card.find((entry) => entry.config_name === "default") ??
          (card.length === 1 ? card[0] : undefined))
        : card.find((entry) => entry.config_name === config);
    if (chosen) return cardLayout(dataFiles, chosen);
    if (config === undefined) {
      return problem(
        "hub_config_required",
        `the dataset has several configs, choose one: ${configNames(dataFiles, card)}`,
      );
    }
  }
  if (config !== undefined) {
    const inside = dataFiles.filter((path) => path.startsWith(`${config}/`));
    if (inside.length === 0) {
      return problem(
        "hub_config_not_found",
        `config "${config}" not found; the configs are: ${configNames(dataFiles, card)}`,
      );
    }
    return { splits: inferSplits(inside, `${config}/`), where: ` of config "${config}"` };
  }
  if (dataFiles.every((path) => EXPORT_LAYOUT.test(path))) {
    // The Parquet export keeps every config in a folder; without a choice, read the default one, as `datasets` does.
    const folders = [...new Set(dataFiles.map(topFolder))].sort(byPath);
    const folder = folders.includes("default") ? "default" : folders.length === 1 ? folders[0] : undefined;
    if (folder === undefined) {
      return problem(
        "hub_config_required",
        `the dataset has several configs, choose one: ${folders.join(", ")}`,
      );
    }
    return {
      splits: inferSplits(
        dataFiles.filter((path) => path.startsWith(`${folder}/`)),
        `${folder}/`,
      ),
      where: "",
    };
  }
  return { splits: inferSplits(dataFiles, ""), where: "" };
}

function cardLayout(dataFiles: string[], entry: CardConfig): Layout {
  const where = ` of config "${entry.config_name}"`;
  const base = entry.data_dir?.replace(/^\.?\/+|\/+$/g, "") ?? "";
  const prefix = base ? `${base}/` : "";
  if (entry.data_files === undefined) {
    return {
      splits: inferSplits(
        dataFiles.filter((path) => path.startsWith(prefix)),
        prefix,
      ),
      where,
    };
  }
  const declared = new Map<string, string[]>();
  const add = (split: string, value: string | string[]) =>
    declared.set(split, [...(declared.get(split) ?? []), ...(typeof value === "string" ? [value] : value)]);
  const dataFilesField = entry.data_files;
  if (typeof dataFilesField === "string" || isStringArray(dataFilesField)) add("train", dataFilesField);
  else if (Array.isArray(dataFilesField)) for (const item of dataFilesField) add(item.split, item.path);
  else for (const [split, value] of Object.entries(dataFilesField)) add(split, value);

  const splits = new Map<string, string[]>();
  for (const [split, globs] of declared) {
    const rules = globs.map((glob) => globToRegExp(`${prefix}${glob.replace(/^\.\//, "")}`));
    splits.set(
      split,
      dataFiles.filter((path) => rules.some((rule) => rule.test(path))),
    );
  }
  return { splits, where, patterns: declared };
}

function isStringArray(value: unknown): value is string[] {
  return Array.isArray(value) && value.every((item) => typeof item === "string");
}

/** Splits by path, the `datasets` way: outright split names first, then keywords, else everything is train. */
function inferSplits(files: string[], prefix: string): Map<string, string[]> {
  const relative = (path: string) => path.slice(prefix.length);
  for (const rule of NAMED_SPLIT_RULES) {
    const splits = new Map<string, string[]>();
    for (const path of files) {
      const split = rule.exec(relative(path))?.[1];
      if (split !== undefined) splits.set(split, [...(splits.get(split) ?? []), path]);
    }
    if (splits.size > 0) return splits;
  }
  const splits = new Map<string, string[]>();
  for (const path of files) {
    for (const [split, rule] of KEYWORD_RULES) {
      if (rule.test(relative(path))) splits.set(split, [...(splits.get(split) ?? []), path]);
    }
  }
  return splits.size > 0 ? splits : new Map([["train", files]]);
}

function configNames(dataFiles: string[], card: CardConfig[] | undefined): string {
  const names = new Set(card?.map((entry) => entry.config_name));
  for (const path of dataFiles) if (path.includes("/")) names.add(topFolder(path));
  return names.size > 0 ? [...names].sort(byPath).join(", ") : "none (the data files are not in folders)";
}

function topFolder(path: string): string {
  return path.slice(0, path.indexOf("/"));
}

function isDataFile(path: string): boolean {
  const parts = path.split("/");
  const name = (parts.at(-1) ?? "").toLowerCase();
  // Hidden files and folders (.github, __pycache__) are never data, as in `datasets`.
  if (parts.some((part) => part.startsWith(".") || part.startsWith("__"))) return false;
  return !IGNORED_FILES.has(name) && DATA_EXTENSIONS.some((extension) => name.endsWith(extension));
}

/** fsspec-style glob, as dataset cards use: `*` and `?` stay within a folder, `**` crosses folders. */
function globToRegExp(glob: string): RegExp {
  let source = "";
  for (let index = 0; index < glob.length; index++) {
    const char = glob.charAt(index);
    if (char === "*" && glob.charAt(index + 1) === "*") {
      const folders = glob.charAt(index + 2) === "/";
      source += folders ? "(?:.*/)?" : ".*";
      index += folders ? 2 : 1;
    } else if (char === "*") source += "[^/]*";
    else if (char === "?") source += "[^/]";
    else if (char === "[" && glob.indexOf("]", index + 2) > 0) {
      const close = glob.indexOf("]", index + 2);
      const body = glob.slice(index + 1, close).replace(/\\/g, "\\\\");
      source += `[${body.startsWith("!") ? `^${body.slice(1)}` : body}]`;
      index = close;
    } else source += char.replace(/[.+^${}()|[\]\\/]/g, "\\$&");
  }
  return new RegExp(`^${source}$`);
}

function byPath(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function bySplit(a: string, b: string): number {
  const rank = (name: string) =>
    SPLIT_ORDER.includes(name) ? SPLIT_ORDER.indexOf(name) : SPLIT_ORDER.length;
  return rank(a) - rank(b) || byPath(a, b);
}

function problem(code: ErrorCode, message: string): Problem {
  return { problem: { code, message } };
}

/** Answers from the cached snapshot of the revision, as `huggingface_hub` does offline. */
async function fromCache(hub: HubRepo, choice: DatasetChoice, fallback: CacheFallback): Promise<string[]> {
  const snapshot = await cachedSnapshot(hub, fallback);
  const selection = selectFiles(snapshot.paths, choice, undefined);
  if ("problem" in selection) {
    throw cacheFailure(hub, fallback, `the cache cannot give the split: ${selection.problem.message}`);
  }
  return selection.files.map((path) => join(snapshot.folder, ...path.split("/")));
}
