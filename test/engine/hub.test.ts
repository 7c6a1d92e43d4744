import { createHash } from "node:crypto";
import { lstat, readFile, readlink, rm } from "node:fs/promises";
import { join } from "node:path";
import { HttpResponse, http } from "msw";
import { setupServer } from "msw/node";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import { type SourceError, TunekitError } from "../../src/core/errors.js";
import { type DownloadProgressEvent, downloadModel, type ModelHubOptions } from "../../src/engine/hub.js";
import { type LoadProgressEvent, LocalModel } from "../../src/engine/local-model.js";
import { readModelTensors } from "../../src/engine/safetensors.js";
import { HUB_TEST_COMMIT, type HubModelOptions, hubModelHandlers } from "../../src/testing/index.js";
import { FIXTURES, HAS_FIXTURES, tempDir } from "../helpers.js";

const HUB = "https://huggingface.co";
const CDN = "https://cas-bridge.xethub.hf.co";
const REPO = "org/name";
const TOKEN = "hf_secretTokenThatMustNotLeak";

/** A safetensors file of F32 vectors, each filled with its index. */
function safetensors(tensors: Record<string, number>): Uint8Array {
  const header: Record<string, unknown> = {};
  let offset = 0;
  for (const [name, length] of Object.entries(tensors)) {
    header[name] = { dtype: "F32", shape: [length], data_offsets: [offset, offset + length * 4] };
    offset += length * 4;
  }
  const json = new TextEncoder().encode(
    JSON.stringify(header).padEnd(8 * Math.ceil(JSON.stringify(header).length / 8)),
  );
  const bytes = new Uint8Array(8 + json.byteLength + offset);
  new DataView(bytes.buffer).setBigUint64(0, BigInt(json.byteLength), true);
  bytes.set(json, 8);
  const data = new Float32Array(bytes.buffer, 8 + json.byteLength, offset / 4);
  for (let index = 0; index < data.length; index++) data[index] = index;
  return bytes;
}

const metadata = {
  "config.json": JSON.stringify({ model_type: "llama", hidden_size: 8 }),
  "tokenizer.json": JSON.stringify({ version: "1.0", model: { type: "BPE", vocab: {}, merges: [] } }),
  "tokenizer_config.json": JSON.stringify({ bos_token: "<s>" }),
  "generation_config.json": JSON.stringify({ eos_token_id: 2 }),
  "README.md": "# A model\n",
  ".gitattributes": "*.safetensors filter=lfs diff=lfs merge=lfs -text\n",
};
/** Big enough to arrive in several chunks. */
const weights = safetensors({ "model.embed_tokens.weight": 64 * 1024 });
const singleFile = { ...metadata, "model.safetensors": weights };

const shardA = safetensors({ "model.embed_tokens.weight": 1024 });
const shardB = safetensors({ "lm_head.weight": 2048 });
const sharded = {
  ...metadata,
  "model.safetensors.index.json": JSON.stringify({
    metadata: { total_size: 12288 },
    weight_map: {
      "model.embed_tokens.weight": "model-00001-of-00002.safetensors",
      "lm_head.weight": "model-00002-of-00002.safetensors",
    },
  }),
  "model-00001-of-00002.safetensors": shardA,
  "model-00002-of-00002.safetensors": shardB,
  // What a repository also holds that tunekit must not fetch.
  "pytorch_model.bin": new Uint8Array(4096),
};

const server = setupServer();
/** Every request the fake Hub saw in the current test. */
const seen: Request[] = [];
server.events.on("request:start", ({ request }) => {
  seen.push(request.clone());
});

beforeAll(() => server.listen({ onUnhandledRequest: "error" }));
beforeEach(() => {
  // The machine running the tests may have these set; the tests decide them.
  for (const name of ["HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE", "HF_ENDPOINT"])
    vi.stubEnv(name, "");
  // @huggingface/hub logs each download on console.debug.
  vi.spyOn(console, "debug").mockImplementation(() => {});
});
afterEach(() => {
  server.resetHandlers();
  seen.length = 0;
  vi.unstubAllEnvs();
  vi.restoreAllMocks();
});
afterAll(() => server.close());

function serve(options: Partial<HubModelOptions> & Pick<HubModelOptions, "files">) {
  server.use(...hubModelHandlers({ repo: REPO, ...options }));
}

function snapshot(cacheDir: string, commit = HUB_TEST_COMMIT) {
  return join(cacheDir, "models--org--name", "snapshots", commit);
}

/** The repository paths of the files downloaded (their content requests, probes left out). */
function downloaded(): string[] {
  const paths = seen
    .filter((request) => request.method === "GET" && !request.headers.has("range"))
    .map((request) => new URL(request.url).pathname)
    .filter((path) => path.includes("/resolve/"))
    .map((path) => decodeURIComponent(path).split("/").slice(5).join("/"));
  return [...new Set(paths)].sort();
}

// Comparing digests: a deep equality of megabytes takes seconds.
const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");
const digest = async (path: string) => sha256(await readFile(path));

async function failure(promise: Promise<unknown>): Promise<SourceError> {
  const error = await promise.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(TunekitError.isInstance(error)).toBe(true);
  return error as SourceError;
}

const unreachable: typeof fetch = async () => {
  throw new TypeError("fetch failed", { cause: new Error("getaddrinfo ENOTFOUND huggingface.co") });
};

describe("downloadModel", () => {
  it("downloads config, tokenizer and model.safetensors into the snapshot of the commit, and records refs/main", async () => {
    serve({ files: singleFile });
    const cacheDir = await tempDir();
    const folder = await downloadModel(REPO, { cacheDir });

    expect(folder).toBe(snapshot(cacheDir));
    expect(downloaded()).toEqual([
      "config.json",
      "generation_config.json",
      "model.safetensors",
      "tokenizer.json",
      "tokenizer_config.json",
    ]);
    expect(await digest(join(folder, "model.safetensors"))).toBe(sha256(weights));
    expect(await readFile(join(folder, "config.json"), "utf8")).toBe(metadata["config.json"]);
    // As huggingface_hub lays it out: snapshot entries link into blobs/.
    expect((await lstat(join(folder, "model.safetensors"))).isSymbolicLink()).toBe(true);
    expect(await readlink(join(folder, "model.safetensors"))).toContain("blobs");
    expect(await readFile(join(cacheDir, "models--org--name", "refs", "main"), "utf8")).toBe(HUB_TEST_COMMIT);
    expect([...(await readModelTensors(folder)).keys()]).toEqual(["model.embed_tokens.weight"]);
  });

  it("downloads the index and every shard it names, through the CDN redirect, and nothing else", async () => {
    // msw follows the redirect itself, without a request event: a handler that answers nothing sees it.
    serve({ files: sharded, cdnUrl: CDN });
    const fromCdn: string[] = [];
    server.use(
      http.get(`${CDN}/*`, ({ request }) => {
        fromCdn.push(request.url);
      }),
    );
    const cacheDir = await tempDir();
    const folder = await downloadModel(REPO, { cacheDir });

    expect(downloaded()).toEqual([
      "config.json",
      "generation_config.json",
      "model-00001-of-00002.safetensors",
      "model-00002-of-00002.safetensors",
      "model.safetensors.index.json",
      "tokenizer.json",
      "tokenizer_config.json",
    ]);
    expect(fromCdn).toHaveLength(4); // two shards, each probed for its size, then fetched
    expect(await digest(join(folder, "model-00002-of-00002.safetensors"))).toBe(sha256(shardB));
    expect([...(await readModelTensors(folder)).keys()].sort()).toEqual([
      "lm_head.weight",
      "model.embed_tokens.weight",
    ]);
  });

  it("follows a branch: the snapshot is its commit, and refs/ records the branch", async () => {
    const commit = "a".repeat(40);
    serve({ files: singleFile, revision: "v1.0", commit });
    const cacheDir = await tempDir();
    expect(await downloadModel(REPO, { cacheDir, revision: "v1.0" })).toBe(snapshot(cacheDir, commit));
    expect(await readFile(join(cacheDir, "models--org--name", "refs", "v1.0"), "utf8")).toBe(commit);
  });

  it("answers from the cache with HF_HUB_OFFLINE=1 or when the Hub is unreachable, without a request", async () => {
    serve({ files: sharded });
    const cacheDir = await tempDir();
    const folder = await downloadModel(REPO, { cacheDir });
    seen.length = 0;

    vi.stubEnv("HF_HUB_OFFLINE", "1");
    expect(await downloadModel(REPO, { cacheDir })).toBe(folder);
    expect(seen).toEqual([]);
    vi.stubEnv("HF_HUB_OFFLINE", "");
    expect(await downloadModel(REPO, { cacheDir, fetch: unreachable })).toBe(folder);
  });

  it("downloads nothing again when the cache has the files", async () => {
    serve({ files: singleFile });
    const cacheDir = await tempDir();
    await downloadModel(REPO, { cacheDir });
    seen.length = 0;
    await downloadModel(REPO, { cacheDir });
    expect(downloaded()).toEqual([]);
  });

  it("says offline that the model is not in the cache, naming the cache folder", async () => {
    vi.stubEnv("HF_HUB_OFFLINE", "1");
    const cacheDir = await tempDir();
    const error = await failure(downloadModel(REPO, { cacheDir }));
    expect(error.code).toBe("hub_not_cached");
    expect(error.message).toContain("HF_HUB_OFFLINE is set");
    expect(error.message).toContain(cacheDir);
    expect(error.location?.file).toBe("hf://org/name");
  });

  it("refuses a cached snapshot that lacks a shard when the Hub is unreachable", async () => {
    serve({ files: sharded });
    const cacheDir = await tempDir();
    const folder = await downloadModel(REPO, { cacheDir });
    await rm(join(folder, "model-00002-of-00002.safetensors"));

    const error = await failure(downloadModel(REPO, { cacheDir, fetch: unreachable }));
    expect(error.code).toBe("hub_unreachable");
    expect(error.message).toContain("cannot reach the Hub at https://huggingface.co (fetch failed)");
    expect(error.message).toContain("lacks model-00002-of-00002.safetensors");
    expect(error.message).toContain(join(cacheDir, "models--org--name"));
  });

  it("refuses a repository without safetensors weights, naming what it has, before downloading", async () => {
    const { "model.safetensors": _, ...rest } = singleFile;
    serve({ files: { ...rest, "pytorch_model.bin": new Uint8Array(1024) } });
    const error = await failure(downloadModel(REPO, { cacheDir: await tempDir() }));
    expect(error.code).toBe("hub_no_safetensors");
    expect(error.message).toContain("the model has no safetensors weights");
    expect(error.message).toContain("it has pytorch_model.bin");
    expect(downloaded()).toEqual([]);
  });

  it("refuses a repository without a tokenizer.json", async () => {
    const { "tokenizer.json": _, ...rest } = singleFile;
    serve({ files: rest });
    const error = await failure(downloadModel(REPO, { cacheDir: await tempDir() }));
    expect(error.code).toBe("hub_not_a_model");
    expect(error.message).toContain("the model has no tokenizer.json");
  });

  it("refuses an index that names a shard the repository lacks", async () => {
    const { "model-00002-of-00002.safetensors": _, ...rest } = sharded;
    serve({ files: rest });
    const error = await failure(downloadModel(REPO, { cacheDir: await tempDir() }));
    expect(error.code).toBe("hub_missing_shard");
    expect(error.location?.file).toBe("hf://org/name/model.safetensors.index.json");
  });

  describe("Hub errors", () => {
    it("a missing or private model without a token: hub_not_found, with the hint to use one", async () => {
      serve({ files: singleFile, token: TOKEN });
      const error = await failure(downloadModel(REPO, { cacheDir: await tempDir() }));
      expect(error.code).toBe("hub_not_found");
      expect(error.message).toContain("model not found at https://huggingface.co/org/name");
      expect(error.message).toContain("if it is private, set HF_TOKEN or pass accessToken");
    });

    it("a private model with another token: hub_not_found, and the token is never shown", async () => {
      serve({ files: singleFile, token: "hf_theRightOne" });
      const error = await failure(downloadModel(REPO, { cacheDir: await tempDir(), accessToken: TOKEN }));
      expect(error.code).toBe("hub_not_found");
      expect(error.status).toBe(404);
      expect(error.message).not.toContain(TOKEN);
    });

    it("a private model with its token downloads, the token from HF_TOKEN", async () => {
      serve({ files: singleFile, token: TOKEN });
      vi.stubEnv("HF_TOKEN", TOKEN);
      const cacheDir = await tempDir();
      expect(await downloadModel(REPO, { cacheDir })).toBe(snapshot(cacheDir));
    });

    it("a gated model: hub_gated, pointing at its page, without the token", async () => {
      serve({ files: singleFile, gated: true, token: "hf_theRightOne" });
      const error = await failure(downloadModel(REPO, { cacheDir: await tempDir(), accessToken: TOKEN }));
      expect(error.code).toBe("hub_gated");
      expect(error.status).toBe(403);
      expect(error.message).toContain(
        "the model is gated: accept its conditions at https://huggingface.co/org/name",
      );
      expect(error.message).toContain("the token sent has not been granted access");
      expect(error.message).not.toContain(TOKEN);
      expect(error.location?.file).toMatch(/^hf:\/\/org\/name\/[\w.]+\.json$/);
    });

    it("a gated model without a token: hub_gated, saying none was sent", async () => {
      serve({ files: singleFile, gated: true, token: TOKEN });
      const error = await failure(downloadModel(REPO, { cacheDir: await tempDir() }));
      expect(error.code).toBe("hub_gated");
      expect(error.message).toContain("no token was sent");
    });

    it("a rejected token: hub_unauthorized, even when the Hub echoes it", async () => {
      server.use(
        http.get(`${HUB}/api/models/*`, () =>
          HttpResponse.json(
            { error: `Invalid credentials in Authorization header: Bearer ${TOKEN}` },
            { status: 401 },
          ),
        ),
      );
      const error = await failure(downloadModel(REPO, { cacheDir: await tempDir(), accessToken: TOKEN }));
      expect(error.code).toBe("hub_unauthorized");
      expect(error.message).toContain("the Hub rejected the access token");
      expect(error.message).not.toContain(TOKEN);
      expect(JSON.stringify(error)).not.toContain(TOKEN);
    });

    it("an unknown revision: hub_not_found naming it", async () => {
      serve({ files: singleFile });
      const error = await failure(downloadModel(REPO, { cacheDir: await tempDir(), revision: "nope" }));
      expect(error.code).toBe("hub_not_found");
      expect(error.message).toContain('revision "nope" not found at https://huggingface.co/org/name');
      expect(error.location?.file).toBe("hf://org/name@nope");
    });

    it("a server error: hub_error with the status", async () => {
      server.use(
        http.get(`${HUB}/api/models/*`, () => HttpResponse.json({ error: "boom" }, { status: 500 })),
      );
      const error = await failure(downloadModel(REPO, { cacheDir: await tempDir() }));
      expect(error.code).toBe("hub_error");
      expect(error.status).toBe(500);
    });

    it("an unreachable Hub with nothing cached: hub_unreachable", async () => {
      const cacheDir = await tempDir();
      const error = await failure(downloadModel(REPO, { cacheDir, fetch: unreachable }));
      expect(error.code).toBe("hub_unreachable");
      expect(error.message).toContain(`the model is not in the cache (${cacheDir})`);
    });

    it("a repo id that is not owner/name: invalid_repo", async () => {
      const error = await failure(downloadModel("SmolLM2-135M", { cacheDir: await tempDir() }));
      expect(error.code).toBe("invalid_argument");
      expect(error.message).toContain('like "HuggingFaceTB/SmolLM2-135M-Instruct"');
    });
  });

  describe("progress", () => {
    async function progress(options: ModelHubOptions = {}) {
      const events: DownloadProgressEvent[] = [];
      await downloadModel(REPO, { onProgress: (event) => events.push(event), ...options });
      return events;
    }

    it("reports bytes as they arrive, ending each file at its size", async () => {
      serve({ files: sharded, cdnUrl: CDN });
      const events = await progress({ cacheDir: await tempDir() });
      const files = [...new Set(events.map((event) => event.file))].sort();
      expect(files).toEqual([
        "config.json",
        "generation_config.json",
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
        "model.safetensors.index.json",
        "tokenizer.json",
        "tokenizer_config.json",
      ]);
      for (const file of files) {
        const own = events.filter((event) => event.file === file);
        const last = own.at(-1);
        expect(last?.type).toBe("download-progress");
        expect(last?.loadedBytes).toBe(last?.totalBytes);
        const size = (sharded as Record<string, string | Uint8Array>)[file];
        expect(last?.totalBytes).toBe(typeof size === "string" ? Buffer.byteLength(size) : size?.byteLength);
        // Bytes only grow.
        const loaded = own.map((event) => event.loadedBytes);
        expect(loaded).toEqual([...loaded].sort((a, b) => a - b));
      }
    });

    it("reports a big file in several steps", async () => {
      serve({ files: singleFile });
      const events = await progress({ cacheDir: await tempDir() });
      const weightsEvents = events.filter((event) => event.file === "model.safetensors");
      expect(weightsEvents.length).toBeGreaterThan(1);
      expect(weightsEvents[0]?.loadedBytes).toBeLessThan(weights.byteLength);
      expect(weightsEvents.every((event) => event.totalBytes === weights.byteLength)).toBe(true);
    });

    it("reports each file once, complete, when the cache has them", async () => {
      serve({ files: singleFile });
      const cacheDir = await tempDir();
      await downloadModel(REPO, { cacheDir });
      const events = await progress({ cacheDir });
      expect(events).toHaveLength(5);
      expect(events.every((event) => event.loadedBytes === event.totalBytes)).toBe(true);
    });
  });

  describe("abort", () => {
    it("stops the download and rejects with an AbortError", async () => {
      serve({ files: singleFile });
      const controller = new AbortController();
      const cacheDir = await tempDir();
      const error = await downloadModel(REPO, {
        cacheDir,
        signal: controller.signal,
        onProgress: (event) => {
          if (event.file === "model.safetensors" && event.loadedBytes < weights.byteLength)
            controller.abort();
        },
      }).catch((caught: unknown) => caught);
      expect(error).toBeInstanceOf(Error);
      expect((error as Error).name).toBe("AbortError");
      // No snapshot entry for the cut-short file, so a later call downloads it again.
      await expect(lstat(join(snapshot(cacheDir), "model.safetensors"))).rejects.toThrow();
      seen.length = 0;
      expect(await downloadModel(REPO, { cacheDir })).toBe(snapshot(cacheDir));
      expect(downloaded()).toContain("model.safetensors");
    });

    it("rejects at once when the signal is already aborted, without a request", async () => {
      serve({ files: singleFile });
      const error = await downloadModel(REPO, {
        cacheDir: await tempDir(),
        signal: AbortSignal.abort(),
      }).catch((caught: unknown) => caught);
      expect((error as Error).name).toBe("AbortError");
      expect(seen).toEqual([]);
    });
  });
});

describe.skipIf(!HAS_FIXTURES)("downloadModel with the stories260K model", () => {
  const names = [
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
  ];

  it("downloads the real files byte for byte into a folder the loader reads", async () => {
    const folder = join(FIXTURES, "stories260K-hf");
    const files = Object.fromEntries(
      await Promise.all(
        names.map(async (name) => [name, new Uint8Array(await readFile(join(folder, name)))]),
      ),
    );
    serve({ files, cdnUrl: CDN });
    const cacheDir = await tempDir();
    const snapshotFolder = await downloadModel(REPO, { cacheDir });
    for (const name of names) {
      expect(await digest(join(snapshotFolder, name))).toBe(sha256(files[name] as Uint8Array));
    }
    expect((await readModelTensors(snapshotFolder)).size).toBe((await readModelTensors(folder)).size);
  });

  it("LocalModel.load takes the Hub id: download progress, then load, then the golden text; offline from the cache", async () => {
    const folder = join(FIXTURES, "stories260K-hf");
    const files = Object.fromEntries(
      await Promise.all(
        names.map(async (name) => [name, new Uint8Array(await readFile(join(folder, name)))]),
      ),
    );
    serve({ files, cdnUrl: CDN });
    const cacheDir = await tempDir();
    const events: LoadProgressEvent[] = [];
    const greedy = { maxTokens: 200, temperature: 0, stopTokens: [] };
    const expected = await readFile(join(folder, "expected-greedy-200.txt"), "utf8");
    {
      await using model = await LocalModel.load(REPO, {
        cacheDir,
        onProgress: (event) => events.push(event),
      });
      expect(model.path).toBe(snapshot(cacheDir));
      expect((await model.generate({ inputIds: [1] }, greedy)).text).toBe(expected);
    }
    const types = events.map((event) => event.type);
    expect(types.indexOf("download-progress")).toBe(0);
    expect(types.slice(-2)).toEqual(["load-start", "load-done"]);
    const weights = events.filter(
      (event) => event.type === "download-progress" && event.file === "model.safetensors",
    );
    expect(weights.at(-1)).toMatchObject({ loadedBytes: files["model.safetensors"]?.byteLength });

    vi.stubEnv("HF_HUB_OFFLINE", "1");
    seen.length = 0;
    await using offline = await LocalModel.load(REPO, { cacheDir });
    expect(seen).toHaveLength(0);
    expect(offline.path).toBe(snapshot(cacheDir));
  });
});
