/**
 * Hugging Face Hub datasets: which data files make a split (the conventions of Python's `datasets`),
 * and getting them into the Hugging Face cache that Python shares, with its offline behaviour.
 */
import { mkdir, readdir, readFile, stat, writeFile } from "node:fs/promises";
import { homedir } from "node:os";
import { dirname, join } from "node:path";
import { datasetInfo, downloadFileToCacheDir, HubApiError, listFiles } from "@huggingface/hub";
import { z } from "zod";
import { SourceError, ValidationError } from "../core/errors.js";

export interface HubOptions {
  /** Split to read. Default "train". */
  split?: string;
  /** Dataset config (subset): a folder of data files, or a `configs` entry of the dataset card. */
  config?: string;
  /** Branch, tag or commit. Default "main". */
  revision?: string;
  /** Defaults to the HF_TOKEN environment variable (then HUGGING_FACE_HUB_TOKEN). */
  accessToken?: string;
  /** Hub cache folder. Default: the standard one (HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub). */
  cacheDir?: string;
  /** Default https://huggingface.co (or HF_ENDPOINT). */
  hubUrl?: string;
  fetch?: typeof fetch;
}

const DEFAULT_HUB_URL = "https://huggingface.co";
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
const COMMIT = /^[0-9a-f]{40}$/;
const REPO = /^[A-Za-z0-9](?:[\w.-]*[A-Za-z0-9_])?\/[A-Za-z0-9](?:[\w.-]*[A-Za-z0-9_])?$/;
const DOWNLOADS_AT_ONCE = 4;

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

interface Settings {
  repo: string;
  split: string;
  config: string | undefined;
  revision: string;
  token: string | undefined;
  cacheDir: string;
  hubUrl: string;
  fetch: typeof fetch;
  offline: boolean;
  /** `hf://datasets/org/name`, with `@revision` when it is not main: where errors say they happened. */
  location: string;
}

type Problem = { problem: { code: string; message: string } };
type Selection = { files: string[] } | Problem;
type Layout = { splits: Map<string, string[]>; where: string; patterns?: Map<string, string[]> } | Problem;

/** Why the Hub failed, kept from the responses: the library's errors drop the headers, and mid-download the type. */
interface Trace {
  fetch: typeof fetch;
  unreachable?: unknown;
  failure?: { status: number; errorCode: string | null };
}

/**
 * Resolves a split of a Hub dataset to local data files in the HF cache, downloading what is missing.
 * Online it asks the Hub which commit the revision is and which files it holds, downloads the split's
 * files that the cache lacks and records the revision in `refs/`, like `huggingface_hub`. When the Hub
 * cannot be reached, or `HF_HUB_OFFLINE=1`, it answers from the cached snapshot of the revision.
 * Offline the dataset card is not read, so a `configs` entry of the card resolves only when its files
 * sit in a folder named for the config.
 */
export async function readHubDataset(repo: string, options: HubOptions = {}): Promise<string[]> {
  const settings = resolveSettings(repo, options, process.env);
  if (settings.offline) return fromCache(settings, "hub_not_cached", "HF_HUB_OFFLINE is set");

  const trace = traceFetch(settings.fetch);
  const credentials = settings.token ? { accessToken: settings.token } : {};
  const common = { hubUrl: settings.hubUrl, fetch: trace.fetch, ...credentials };
  let listing: Awaited<ReturnType<typeof listRevision>>;
  try {
    listing = await listRevision(settings, common);
  } catch (error) {
    if (trace.unreachable === undefined) throw hubFailure(error, trace, settings);
    const reason = `cannot reach the Hub at ${settings.hubUrl} (${messageOf(trace.unreachable)})`;
    return fromCache(settings, "hub_unreachable", reason, trace.unreachable);
  }
  const { commit, paths, blobs, card } = listing;

  const selection = selectFiles(paths, settings, card);
  if ("problem" in selection) {
    throw new SourceError(selection.problem.code, redact(selection.problem.message, settings), {
      location: { file: settings.location },
    });
  }
  const download = async (path: string): Promise<string> => {
    try {
      return await downloadFileToCacheDir({
        repo: { type: "dataset", name: settings.repo },
        path,
        revision: commit,
        cacheDir: settings.cacheDir,
        ...common,
      });
    } catch (error) {
      if (trace.unreachable === undefined) throw hubFailure(error, trace, settings, path);
      const reason = `cannot reach the Hub at ${settings.hubUrl} (${messageOf(trace.unreachable)})`;
      throw new SourceError(
        "hub_unreachable",
        redact(`${reason}, and the file is not in the cache`, settings),
        {
          location: { file: `${settings.location}/${path}` },
          cause: trace.unreachable,
        },
      );
    }
  };
  // The library writes a blob through `blobs/<id>.incomplete`, so two files with the same content must
  // not download at once: the later one waits, then only links the blob.
  const firstOfBlob = new Map<string, Promise<string>>();
  const files = await mapInOrder(selection.files, DOWNLOADS_AT_ONCE, (path) => {
    const blob = blobs.get(path);
    const earlier = blob === undefined ? undefined : firstOfBlob.get(blob);
    const result = earlier ? earlier.catch(() => undefined).then(() => download(path)) : download(path);
    if (blob !== undefined && !earlier) firstOfBlob.set(blob, result);
    return result;
  });
  if (settings.revision !== commit) await writeRef(storageFolder(settings), settings.revision, commit);
  return files;
}

/** Which commit the revision is, the dataset card's configs, and every file path of that commit. */
async function listRevision(
  settings: Settings,
  common: { hubUrl: string; fetch: typeof fetch; accessToken?: string },
) {
  const info = await datasetInfo({
    name: settings.repo,
    revision: settings.revision,
    additionalFields: ["sha", "cardData"],
    ...common,
  });
  if (typeof info.sha !== "string" || !COMMIT.test(info.sha)) {
    throw new SourceError("hub_error", "the Hub did not say which commit the revision is", {
      location: { file: settings.location },
    });
  }
  const card = parseCard(info.cardData, settings);
  const paths: string[] = [];
  /** Path → the id its cache blob is named by, picked as `downloadFileToCacheDir` picks it. */
  const blobs = new Map<string, string>();
  // Listing the commit, not the branch, keeps the listing and the downloads on one snapshot.
  const entries = listFiles({
    repo: { type: "dataset", name: settings.repo },
    recursive: true,
    revision: info.sha,
    ...common,
  });
  for await (const entry of entries) {
    if (entry.type !== "file") continue;
    paths.push(entry.path);
    const blob = entry.lfs?.oid ?? entry.xetHash ?? entry.oid;
    if (blob) blobs.set(entry.path, blob);
  }
  return { commit: info.sha, paths, blobs, card };
}

function resolveSettings(repo: unknown, options: HubOptions, env: NodeJS.ProcessEnv): Settings {
  if (typeof repo !== "string" || !REPO.test(repo) || repo.includes("--") || repo.includes("..")) {
    throw new ValidationError(
      "invalid_repo",
      `the dataset must be given as "owner/name" (like "HuggingFaceH4/no_robots"), got ${JSON.stringify(repo)}`,
    );
  }
  const split = optionalString(options.split, "split") ?? "train";
  if (!new RegExp(`^${SPLIT_NAME}$`).test(split)) {
    const hint = split.includes("[") ? "; slicing a split is not supported, use take() on the dataset" : "";
    throw new ValidationError(
      "invalid_option",
      `split must be a split name like "train", got "${split}"${hint}`,
    );
  }
  const config = optionalString(options.config, "config");
  if (config !== undefined && !isRelativePath(config)) {
    throw new ValidationError(
      "invalid_option",
      `config must be a config name or a folder of the dataset, got "${config}"`,
    );
  }
  const revision = optionalString(options.revision, "revision") ?? "main";
  if (!/^[\w.\-/]+$/.test(revision) || !isRelativePath(revision)) {
    throw new ValidationError(
      "invalid_option",
      `revision must be a branch, tag or commit, got "${revision}"`,
    );
  }
  const cacheDir = optionalString(options.cacheDir, "cacheDir") ?? defaultCacheDir(env);
  const hubUrl = parseHubUrl(
    optionalString(options.hubUrl, "hubUrl") ?? envValue(env, "HF_ENDPOINT") ?? DEFAULT_HUB_URL,
  );
  if (options.fetch !== undefined && typeof options.fetch !== "function") {
    throw new ValidationError("invalid_option", "fetch must be a function");
  }
  const base =
    options.fetch ?? ((input: Parameters<typeof fetch>[0], init?: RequestInit) => fetch(input, init));
  const offline = ["1", "ON", "YES", "TRUE"].includes((envValue(env, "HF_HUB_OFFLINE") ?? "").toUpperCase());
  return {
    repo,
    split,
    config,
    revision,
    token: resolveToken(options.accessToken, env),
    cacheDir,
    hubUrl,
    fetch: base,
    offline,
    location: `hf://datasets/${repo}${revision === "main" ? "" : `@${revision}`}`,
  };
}

function optionalString(value: unknown, name: string): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== "string" || value.trim() === "") {
    throw new ValidationError("invalid_option", `${name} must be a non-empty string`);
  }
  return value;
}

function isRelativePath(path: string): boolean {
  return (
    !path.startsWith("/") &&
    !path.endsWith("/") &&
    !path.split("/").some((part) => part === "" || part === "..")
  );
}

function envValue(env: NodeJS.ProcessEnv, name: string): string | undefined {
  const value = env[name]?.trim();
  return value ? value : undefined;
}

/** The same folder Python's `huggingface_hub` uses, so both read and fill one cache. */
function defaultCacheDir(env: NodeJS.ProcessEnv): string {
  const expand = (path: string) =>
    path === "~" || path.startsWith("~/") ? join(homedir(), path.slice(1)) : path;
  const hub = envValue(env, "HF_HUB_CACHE") ?? envValue(env, "HUGGINGFACE_HUB_CACHE");
  if (hub) return expand(hub);
  const home = envValue(env, "HF_HOME");
  if (home) return join(expand(home), "hub");
  return join(expand(envValue(env, "XDG_CACHE_HOME") ?? join(homedir(), ".cache")), "huggingface", "hub");
}

function parseHubUrl(value: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new ValidationError("invalid_option", `hubUrl must be an http(s) URL, got "${value}"`);
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") {
    throw new ValidationError("invalid_option", `hubUrl must be an http(s) URL, got "${value}"`);
  }
  return value.replace(/\/+$/, "");
}

function resolveToken(option: unknown, env: NodeJS.ProcessEnv): string | undefined {
  const [token, source] =
    option !== undefined
      ? [option, "accessToken"]
      : envValue(env, "HF_TOKEN") !== undefined
        ? [envValue(env, "HF_TOKEN"), "HF_TOKEN"]
        : [envValue(env, "HUGGING_FACE_HUB_TOKEN"), "HUGGING_FACE_HUB_TOKEN"];
  if (token === undefined) return undefined;
  // The Hub library refuses other tokens with a TypeError; say so here, without echoing the token.
  if (typeof token !== "string" || !token.trim().startsWith("hf_")) {
    throw new ValidationError(
      "invalid_option",
      `${source} must be a Hugging Face access token (it starts with "hf_")`,
    );
  }
  return token.trim();
}

function traceFetch(base: typeof fetch): Trace {
  const trace: Trace = {
    fetch: async (input, init) => {
      let response: Response;
      try {
        response = await base(input, init);
      } catch (error) {
        trace.unreachable ??= error;
        throw error;
      }
      if (!response.ok)
        trace.failure ??= { status: response.status, errorCode: response.headers.get("x-error-code") };
      return response;
    },
  };
  return trace;
}

/** Turns what the Hub library threw into a named error; `X-Error-Code` refines the status, as in Python. */
function hubFailure(error: unknown, trace: Trace, settings: Settings, path?: string): SourceError {
  if (error instanceof SourceError) return error;
  const file = path ? `${settings.location}/${path}` : settings.location;
  const status = error instanceof HubApiError ? error.statusCode : trace.failure?.status;
  const errorCode = trace.failure && trace.failure.status === status ? trace.failure.errorCode : null;
  const page = `${settings.hubUrl}/datasets/${settings.repo}`;
  const useToken = "set HF_TOKEN or pass accessToken";
  let code: string;
  let message: string;
  if (errorCode === "GatedRepo" || (status === 403 && !errorCode?.endsWith("NotFound"))) {
    code = "hub_gated";
    message =
      `the dataset is gated: accept its conditions at ${page} while logged in, then use a token of that account ` +
      `(${useToken})${settings.token ? "; the token sent has not been granted access" : "; no token was sent"}`;
  } else if (errorCode === "RevisionNotFound") {
    code = "hub_not_found";
    message = `revision "${settings.revision}" not found at ${page}`;
  } else if (errorCode === "EntryNotFound") {
    code = "hub_not_found";
    message = "the file is not in the dataset at this revision";
  } else if (errorCode === "RepoNotFound" || status === 404) {
    // Without a token the Hub answers 401 RepoNotFound for missing and private repositories alike.
    code = "hub_not_found";
    message = `dataset not found at ${page}`;
    if (errorCode === null && settings.revision !== "main")
      message += ` (or it has no revision "${settings.revision}")`;
    if (!settings.token) message += `; if it is private, ${useToken}`;
  } else if (status === 401) {
    code = "hub_unauthorized";
    message = settings.token
      ? `the Hub rejected the access token: check HF_TOKEN or accessToken (tokens: ${settings.hubUrl}/settings/tokens)`
      : `the Hub wants an access token for this dataset: ${useToken}`;
  } else {
    code = "hub_error";
    message =
      status === undefined
        ? `unexpected answer from the Hub: ${messageOf(error)}`
        : `the Hub answered ${status}: ${messageOf(error)}`;
  }
  return new SourceError(code, redact(message, settings), {
    location: { file },
    cause: error,
    ...(status === undefined ? {} : { status }),
  });
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** The token never reaches a message, even when a server or a proxy echoes it. */
function redact(message: string, settings: Settings): string {
  return settings.token ? message.replaceAll(settings.token, "<token>") : message;
}

function parseCard(cardData: unknown, settings: Settings): CardConfig[] | undefined {
  const parsed = cardSchema.safeParse(cardData ?? {});
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue ? `${issue.path.join(".")}: ${issue.message}` : "";
    throw new SourceError("hub_bad_card", `the dataset card's configs are not valid (${where})`, {
      location: { file: `${settings.location}/README.md` },
    });
  }
  const configs = parsed.data.configs;
  return configs && configs.length > 0 ? configs : undefined;
}

/** Picks the split's data files among a revision's paths; see `readHubDataset`. */
function selectFiles(
  paths: readonly string[],
  settings: Settings,
  card: CardConfig[] | undefined,
): Selection {
  const dataFiles = paths.filter(isDataFile).sort(byPath);
  if (dataFiles.length === 0) {
    return problem(
      "hub_no_data_files",
      `the dataset has no data files tunekit can read (${DATA_EXTENSIONS.join(", ")})`,
    );
  }
  const layout = splitLayout(dataFiles, settings.config, card);
  if ("problem" in layout) return layout;
  const { split } = settings;
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

function problem(code: string, message: string): Problem {
  return { problem: { code, message } };
}

function storageFolder(settings: Settings): string {
  return join(settings.cacheDir, `datasets--${settings.repo.replace("/", "--")}`);
}

/** Answers from the cached snapshot of the revision, as `huggingface_hub` does offline. */
async function fromCache(
  settings: Settings,
  code: string,
  reason: string,
  cause?: unknown,
): Promise<string[]> {
  const fail = (detail: string) =>
    new SourceError(code, redact(`${reason}, and ${detail}`, settings), {
      location: { file: settings.location },
      ...(cause === undefined ? {} : { cause }),
    });
  const storage = storageFolder(settings);
  const commit = COMMIT.test(settings.revision)
    ? settings.revision
    : await readRef(storage, settings.revision);
  const snapshot = commit === undefined ? undefined : join(storage, "snapshots", commit);
  const cached = snapshot === undefined ? undefined : await listTree(snapshot);
  if (snapshot === undefined || cached === undefined) {
    throw fail(`the dataset is not in the cache (${settings.cacheDir})`);
  }
  const selection = selectFiles(cached, settings, undefined);
  if ("problem" in selection) {
    throw fail(`the cache cannot give the split: ${selection.problem.message}`);
  }
  return selection.files.map((path) => join(snapshot, ...path.split("/")));
}

async function readRef(storage: string, revision: string): Promise<string | undefined> {
  try {
    const commit = (await readFile(join(storage, "refs", ...revision.split("/")), "utf8")).trim();
    return COMMIT.test(commit) ? commit : undefined;
  } catch {
    return undefined;
  }
}

/** Records which commit a branch or tag was, as `huggingface_hub` does, so offline reads find the snapshot. */
async function writeRef(storage: string, revision: string, commit: string): Promise<void> {
  if ((await readRef(storage, revision)) === commit) return;
  const path = join(storage, "refs", ...revision.split("/"));
  try {
    await mkdir(dirname(path), { recursive: true });
    await writeFile(path, commit);
  } catch {
    // The files are in place; without the ref only offline reads of this branch lose the snapshot.
  }
}

/** Every file under a folder (symlinks into blobs/ followed), as `/`-separated relative paths. */
async function listTree(root: string): Promise<string[] | undefined> {
  const files: string[] = [];
  const walk = async (folder: string, prefix: string): Promise<boolean> => {
    let names: string[];
    try {
      names = await readdir(folder);
    } catch {
      return false;
    }
    for (const name of names) {
      const info = await stat(join(folder, name)).catch(() => undefined);
      if (info?.isDirectory()) await walk(join(folder, name), `${prefix}${name}/`);
      else if (info?.isFile()) files.push(`${prefix}${name}`);
    }
    return true;
  };
  return (await walk(root, "")) ? files : undefined;
}

/** Runs `task` on each item, `limit` at a time, keeping the order; stops starting new ones after a failure. */
async function mapInOrder<T, R>(
  items: readonly T[],
  limit: number,
  task: (item: T) => Promise<R>,
): Promise<R[]> {
  const results: R[] = [];
  let next = 0;
  let failed = false;
  const worker = async () => {
    while (!failed && next < items.length) {
      const index = next++;
      try {
        results[index] = await task(items[index] as T);
      } catch (error) {
        failed = true;
        throw error;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}
