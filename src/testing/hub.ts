/**
 * A Hugging Face Hub serving one dataset or model, as msw handlers, for tests of code that calls
 * `Dataset.fromHub` or downloads a model. It answers the requests `@huggingface/hub` makes (repository
 * info, the paginated tree listing, paths-info and `resolve` downloads with ranges, LFS files through a
 * CDN redirect when asked) the way the Hub does, errors included.
 */
import { createHash } from "node:crypto";
import { HttpResponse, http, type RequestHandler } from "msw";
import { ValidationError } from "../core/errors.js";

/** The commit `hubDatasetHandlers` and `hubModelHandlers` serve when none is given. */
export const HUB_TEST_COMMIT = "4b825dc642cb6eb9a060e54bf8d69288fbee4904";

/** One repository of the fake Hub. */
export interface HubRepoOptions {
  /** The repository, `owner/name`. */
  repo: string;
  /** Its files by path, like `{ "data/train.jsonl": "..." }` or `{ "config.json": "..." }`. */
  files: Record<string, string | Uint8Array>;
  /** The branch or tag the files are on. Default "main". */
  revision?: string;
  /** The commit that revision points at, 40 hex digits. Default `HUB_TEST_COMMIT`. */
  commit?: string;
  /**
   * Downloads need a token that has accepted the conditions: `token`. As on the Hub, the repository's
   * info and file listing stay public; a download answers 401 without a token and 403 with another one
   * (both with `X-Error-Code: GatedRepo`).
   */
  gated?: boolean;
  /**
   * The only token with access. Without `gated` the repository is private: every request needs it, and
   * the Hub hides the repository otherwise (401 without a token, 404 with another, `RepoNotFound`).
   */
  token?: string;
  /** Default https://huggingface.co. */
  hubUrl?: string;
  /** The card metadata the Hub's API gives as `cardData` (the README's YAML header as JSON), e.g. `{ configs: [...] }`. */
  cardData?: Record<string, unknown>;
  /** Entries per page of the tree listing, which links the next page in a `Link` header. Default 1000, as the Hub. */
  treePageSize?: number;
  /**
   * When set, `resolve` answers LFS files with a 302 to `${cdnUrl}/repos/{sha256}`, which serves them
   * (ranges too), as the Hub sends them to its CDN. Default: the Hub serves them itself.
   */
  cdnUrl?: string;
}

/** A dataset of the fake Hub. */
export type HubDatasetOptions = HubRepoOptions;
/** A model of the fake Hub. */
export type HubModelOptions = HubRepoOptions;

type RepoType = "dataset" | "model";

interface StoredFile {
  path: string;
  bytes: Uint8Array;
  /** The git blob id, which the Hub gives as `oid` and as the ETag of files kept in git. */
  oid: string;
  /** The SHA-256, for files kept in LFS: their ETag and cache blob name. */
  lfs: string | undefined;
}

/** Files the Hub's default `.gitattributes` sends to LFS, and any over its 10 MB limit for git. */
const LFS_FILE = /\.(?:parquet|arrow|gz|zip|zst|tar|bin|npy|safetensors|pt|pth|ckpt|h5|onnx|msgpack|gguf)$/i;
const LFS_ABOVE = 10 * 1024 * 1024;
const LAST_MODIFIED = "2024-01-01T00:00:00.000Z";

/**
 * msw handlers for a Hub that holds one dataset: `setupServer(...hubDatasetHandlers({ repo, files }))`.
 * Requests for any other dataset of that hub get `RepoNotFound`, so serve one dataset per server (or
 * `server.use()` the one a test needs). Responses carry the Hub's headers (`X-Repo-Commit`, `ETag`,
 * `X-Linked-ETag`, `X-Error-Code`); `Range` requests get 206 or 416.
 */
export function hubDatasetHandlers(options: HubDatasetOptions): RequestHandler[] {
  return handlers("dataset", options);
}

/**
 * msw handlers for a Hub that holds one model: `setupServer(...hubModelHandlers({ repo, files }))`.
 * It answers `/api/models/…` and `/{owner}/{name}/resolve/…` as `hubDatasetHandlers` answers datasets;
 * files named `*.safetensors`, `*.bin` and the like are LFS files, as on the Hub.
 */
export function hubModelHandlers(options: HubModelOptions): RequestHandler[] {
  return handlers("model", options);
}

function handlers(type: RepoType, options: HubRepoOptions): RequestHandler[] {
  const hub = new FakeHubRepo(type, options);
  const hubUrl = (options.hubUrl ?? "https://huggingface.co").replace(/\/+$/, "");
  const files = type === "dataset" ? `${hubUrl}/datasets/*` : `${hubUrl}/:owner/:name/resolve/*`;
  const cdn = options.cdnUrl?.replace(/\/+$/, "");
  return [
    http.get(`${hubUrl}/api/${type}s/*`, ({ request }) => hub.api(request)),
    http.post(`${hubUrl}/api/${type}s/*`, ({ request }) => hub.api(request)),
    http.get(files, ({ request }) => hub.resolve(request)),
    http.head(files, ({ request }) => hub.resolve(request)),
    ...(cdn
      ? [
          http.get(`${cdn}/repos/:sha`, ({ request, params }) => hub.cdn(request, String(params.sha))),
          http.head(`${cdn}/repos/:sha`, ({ request, params }) => hub.cdn(request, String(params.sha))),
        ]
      : []),
  ];
}

class FakeHubRepo {
  readonly #type: RepoType;
  readonly #repo: string;
  readonly #revision: string;
  readonly #commit: string;
  readonly #gated: boolean;
  readonly #token: string | undefined;
  readonly #cardData: Record<string, unknown> | undefined;
  readonly #pageSize: number;
  readonly #cdnUrl: string | undefined;
  readonly #files: Map<string, StoredFile>;
  readonly #folders: Set<string>;

  constructor(type: RepoType, options: HubRepoOptions) {
    const { repo, revision = "main", commit = HUB_TEST_COMMIT, treePageSize = 1000 } = options;
    if (!/^[\w.-]+\/[\w.-]+$/.test(repo)) invalid(type, `repo must be "owner/name", got "${repo}"`);
    if (!/^[0-9a-f]{40}$/.test(commit))
      invalid(type, `commit must be 40 lowercase hex digits, got "${commit}"`);
    if (!Number.isInteger(treePageSize) || treePageSize < 1)
      invalid(type, "treePageSize must be a whole number > 0");
    if (options.token !== undefined && !options.token.startsWith("hf_"))
      invalid(type, 'token must start with "hf_"');
    if (options.cdnUrl !== undefined && !/^https?:\/\/[^/]+/.test(options.cdnUrl))
      invalid(type, `cdnUrl must be an http(s) URL, got "${options.cdnUrl}"`);
    this.#type = type;
    this.#repo = repo;
    this.#revision = revision;
    this.#commit = commit;
    this.#gated = options.gated ?? false;
    this.#token = options.token;
    this.#cardData = options.cardData;
    this.#pageSize = treePageSize;
    this.#cdnUrl = options.cdnUrl?.replace(/\/+$/, "");
    this.#files = new Map();
    this.#folders = new Set();
    for (const [path, content] of Object.entries(options.files)) {
      if (
        path.startsWith("/") ||
        path.endsWith("/") ||
        path.split("/").some((part) => part === "" || part === "..")
      ) {
        invalid(type, `file paths must be relative, like "data/train.jsonl", got "${path}"`);
      }
      const bytes = typeof content === "string" ? new TextEncoder().encode(content) : content;
      const oid = createHash("sha1").update(`blob ${bytes.byteLength}\0`).update(bytes).digest("hex");
      const lfs = LFS_FILE.test(path) || bytes.byteLength > LFS_ABOVE ? sha256(bytes) : undefined;
      this.#files.set(path, { path, bytes, oid, lfs });
      const parts = path.split("/");
      for (let depth = 1; depth < parts.length; depth++) this.#folders.add(parts.slice(0, depth).join("/"));
    }
  }

  /** `/api/{datasets|models}/{repo}[/revision/{rev}|/tree/{rev}[/{path}]|/paths-info/{rev}]`. */
  async api(request: Request): Promise<Response> {
    const url = new URL(request.url);
    const prefix = `/api/${this.#type}s/`;
    const rest = decodeURIComponent(url.pathname.slice(url.pathname.indexOf(prefix) + prefix.length));
    const denied = this.#deny(request, rest, "metadata");
    if (denied) return denied;
    const [, action = "", ...tail] = rest.slice(this.#repo.length).split("/");
    const target = tail.join("/");
    if (action === "" && request.method === "GET") return this.#info(url);
    if (action === "revision" && request.method === "GET") {
      const revision = this.#revisionOf(target);
      return revision && revision.rest === "" ? this.#info(url) : this.#revisionNotFound(target);
    }
    if (action === "tree" && request.method === "GET") {
      const revision = this.#revisionOf(target);
      return revision ? this.#tree(url, revision.rest) : this.#revisionNotFound(target);
    }
    if (action === "paths-info" && request.method === "POST") {
      const revision = this.#revisionOf(target);
      return revision && revision.rest === "" ? this.#pathsInfo(request) : this.#revisionNotFound(target);
    }
    return hubError(404, null, "Not Found");
  }

  /** `[/datasets]/{repo}/resolve/{rev}/{path}`: the file, whole or a range, with the Hub's headers. */
  resolve(request: Request): Response {
    const url = new URL(request.url);
    const prefix = this.#type === "dataset" ? "/datasets/" : "/";
    const rest = decodeURIComponent(url.pathname.slice(url.pathname.indexOf(prefix) + prefix.length));
    const denied = this.#deny(request, rest, "content");
    if (denied) return denied;
    const [, action = "", ...tail] = rest.slice(this.#repo.length).split("/");
    if (action !== "resolve") return hubError(404, null, "Not Found");
    const revision = this.#revisionOf(tail.join("/"));
    if (!revision) return this.#revisionNotFound(tail.join("/"));
    const file = this.#files.get(revision.rest);
    const headers = new Headers({ "X-Repo-Commit": this.#commit });
    if (!file) return hubError(404, "EntryNotFound", "Entry not found", headers);
    headers.set("ETag", `"${file.lfs ?? file.oid}"`);
    if (file.lfs) {
      headers.set("X-Linked-ETag", `"${file.lfs}"`);
      headers.set("X-Linked-Size", String(file.bytes.byteLength));
      if (this.#cdnUrl) {
        headers.set("Location", `${this.#cdnUrl}/repos/${file.lfs}`);
        return new HttpResponse(null, { status: 302, headers });
      }
    }
    return content(request, file, headers);
  }

  /** `{cdnUrl}/repos/{sha256}`: an LFS file where `resolve` redirects it, without the Hub's headers. */
  cdn(request: Request, sha: string): Response {
    const file = [...this.#files.values()].find((candidate) => candidate.lfs === sha);
    if (!file) return new HttpResponse("NoSuchKey", { status: 404 });
    return content(request, file, new Headers({ ETag: `"${sha}"` }));
  }

  /** The Hub's access rules: private repositories hide, gated ones refuse downloads. */
  #deny(request: Request, rest: string, kind: "metadata" | "content"): Response | undefined {
    const sent = /^Bearer\s+(.+)$/i.exec(request.headers.get("authorization") ?? "")?.[1]?.trim();
    const isThisRepo = rest === this.#repo || rest.startsWith(`${this.#repo}/`);
    const isPrivate = this.#token !== undefined && !this.#gated;
    if (!isThisRepo || (isPrivate && sent !== this.#token)) {
      // The Hub answers 401 to anonymous requests for missing and private repositories alike.
      return hubError(sent ? 404 : 401, "RepoNotFound", "Repository not found");
    }
    if (this.#gated && kind === "content" && (this.#token === undefined || sent !== this.#token)) {
      const page = `${new URL(request.url).origin}/${this.#type === "dataset" ? "datasets/" : ""}${this.#repo}`;
      return sent
        ? hubError(
            403,
            "GatedRepo",
            `Access to ${this.#type} ${this.#repo} is restricted and you are not in the authorized list. Visit ${page} to ask for access.`,
          )
        : hubError(
            401,
            "GatedRepo",
            `Access to ${this.#type} ${this.#repo} is restricted. You must have access to it and be authenticated to access it. Please log in.`,
          );
    }
    return undefined;
  }

  /** Splits `{revision}/{rest}` knowing the revisions served: a branch or tag name may hold slashes. */
  #revisionOf(target: string): { name: string; rest: string } | undefined {
    const names = [this.#revision, this.#commit, ...(this.#revision === "main" ? ["HEAD"] : [])];
    for (const name of names) {
      if (target === name) return { name, rest: "" };
      if (target.startsWith(`${name}/`)) return { name, rest: target.slice(name.length + 1) };
    }
    return undefined;
  }

  #revisionNotFound(target: string): Response {
    return hubError(404, "RevisionNotFound", `Invalid rev id: ${target.split("/")[0] ?? ""}`);
  }

  #info(url: URL): Response {
    const full: Record<string, unknown> = {
      _id: this.#commit.slice(0, 24),
      id: this.#repo,
      author: this.#repo.split("/")[0],
      sha: this.#commit,
      lastModified: LAST_MODIFIED,
      createdAt: LAST_MODIFIED,
      private: this.#token !== undefined && !this.#gated,
      gated: this.#gated ? "auto" : false,
      disabled: false,
      downloads: 0,
      likes: 0,
      tags: [],
      ...(this.#cardData ? { cardData: this.#cardData } : {}),
      siblings: [...this.#files.keys()].sort().map((rfilename) => ({ rfilename })),
    };
    // With `expand` the Hub answers the fields asked for and the ids, nothing else.
    const expand = url.searchParams.getAll("expand");
    const body =
      expand.length === 0
        ? full
        : Object.fromEntries(
            Object.entries(full).filter(([key]) => key === "_id" || key === "id" || expand.includes(key)),
          );
    return HttpResponse.json(body, { headers: { "X-Repo-Commit": this.#commit } });
  }

  #tree(url: URL, folder: string): Response {
    if (folder !== "" && !this.#folders.has(folder) && !this.#files.has(folder)) {
      return hubError(404, "EntryNotFound", `${folder} does not exist on "${this.#revision}"`);
    }
    const recursive = ["true", "1"].includes(url.searchParams.get("recursive") ?? "");
    const prefix = folder === "" ? "" : `${folder}/`;
    const within = (path: string) =>
      path.startsWith(prefix) && (recursive || !path.slice(prefix.length).includes("/")) && path !== folder;
    const entries = [
      ...[...this.#folders]
        .filter(within)
        .map((path) => ({ type: "directory", oid: sha1(path), size: 0, path })),
      ...[...this.#files.values()].filter((file) => within(file.path)).map((file) => this.#entry(file)),
    ].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
    const start = Number(url.searchParams.get("cursor") ?? "0") || 0;
    const page = entries.slice(start, start + this.#pageSize);
    const headers = new Headers();
    if (start + this.#pageSize < entries.length) {
      const next = new URL(url);
      next.searchParams.set("cursor", String(start + this.#pageSize));
      headers.set("Link", `<${next.href}>; rel="next"`);
    }
    return HttpResponse.json(page, { headers });
  }

  async #pathsInfo(request: Request): Promise<Response> {
    const body: unknown = await request.json().catch(() => undefined);
    const paths = (body as { paths?: unknown } | undefined)?.paths;
    if (!Array.isArray(paths) || !paths.every((path) => typeof path === "string")) {
      return hubError(400, null, '"paths" must be an array of strings');
    }
    const expand = (body as { expand?: unknown }).expand === true;
    const extra = expand
      ? {
          lastCommit: { id: this.#commit, title: `Upload ${this.#type}`, date: LAST_MODIFIED },
          securityFileStatus: { status: "safe" },
        }
      : {};
    const found = paths.flatMap((path: string) => {
      const file = this.#files.get(path);
      if (file) return [{ ...this.#entry(file), ...extra }];
      return this.#folders.has(path) ? [{ type: "directory", oid: sha1(path), size: 0, path, ...extra }] : [];
    });
    return HttpResponse.json(found);
  }

  #entry(file: StoredFile) {
    const size = file.bytes.byteLength;
    const lfs = file.lfs ? { lfs: { oid: file.lfs, size, pointerSize: 134 } } : {};
    return { type: "file", oid: file.oid, size, path: file.path, ...lfs };
  }
}

/** A file, whole or the range asked for, with `headers` added to the usual ones. */
function content(request: Request, file: StoredFile, headers: Headers): Response {
  const size = file.bytes.byteLength;
  headers.set("Accept-Ranges", "bytes");
  headers.set("Content-Type", "application/octet-stream");
  let body = file.bytes;
  let status = 200;
  const range = parseRange(request.headers.get("range"), size);
  if (range === "unsatisfiable") {
    headers.set("Content-Range", `bytes */${size}`);
    return new HttpResponse(null, { status: 416, headers });
  }
  if (range) {
    status = 206;
    body = file.bytes.subarray(range.start, range.end + 1);
    headers.set("Content-Range", `bytes ${range.start}-${range.end}/${size}`);
  }
  headers.set("Content-Length", String(body.byteLength));
  if (request.method === "HEAD") return new HttpResponse(null, { status, headers });
  return new HttpResponse(chunked(body), { status, headers });
}

/** The bytes in 64 KiB chunks, as a network delivers them, so that readers see a big file arrive piece by piece. */
function chunked(bytes: Uint8Array): ReadableStream<Uint8Array> {
  const chunkSize = 64 * 1024;
  let offset = 0;
  return new ReadableStream({
    pull(controller) {
      if (offset >= bytes.byteLength) return controller.close();
      controller.enqueue(bytes.slice(offset, offset + chunkSize));
      offset += chunkSize;
    },
  });
}

/** An error the way the Hub sends one: JSON `{ error }` plus `X-Error-Code` and `X-Error-Message`. */
function hubError(status: number, code: string | null, message: string, headers = new Headers()): Response {
  if (code) headers.set("X-Error-Code", code);
  headers.set("X-Error-Message", message);
  return HttpResponse.json({ error: message }, { status, headers });
}

/** `bytes=a-b`, `bytes=a-` or `bytes=-n`; several ranges get the whole file, which HTTP allows. */
function parseRange(
  header: string | null,
  size: number,
): { start: number; end: number } | "unsatisfiable" | undefined {
  const match = /^bytes=(\d*)-(\d*)$/.exec(header?.trim() ?? "");
  if (!match || (match[1] === "" && match[2] === "")) return undefined;
  const [first, last] = [match[1] ?? "", match[2] ?? ""];
  const start = first === "" ? Math.max(0, size - Number(last)) : Number(first);
  const end = first === "" || last === "" ? size - 1 : Math.min(Number(last), size - 1);
  return start >= size || start > end ? "unsatisfiable" : { start, end };
}

function sha256(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

function sha1(text: string): string {
  return createHash("sha1").update(text).digest("hex");
}

function invalid(type: RepoType, message: string): never {
  const name = type === "dataset" ? "hubDatasetHandlers" : "hubModelHandlers";
  throw new ValidationError("invalid_argument", `${name}: ${message}`);
}
