/**
 * The Hugging Face Hub and its cache, whatever the repository holds: settings from options and the
 * environment (as Python's `huggingface_hub` reads them), the cache layout that Python shares
 * (`blobs/`, `snapshots/<commit>/`, `refs/<branch>`), downloads into it, the offline fallback, and
 * the Hub's failures as named errors that never show the token.
 */
import { readdir, readFile, stat } from "node:fs/promises";
import { homedir } from "node:os";
import { join } from "node:path";
import { downloadFileToCacheDir, HubApiError, listFiles } from "@huggingface/hub";
import { type ErrorCode, SourceError, ValidationError } from "./errors.js";
import { writeFileAtomically } from "./files.js";

/** What a Hub repository holds; it decides the cache folder (`datasets--…`, `models--…`) and the URLs. */
export type RepoType = "dataset" | "model";

/** How to reach a repository and the cache; each setting has a default from the environment. */
export interface HubAccessOptions {
  /** Branch, tag or commit. Default "main". */
  revision?: string;
  /** Defaults to the HF_TOKEN environment variable (then HUGGING_FACE_HUB_TOKEN). */
  accessToken?: string;
  /** Hub cache folder. Default: the standard one (HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub). */
  cacheDir?: string;
  /** Default https://huggingface.co (or HF_ENDPOINT). */
  hubUrl?: string;
  fetch?: typeof fetch;
  /** Stops the requests and downloads; the call rejects with the signal's reason. */
  signal?: AbortSignal;
}

/** A repository at a revision, with every setting resolved. */
export interface HubRepo {
  type: RepoType;
  /** `owner/name`. */
  name: string;
  /** Branch, tag or commit, as asked. */
  revision: string;
  token: string | undefined;
  cacheDir: string;
  hubUrl: string;
  fetch: typeof fetch;
  signal: AbortSignal | undefined;
  /** HF_HUB_OFFLINE is set: the cache answers without asking the Hub. */
  offline: boolean;
  /** `hf://datasets/org/name` or `hf://org/name`, with `@revision` when it is not main: where errors say they happened. */
  location: string;
}

/** Talking to the Hub within one call: a fetch that keeps why the Hub failed, and what every request takes. */
export interface HubSession {
  repo: HubRepo;
  trace: Trace;
  common: { hubUrl: string; fetch: typeof fetch; accessToken?: string };
}

/** A file of a commit, as the tree listing gives it. */
export interface RepoFile {
  path: string;
  /** Bytes. */
  size: number;
  /** The id its cache blob is named by, picked as `downloadFileToCacheDir` picks it. */
  blob: string | undefined;
}

/** Why the cache answers instead of the Hub. */
export interface CacheFallback {
  /** `hub_not_cached` when HF_HUB_OFFLINE is set, `hub_unreachable` when the Hub did not answer. */
  code: "hub_not_cached" | "hub_unreachable";
  reason: string;
  cause?: unknown;
}

/** Bytes of one file arrived; the last event of each file has `loadedBytes === totalBytes`. */
export interface DownloadProgressEvent {
  type: "download-progress";
  /** The path in the repository. */
  file: string;
  loadedBytes: number;
  /** Undefined when neither the response nor the listing gave the size. */
  totalBytes: number | undefined;
}

/** Why the Hub failed, kept from the responses: the library's errors drop the headers, and mid-download the type. */
interface Trace {
  fetch: typeof fetch;
  unreachable?: unknown;
  failure?: { status: number; errorCode: string | null };
}

/** A Hugging Face repository id, `owner/name`: how a model argument is told from a folder path. */
export const HUB_ID = /^[A-Za-z0-9][\w.-]*\/[A-Za-z0-9][\w.-]*$/;

const DEFAULT_HUB_URL = "https://huggingface.co";
const COMMIT = /^[0-9a-f]{40}$/;
const REPO = /^[A-Za-z0-9](?:[\w.-]*[A-Za-z0-9_])?\/[A-Za-z0-9](?:[\w.-]*[A-Za-z0-9_])?$/;
const EXAMPLE_REPO: Record<RepoType, string> = {
  dataset: "HuggingFaceH4/no_robots",
  model: "HuggingFaceTB/SmolLM2-135M-Instruct",
};
const DOWNLOADS_AT_ONCE = 4;

/** Resolves the options of a repository against the environment, checking each one. */
export function resolveHubRepo(
  type: RepoType,
  name: unknown,
  options: HubAccessOptions,
  env: NodeJS.ProcessEnv,
): HubRepo {
  if (typeof name !== "string" || !REPO.test(name) || name.includes("--") || name.includes("..")) {
    throw new ValidationError(
      "invalid_argument",
      `the ${type} must be given as "owner/name" (like "${EXAMPLE_REPO[type]}"), got ${JSON.stringify(name)}`,
    );
  }
  const revision = optionalString(options.revision, "revision") ?? "main";
  if (!/^[\w.\-/]+$/.test(revision) || !isRelativePath(revision)) {
    throw new ValidationError(
      "invalid_argument",
      `revision must be a branch, tag or commit, got "${revision}"`,
    );
  }
  const cacheDir = optionalString(options.cacheDir, "cacheDir") ?? defaultCacheDir(env);
  const hubUrl = parseHubUrl(
    optionalString(options.hubUrl, "hubUrl") ?? envValue(env, "HF_ENDPOINT") ?? DEFAULT_HUB_URL,
  );
  if (options.fetch !== undefined && typeof options.fetch !== "function") {
    throw new ValidationError("invalid_argument", "fetch must be a function");
  }
  if (options.signal !== undefined && !(options.signal instanceof AbortSignal)) {
    throw new ValidationError("invalid_argument", "signal must be an AbortSignal");
  }
  const offline = ["1", "ON", "YES", "TRUE"].includes((envValue(env, "HF_HUB_OFFLINE") ?? "").toUpperCase());
  return {
    type,
    name,
    revision,
    token: resolveToken(options.accessToken, env),
    cacheDir,
    hubUrl,
    fetch: options.fetch ?? ((input: Parameters<typeof fetch>[0], init?: RequestInit) => fetch(input, init)),
    signal: options.signal,
    offline,
    location: `hf://${type === "dataset" ? "datasets/" : ""}${name}${revision === "main" ? "" : `@${revision}`}`,
  };
}

/** Checks an option that, when given, must be a non-empty string. */
export function optionalString(value: unknown, name: string): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== "string" || value.trim() === "") {
    throw new ValidationError("invalid_argument", `${name} must be a non-empty string`);
  }
  return value;
}

/** True for `a/b`-style paths that stay inside the folder they are joined to. */
export function isRelativePath(path: string): boolean {
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
export function defaultCacheDir(env: NodeJS.ProcessEnv): string {
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
    throw new ValidationError("invalid_argument", `hubUrl must be an http(s) URL, got "${value}"`);
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") {
    throw new ValidationError("invalid_argument", `hubUrl must be an http(s) URL, got "${value}"`);
  }
  return value.replace(/\/+$/, "");
}

/** The token of the options, else of HF_TOKEN, else of HUGGING_FACE_HUB_TOKEN; checked without echoing it. */
export function resolveToken(option: unknown, env: NodeJS.ProcessEnv): string | undefined {
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
      "invalid_argument",
      `${source} must be a Hugging Face access token (it starts with "hf_")`,
    );
  }
  return token.trim();
}

/** The repository's page on the Hub. */
export function repoPage(repo: HubRepo): string {
  return `${repo.hubUrl}/${repo.type === "dataset" ? "datasets/" : ""}${repo.name}`;
}

/** The token never reaches a message, even when a server or a proxy echoes it. */
export function redact(message: string, repo: HubRepo): string {
  return repo.token ? message.replaceAll(repo.token, "<token>") : message;
}

/**
 * Runs `list` against the Hub, or says why the cache must answer instead: HF_HUB_OFFLINE is set, or the
 * Hub cannot be reached. Any other failure is thrown as a named error.
 */
export async function listOrFallback<T>(
  repo: HubRepo,
  list: (session: HubSession) => Promise<T>,
): Promise<{ session: HubSession; listing: T } | { fallback: CacheFallback }> {
  repo.signal?.throwIfAborted();
  if (repo.offline) return { fallback: { code: "hub_not_cached", reason: "HF_HUB_OFFLINE is set" } };
  const trace = traceFetch(repo.fetch, repo.signal);
  const session: HubSession = {
    repo,
    trace,
    common: { hubUrl: repo.hubUrl, fetch: trace.fetch, ...(repo.token ? { accessToken: repo.token } : {}) },
  };
  try {
    return { session, listing: await list(session) };
  } catch (error) {
    repo.signal?.throwIfAborted();
    if (trace.unreachable === undefined) throw hubFailure(error, session);
    return {
      fallback: { code: "hub_unreachable", reason: unreachableReason(session), cause: trace.unreachable },
    };
  }
}

/** Every file of a commit that the revision info named; listing the commit, not the branch, keeps one snapshot. */
export async function listCommit(
  session: HubSession,
  sha: unknown,
): Promise<{ commit: string; files: Map<string, RepoFile> }> {
  const { repo } = session;
  if (typeof sha !== "string" || !COMMIT.test(sha)) {
    throw new SourceError("hub_error", "the Hub did not say which commit the revision is", {
      location: { file: repo.location },
    });
  }
  const files = new Map<string, RepoFile>();
  const entries = listFiles({
    repo: { type: repo.type, name: repo.name },
    recursive: true,
    revision: sha,
    ...session.common,
  });
  for await (const entry of entries) {
    if (entry.type !== "file") continue;
    const blob = entry.lfs?.oid ?? entry.xetHash ?? entry.oid;
    files.set(entry.path, { path: entry.path, size: entry.lfs?.size ?? entry.size, blob: blob || undefined });
  }
  return { commit: sha, files };
}

/**
 * Downloads the files of a commit that the cache lacks, `DOWNLOADS_AT_ONCE` at a time, and returns
 * their snapshot paths in the order asked.
 */
export async function downloadFiles(
  session: HubSession,
  commit: string,
  files: readonly RepoFile[],
  onProgress?: (event: DownloadProgressEvent) => void,
): Promise<string[]> {
  const { repo } = session;
  const download = async (file: RepoFile): Promise<string> => {
    repo.signal?.throwIfAborted();
    const progress = progressOf(file, onProgress);
    try {
      const local = await downloadFileToCacheDir({
        repo: { type: repo.type, name: repo.name },
        path: file.path,
        revision: commit,
        cacheDir: repo.cacheDir,
        ...session.common,
        fetch: fileFetch(session.common.fetch, repo.signal, file, progress.report),
      });
      await progress.done(local);
      return local;
    } catch (error) {
      repo.signal?.throwIfAborted();
      if (session.trace.unreachable === undefined) throw hubFailure(error, session, file.path);
      throw new SourceError(
        "hub_unreachable",
        redact(`${unreachableReason(session)}, and the file is not in the cache`, repo),
        { location: { file: `${repo.location}/${file.path}` }, cause: session.trace.unreachable },
      );
    }
  };
  // The library writes a blob through `blobs/<id>.incomplete`, so two files with the same content must
  // not download at once: the later one waits, then only links the blob.
  const firstOfBlob = new Map<string, Promise<string>>();
  return mapInOrder(files, DOWNLOADS_AT_ONCE, (file) => {
    const earlier = file.blob === undefined ? undefined : firstOfBlob.get(file.blob);
    const result = earlier ? earlier.catch(() => undefined).then(() => download(file)) : download(file);
    if (file.blob !== undefined && !earlier) firstOfBlob.set(file.blob, result);
    return result;
  });
}

/** Reports a file's bytes as they arrive, and its size once in the cache (also when it was there already). */
function progressOf(file: RepoFile, onProgress: ((event: DownloadProgressEvent) => void) | undefined) {
  let last: { loaded: number; total: number | undefined } | undefined;
  const report = (loaded: number, total: number | undefined) => {
    last = { loaded, total };
    onProgress?.({ type: "download-progress", file: file.path, loadedBytes: loaded, totalBytes: total });
  };
  const done = async (local: string) => {
    if (!onProgress) return;
    const size = (await stat(local)).size;
    if (last?.loaded !== size || last.total !== size) report(size, size);
  };
  return { report, done };
}

/**
 * The fetch for one file's download: it counts the body of the file as it arrives and stops it on
 * abort. It asks for plain HTTP, not the Xet protocol (the Hub then redirects Xet-stored files to its
 * bridge), so the bytes counted are the file's own.
 */
function fileFetch(
  base: typeof fetch,
  signal: AbortSignal | undefined,
  file: RepoFile,
  report: (loaded: number, total: number | undefined) => void,
): typeof fetch {
  return async (input, init) => {
    const headers = new Headers(init?.headers);
    if (headers.get("accept")?.includes("xet")) headers.set("accept", "*/*");
    const response = await base(input, { ...init, headers });
    const isFileBody = (init?.method ?? "GET").toUpperCase() === "GET" && !headers.has("range");
    if (!isFileBody || !response.ok || !response.body) return response;
    const length = response.headers.get("content-length");
    const total = length !== null && /^\d+$/.test(length) ? Number(length) : file.size;
    let loaded = 0;
    let stop: (() => void) | undefined;
    const counted = new TransformStream<Uint8Array, Uint8Array>({
      start(controller) {
        // Some fetches keep delivering a body after the abort; the download must stop at once.
        stop = () => controller.error(signal?.reason);
        signal?.addEventListener("abort", stop, { once: true });
      },
      transform(chunk, controller) {
        loaded += chunk.byteLength;
        report(loaded, total);
        controller.enqueue(chunk);
      },
      flush() {
        if (stop) signal?.removeEventListener("abort", stop);
      },
    });
    return new Response(response.body.pipeThrough(counted), {
      status: response.status,
      statusText: response.statusText,
      headers: response.headers,
    });
  };
}

function traceFetch(base: typeof fetch, signal: AbortSignal | undefined): Trace {
  const trace: Trace = {
    fetch: async (input, init) => {
      const signals = [init?.signal, signal].filter((item): item is AbortSignal => Boolean(item));
      let response: Response;
      try {
        response = await base(
          input,
          signals.length === 0 ? init : { ...init, signal: AbortSignal.any(signals) },
        );
      } catch (error) {
        if (!signal?.aborted) trace.unreachable ??= error;
        throw error;
      }
      if (!response.ok)
        trace.failure ??= { status: response.status, errorCode: response.headers.get("x-error-code") };
      return response;
    },
  };
  return trace;
}

function unreachableReason(session: HubSession): string {
  return `cannot reach the Hub at ${session.repo.hubUrl} (${messageOf(session.trace.unreachable)})`;
}

/** Turns what the Hub library threw into a named error; `X-Error-Code` refines the status, as in Python. */
function hubFailure(error: unknown, session: HubSession, path?: string): SourceError {
  if (error instanceof SourceError) return error;
  const { repo, trace } = session;
  const file = path ? `${repo.location}/${path}` : repo.location;
  const status = error instanceof HubApiError ? error.statusCode : trace.failure?.status;
  const errorCode = trace.failure && trace.failure.status === status ? trace.failure.errorCode : null;
  const page = repoPage(repo);
  const useToken = "set HF_TOKEN or pass accessToken";
  let code: ErrorCode;
  let message: string;
  if (errorCode === "GatedRepo" || (status === 403 && !errorCode?.endsWith("NotFound"))) {
    code = "hub_gated";
    message =
      `the ${repo.type} is gated: accept its conditions at ${page} while logged in, then use a token of that account ` +
      `(${useToken})${repo.token ? "; the token sent has not been granted access" : "; no token was sent"}`;
  } else if (errorCode === "RevisionNotFound") {
    code = "hub_not_found";
    message = `revision "${repo.revision}" not found at ${page}`;
  } else if (errorCode === "EntryNotFound") {
    code = "hub_not_found";
    message = `the file is not in the ${repo.type} at this revision`;
  } else if (errorCode === "RepoNotFound" || status === 404) {
    // Without a token the Hub answers 401 RepoNotFound for missing and private repositories alike.
    code = "hub_not_found";
    message = `${repo.type} not found at ${page}`;
    if (errorCode === null && repo.revision !== "main")
      message += ` (or it has no revision "${repo.revision}")`;
    if (!repo.token) message += `; if it is private, ${useToken}`;
  } else if (status === 401) {
    code = "hub_unauthorized";
    message = repo.token
      ? `the Hub rejected the access token: check HF_TOKEN or accessToken (tokens: ${repo.hubUrl}/settings/tokens)`
      : `the Hub wants an access token for this ${repo.type}: ${useToken}`;
  } else {
    code = "hub_error";
    message =
      status === undefined
        ? `unexpected answer from the Hub: ${messageOf(error)}`
        : `the Hub answered ${status}: ${messageOf(error)}`;
  }
  return new SourceError(code, redact(message, repo), {
    location: { file },
    cause: error,
    ...(status === undefined ? {} : { status }),
  });
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** `<cacheDir>/datasets--org--name` or `<cacheDir>/models--org--name`, as `huggingface_hub` names it. */
export function storageFolder(repo: HubRepo): string {
  return join(repo.cacheDir, `${repo.type}s--${repo.name.replace("/", "--")}`);
}

/** The folder of a commit's files in the cache. */
export function snapshotFolder(repo: HubRepo, commit: string): string {
  return join(storageFolder(repo), "snapshots", commit);
}

/**
 * The cached snapshot of the revision (a commit, or the commit `refs/` recorded for a branch or tag),
 * as `huggingface_hub` finds it offline; an error built from `fallback` when there is none.
 */
export async function cachedSnapshot(
  repo: HubRepo,
  fallback: CacheFallback,
): Promise<{ folder: string; paths: string[] }> {
  const commit = COMMIT.test(repo.revision) ? repo.revision : await readRef(repo, repo.revision);
  const folder = commit === undefined ? undefined : snapshotFolder(repo, commit);
  const paths = folder === undefined ? undefined : await listTree(folder);
  if (folder === undefined || paths === undefined) {
    throw cacheFailure(repo, fallback, `the ${repo.type} is not in the cache (${repo.cacheDir})`);
  }
  return { folder, paths };
}

/** The error of an offline answer the cache cannot give: the fallback's reason, and `detail`. */
export function cacheFailure(repo: HubRepo, fallback: CacheFallback, detail: string): SourceError {
  return new SourceError(fallback.code, redact(`${fallback.reason}, and ${detail}`, repo), {
    location: { file: repo.location },
    ...(fallback.cause === undefined ? {} : { cause: fallback.cause }),
  });
}

/** Records which commit a branch or tag was, as `huggingface_hub` does, so offline reads find the snapshot. */
export async function recordRevision(repo: HubRepo, commit: string): Promise<void> {
  if (repo.revision === commit || (await readRef(repo, repo.revision)) === commit) return;
  const path = join(storageFolder(repo), "refs", ...repo.revision.split("/"));
  try {
    await writeFileAtomically(path, commit);
  } catch {
    // The files are in place; without the ref only offline reads of this branch lose the snapshot.
  }
}

async function readRef(repo: HubRepo, revision: string): Promise<string | undefined> {
  try {
    const path = join(storageFolder(repo), "refs", ...revision.split("/"));
    const commit = (await readFile(path, "utf8")).trim();
    return COMMIT.test(commit) ? commit : undefined;
  } catch {
    return undefined;
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
