import { createHash } from "node:crypto";
import { lstat, readFile, realpath } from "node:fs/promises";
import { join, relative, sep } from "node:path";
import { HttpResponse, http } from "msw";
import { setupServer } from "msw/node";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import { type SourceError, TunekitError } from "../../src/core/errors.js";
import { Dataset } from "../../src/data/dataset.js";
import { type HubOptions, readHubDataset } from "../../src/data/hub.js";
import { HUB_TEST_COMMIT, type HubDatasetOptions, hubDatasetHandlers } from "../../src/testing/index.js";
import { chatRow, jsonl, tempDir } from "../helpers.js";

const HUB = "https://huggingface.co";
const REPO = "org/name";
const TOKEN = "hf_secretTokenThatMustNotLeak";
const trainRows = [chatRow("hi", "hello"), chatRow("ping", "pong")];
const testRows = [chatRow("test question", "test answer")];
const chatFiles = {
  "data/train.jsonl": jsonl(trainRows),
  "data/test.jsonl": jsonl(testRows),
  "README.md": "# A dataset\n",
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

function serve(options: Partial<HubDatasetOptions> & Pick<HubDatasetOptions, "files">) {
  server.use(...hubDatasetHandlers({ repo: REPO, ...options }));
}

function snapshot(cacheDir: string, commit = HUB_TEST_COMMIT) {
  return join(cacheDir, "datasets--org--name", "snapshots", commit);
}

/** The split's files as repository paths, checking they sit in the snapshot of the commit. */
async function pick(
  files: HubDatasetOptions["files"],
  options: HubOptions = {},
  served: Partial<HubDatasetOptions> = {},
) {
  serve({ files, ...served });
  const cacheDir = await tempDir();
  const paths = await readHubDataset(REPO, { cacheDir, ...options });
  return paths.map((path) => {
    expect(path.startsWith(snapshot(cacheDir, served.commit) + sep)).toBe(true);
    return relative(snapshot(cacheDir, served.commit), path).split(sep).join("/");
  });
}

async function failure(promise: Promise<unknown>): Promise<SourceError> {
  const error = await promise.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(TunekitError.isInstance(error)).toBe(true);
  return error as SourceError;
}

const downloads = () => seen.filter((request) => new URL(request.url).pathname.includes("/resolve/"));

describe("readHubDataset", () => {
  it("downloads the train split into the Hugging Face cache layout that Python shares", async () => {
    serve({ files: chatFiles });
    const cacheDir = await tempDir();
    const paths = await readHubDataset(REPO, { cacheDir });

    const file = join(snapshot(cacheDir), "data", "train.jsonl");
    expect(paths).toEqual([file]);
    expect(await readFile(file, "utf8")).toBe(chatFiles["data/train.jsonl"]);
    // The snapshot entry links to a blob named by its git id, and refs/main names the commit.
    expect((await lstat(file)).isSymbolicLink()).toBe(true);
    const content = Buffer.from(chatFiles["data/train.jsonl"]);
    const oid = createHash("sha1").update(`blob ${content.byteLength}\0`).update(content).digest("hex");
    expect(await realpath(file)).toBe(await realpath(join(cacheDir, "datasets--org--name", "blobs", oid)));
    expect(await readFile(join(cacheDir, "datasets--org--name", "refs", "main"), "utf8")).toBe(
      HUB_TEST_COMMIT,
    );
  });

  it("downloads only the requested split", async () => {
    expect(await pick(chatFiles, { split: "test" })).toEqual(["data/test.jsonl"]);
    expect(downloads().map((request) => new URL(request.url).pathname)).not.toContainEqual(
      expect.stringContaining("train.jsonl"),
    );
  });

  it("keeps a branch's files in the snapshot of the commit it points at", async () => {
    const commit = "a".repeat(40);
    const paths = await pick({ "train.jsonl": "{}\n" }, { revision: "v1.0" }, { revision: "v1.0", commit });
    expect(paths).toEqual(["train.jsonl"]);
    const other = await pick({ "train.jsonl": "{}\n" }, { revision: commit }, { revision: "v1.0", commit });
    expect(other).toEqual(["train.jsonl"]);
  });

  it("files with the same content share one blob, downloaded once", async () => {
    const same = jsonl(trainRows);
    serve({ files: { "train/a.jsonl": same, "train/b.jsonl": same, "train/c.jsonl": same } });
    const cacheDir = await tempDir();
    const paths = await readHubDataset(REPO, { cacheDir });
    expect(paths).toHaveLength(3);
    const blobs = new Set(await Promise.all(paths.map((path) => realpath(path))));
    expect(blobs.size).toBe(1);
    for (const path of paths) expect(await readFile(path, "utf8")).toBe(same);
  });

  it("reads a revision with slashes, like the Hub's Parquet export branch", async () => {
    const commit = "b".repeat(40);
    const files = { "default/train/0000.parquet": new Uint8Array([1, 2, 3]) };
    const revision = "refs/convert/parquet";
    expect(await pick(files, { revision }, { revision, commit })).toEqual(["default/train/0000.parquet"]);
    const cacheDir = await tempDir();
    await readHubDataset(REPO, { cacheDir, revision });
    const ref = join(cacheDir, "datasets--org--name", "refs", "refs", "convert", "parquet");
    expect(await readFile(ref, "utf8")).toBe(commit);
  });

  it("sends every request through the fetch it is given", async () => {
    serve({ files: chatFiles });
    const sent: string[] = [];
    const spy: typeof fetch = (input, init) => {
      sent.push(String(input instanceof Request ? input.url : input));
      return fetch(input, init);
    };
    await readHubDataset(REPO, { cacheDir: await tempDir(), fetch: spy });
    expect(sent.length).toBe(seen.length);
    expect(sent.some((url) => url.includes("/resolve/"))).toBe(true);
  });

  describe("split selection, as Python's datasets does it", () => {
    const bytes = new Uint8Array([80, 65, 82, 49]); // not parsed: only the chosen paths matter here
    const row = "{}\n";
    it.each([
      ["a split keyword in the file name", { "train.jsonl": row, "test.jsonl": row }, {}, ["train.jsonl"]],
      ["the test split", { "train.jsonl": row, "test.jsonl": row }, { split: "test" }, ["test.jsonl"]],
      ["a keyword after a separator", { "my_train.csv": row, "my_test.csv": row }, {}, ["my_train.csv"]],
      [
        "a keyword as a folder",
        { "train/a.jsonl": row, "train/b.jsonl": row, "test/a.jsonl": row },
        {},
        ["train/a.jsonl", "train/b.jsonl"],
      ],
      ["a keyword followed by a digit", { "train1.csv": row, "test1.csv": row }, {}, ["train1.csv"]],
      ["dev as validation", { "train.jsonl": row, "dev.jsonl": row }, { split: "validation" }, ["dev.jsonl"]],
      [
        "a keyword inside a word is no keyword",
        { "trainer.jsonl": row, "constraint.jsonl": row },
        {},
        ["constraint.jsonl", "trainer.jsonl"],
      ],
      [
        "no keyword: every data file is train",
        { "b/c.jsonl": row, "a.csv": row, "README.md": row, ".github/x.json": row },
        {},
        ["a.csv", "b/c.jsonl"],
      ],
      [
        "push_to_hub shards, sorted",
        {
          "data/train-00001-of-00002.parquet": bytes,
          "data/train-00000-of-00002.parquet": bytes,
          "data/validation-00000-of-00001.parquet": bytes,
        },
        {},
        ["data/train-00000-of-00002.parquet", "data/train-00001-of-00002.parquet"],
      ],
      [
        "a split named by its shards",
        {
          "data/train-00000-of-00001.parquet": bytes,
          "data/validation_matched-00000-of-00001.parquet": bytes,
        },
        { split: "validation_matched" },
        ["data/validation_matched-00000-of-00001.parquet"],
      ],
      [
        "a config folder",
        { "en/train.jsonl": row, "en/test.jsonl": row, "fr/train.jsonl": row },
        { config: "fr" },
        ["fr/train.jsonl"],
      ],
      [
        "push_to_hub shards of a config",
        { "en/train-00000-of-00001.parquet": bytes, "fr/train-00000-of-00001.parquet": bytes },
        { config: "en" },
        ["en/train-00000-of-00001.parquet"],
      ],
      [
        "the Parquet export of a config",
        {
          "en/train/0000.parquet": bytes,
          "en/train/0001.parquet": bytes,
          "en/test/0000.parquet": bytes,
          "fr/train/0000.parquet": bytes,
        },
        { config: "en" },
        ["en/train/0000.parquet", "en/train/0001.parquet"],
      ],
      [
        "the Parquet export without a config reads the default one",
        { "default/train/0000.parquet": bytes, "other/train/0000.parquet": bytes },
        {},
        ["default/train/0000.parquet"],
      ],
      [
        "a partial Parquet export",
        { "en/partial-train/0000.parquet": bytes },
        { config: "en" },
        ["en/partial-train/0000.parquet"],
      ],
      [
        "gzipped and other supported files, not the rest",
        {
          "train.jsonl.gz": bytes,
          "train.ndjson": row,
          "train.json": row,
          "train.csv.gz": bytes,
          "train.txt": row,
          "train.arrow": bytes,
        },
        {},
        ["train.csv.gz", "train.json", "train.jsonl.gz", "train.ndjson"],
      ],
    ])("%s", async (_name, files, options, expected) => {
      expect(await pick(files, options)).toEqual(expected);
    });

    it("follows the configs of the dataset card", async () => {
      const files = {
        "holdout/a1.csv": row,
        "holdout/a2.csv": row,
        "main.csv": row,
        "other/train.jsonl": row,
      };
      const cardData = {
        configs: [
          {
            config_name: "default",
            default: true,
            data_files: [
              { split: "train", path: "main.csv" },
              { split: "test", path: "holdout/a*.csv" },
            ],
          },
          { config_name: "extra", data_dir: "other" },
        ],
      };
      expect(await pick(files, { split: "test" }, { cardData })).toEqual([
        "holdout/a1.csv",
        "holdout/a2.csv",
      ]);
      expect(await pick(files, {}, { cardData })).toEqual(["main.csv"]);
      expect(await pick(files, { config: "extra" }, { cardData })).toEqual(["other/train.jsonl"]);
    });

    it("a missing split names the splits there are", async () => {
      const error = await failure(pick(chatFiles, { split: "validation" }));
      expect(error).toMatchObject({
        code: "hub_split_not_found",
        location: { file: "hf://datasets/org/name" },
      });
      expect(error.message).toContain('split "validation" not found; the splits are: train, test');
    });

    it("a missing config names the configs there are", async () => {
      const error = await failure(pick({ "en/train.jsonl": row, "fr/train.jsonl": row }, { config: "de" }));
      expect(error.code).toBe("hub_config_not_found");
      expect(error.message).toContain("the configs are: en, fr");
    });

    it("a dataset with no readable data file says which files it reads", async () => {
      const error = await failure(pick({ "train.arrow": new Uint8Array([1]), "README.md": row }));
      expect(error.code).toBe("hub_no_data_files");
      expect(error.message).toContain(".jsonl");
    });

    it("lists every page of a long listing", async () => {
      const files = Object.fromEntries(Array.from({ length: 7 }, (_, index) => [`part${index}.jsonl`, row]));
      expect(await pick(files, {}, { treePageSize: 2 })).toHaveLength(7);
      const listings = seen.filter((request) => request.url.includes("/tree/"));
      expect(listings.length).toBeGreaterThan(2);
    });
  });

  it("serves a second call from the cache, downloading nothing", async () => {
    serve({ files: chatFiles });
    const cacheDir = await tempDir();
    const first = await readHubDataset(REPO, { cacheDir });
    expect(downloads().length).toBeGreaterThan(0);
    seen.length = 0;
    expect(await readHubDataset(REPO, { cacheDir })).toEqual(first);
    // Only the revision and its listing are asked again, as Python does online.
    expect(downloads()).toEqual([]);
    expect(seen.map((request) => new URL(request.url).pathname)).toEqual([
      "/api/datasets/org/name/revision/main",
      `/api/datasets/org/name/tree/${HUB_TEST_COMMIT}`,
    ]);
  });

  describe("access", () => {
    const authorizations = () => new Set(seen.map((request) => request.headers.get("authorization")));

    it("sends HF_TOKEN, then HUGGING_FACE_HUB_TOKEN, to a private dataset", async () => {
      vi.stubEnv("HF_TOKEN", TOKEN);
      expect(await pick(chatFiles, {}, { token: TOKEN })).toEqual(["data/train.jsonl"]);
      expect(authorizations()).toEqual(new Set([`Bearer ${TOKEN}`]));

      vi.stubEnv("HF_TOKEN", "");
      vi.stubEnv("HUGGING_FACE_HUB_TOKEN", TOKEN);
      expect(await pick(chatFiles, {}, { token: TOKEN })).toEqual(["data/train.jsonl"]);
    });

    it("accessToken wins over HF_TOKEN", async () => {
      vi.stubEnv("HF_TOKEN", "hf_someoneElse");
      expect(await pick(chatFiles, { accessToken: TOKEN }, { token: TOKEN })).toEqual(["data/train.jsonl"]);
      expect(authorizations()).toEqual(new Set([`Bearer ${TOKEN}`]));
    });

    it("a gated dataset without a token is hub_gated, and says how to get access", async () => {
      const error = await failure(pick(chatFiles, {}, { gated: true, token: TOKEN }));
      expect(error).toMatchObject({ code: "hub_gated", status: 401 });
      expect(error.message).toContain(`accept its conditions at ${HUB}/datasets/org/name`);
      expect(error.message).toContain("HF_TOKEN");
    });

    it("a gated dataset with a token that has no access is hub_gated", async () => {
      const error = await failure(
        pick(chatFiles, { accessToken: "hf_noAccessYet" }, { gated: true, token: TOKEN }),
      );
      expect(error).toMatchObject({ code: "hub_gated", status: 403 });
      expect(error.message).toContain("has not been granted access");
    });

    it("a gated dataset reads with a token that has access", async () => {
      expect(await pick(chatFiles, { accessToken: TOKEN }, { gated: true, token: TOKEN })).toEqual([
        "data/train.jsonl",
      ]);
    });

    it("a missing dataset is hub_not_found, with a hint about private ones when no token was sent", async () => {
      serve({ files: chatFiles });
      const cacheDir = await tempDir();
      const anonymous = await failure(readHubDataset("org/missing", { cacheDir }));
      expect(anonymous).toMatchObject({
        code: "hub_not_found",
        status: 401,
        location: { file: "hf://datasets/org/missing" },
      });
      expect(anonymous.message).toContain("if it is private, set HF_TOKEN");
      const withToken = await failure(readHubDataset("org/missing", { cacheDir, accessToken: TOKEN }));
      expect(withToken).toMatchObject({ code: "hub_not_found", status: 404 });
    });

    it("a missing revision is hub_not_found and names it", async () => {
      const error = await failure(pick(chatFiles, { revision: "v9" }));
      expect(error).toMatchObject({ code: "hub_not_found", location: { file: "hf://datasets/org/name@v9" } });
      expect(error.message).toContain('revision "v9" not found');
    });

    it("a token the Hub rejects is hub_unauthorized", async () => {
      server.use(
        http.get(`${HUB}/api/datasets/*`, () =>
          HttpResponse.json({ error: "Invalid credentials in Authorization header" }, { status: 401 }),
        ),
      );
      const error = await failure(readHubDataset(REPO, { cacheDir: await tempDir(), accessToken: TOKEN }));
      expect(error).toMatchObject({ code: "hub_unauthorized", status: 401 });
      expect(error.message).toContain("rejected the access token");
    });

    it("another server error is hub_error with its status", async () => {
      server.use(
        http.get(`${HUB}/api/datasets/*`, () => HttpResponse.json({ error: "overloaded" }, { status: 503 })),
      );
      const error = await failure(readHubDataset(REPO, { cacheDir: await tempDir() }));
      expect(error).toMatchObject({ code: "hub_error", status: 503 });
      expect(error.message).toContain("overloaded");
    });

    it("the token never appears in an error message", async () => {
      const cacheDir = await tempDir();
      const errors: SourceError[] = [];
      serve({ files: chatFiles, gated: true, token: "hf_theOneWithAccess" });
      errors.push(await failure(readHubDataset(REPO, { cacheDir, accessToken: TOKEN })));
      errors.push(await failure(readHubDataset("org/missing", { cacheDir, accessToken: TOKEN })));
      errors.push(await failure(readHubDataset(REPO, { cacheDir, accessToken: TOKEN, split: "nope" })));
      server.use(
        http.get(`${HUB}/api/datasets/*`, ({ request }) =>
          // A server that echoes the credentials back in its error.
          HttpResponse.json({ error: `bad ${request.headers.get("authorization")}` }, { status: 500 }),
        ),
      );
      errors.push(await failure(readHubDataset(REPO, { cacheDir, accessToken: TOKEN })));
      server.use(http.all(`${HUB}/*`, () => HttpResponse.error()));
      errors.push(await failure(readHubDataset(REPO, { cacheDir, accessToken: TOKEN })));
      vi.stubEnv("HF_TOKEN", "not-a-token-secret");
      errors.push(await failure(readHubDataset(REPO, { cacheDir })));

      expect(errors.map((error) => error.code)).toEqual([
        "hub_gated",
        "hub_not_found",
        "hub_split_not_found",
        "hub_error",
        "hub_unreachable",
        "invalid_argument",
      ]);
      for (const error of errors) {
        expect(`${error.message} ${String(error)}`).not.toContain(TOKEN);
        expect(error.message).not.toContain("not-a-token-secret");
      }
    });
  });

  describe("offline", () => {
    it("falls back to the cached snapshot when the Hub cannot be reached", async () => {
      serve({ files: chatFiles });
      const cacheDir = await tempDir();
      const online = await readHubDataset(REPO, { cacheDir });
      server.use(http.all(`${HUB}/*`, () => HttpResponse.error()));
      expect(await readHubDataset(REPO, { cacheDir })).toEqual(online);
    });

    it("with a cold cache, an unreachable Hub is hub_unreachable", async () => {
      server.use(http.all(`${HUB}/*`, () => HttpResponse.error()));
      const error = await failure(readHubDataset(REPO, { cacheDir: await tempDir() }));
      expect(error.code).toBe("hub_unreachable");
      expect(error.message).toContain("not in the cache");
    });

    it("a download cut off by the network is hub_unreachable, not a partial split", async () => {
      serve({ files: chatFiles });
      server.use(http.all(`${HUB}/datasets/*`, () => HttpResponse.error()));
      const error = await failure(readHubDataset(REPO, { cacheDir: await tempDir() }));
      expect(error).toMatchObject({
        code: "hub_unreachable",
        location: { file: "hf://datasets/org/name/data/train.jsonl" },
      });
    });

    it("HF_HUB_OFFLINE=1 reads the cache without asking the Hub", async () => {
      serve({ files: chatFiles });
      const cacheDir = await tempDir();
      const online = await readHubDataset(REPO, { cacheDir });
      seen.length = 0;
      vi.stubEnv("HF_HUB_OFFLINE", "1");
      expect(await readHubDataset(REPO, { cacheDir })).toEqual(online);
      expect(await readHubDataset(REPO, { cacheDir, revision: HUB_TEST_COMMIT })).toEqual(online);
      expect(seen).toEqual([]);

      const notCached = await failure(readHubDataset(REPO, { cacheDir, split: "test" }));
      expect(notCached.code).toBe("hub_not_cached");
      expect(notCached.message).toContain("HF_HUB_OFFLINE");
      const cold = await failure(readHubDataset(REPO, { cacheDir: await tempDir() }));
      expect(cold.code).toBe("hub_not_cached");
    });
  });

  describe("options", () => {
    it.each([
      ["nope", {}, "invalid_argument"],
      ["a/b/c", {}, "invalid_argument"],
      ["datasets/org/name", {}, "invalid_argument"],
      [REPO, { split: "train[:10%]" }, "invalid_argument"],
      [REPO, { split: "" }, "invalid_argument"],
      [REPO, { config: "../x" }, "invalid_argument"],
      [REPO, { revision: "a b" }, "invalid_argument"],
      [REPO, { hubUrl: "ftp://example.com" }, "invalid_argument"],
      [REPO, { accessToken: "secret" }, "invalid_argument"],
    ] as const)("%s %o is %s", async (repo, options, code) => {
      const error = await failure(readHubDataset(repo, { cacheDir: await tempDir(), ...options }));
      expect(error.code).toBe(code);
      expect(seen).toEqual([]);
    });

    it("hubUrl and HF_ENDPOINT pick the hub", async () => {
      serve({ files: chatFiles, hubUrl: "http://hub.test" });
      expect(
        await readHubDataset(REPO, { cacheDir: await tempDir(), hubUrl: "http://hub.test/" }),
      ).toHaveLength(1);
      vi.stubEnv("HF_ENDPOINT", "http://hub.test");
      expect(await readHubDataset(REPO, { cacheDir: await tempDir() })).toHaveLength(1);
    });
  });

  it("Dataset.fromHub reads the examples of the split", async () => {
    serve({ files: chatFiles });
    const dataset = await Dataset.fromHub(REPO, { cacheDir: await tempDir() });
    expect(dataset.source).toBe("hf://datasets/org/name");
    expect(await dataset.toArray()).toEqual([
      {
        kind: "chat",
        messages: [
          { role: "user", content: "hi" },
          { role: "assistant", content: "hello" },
        ],
      },
      {
        kind: "chat",
        messages: [
          { role: "user", content: "ping" },
          { role: "assistant", content: "pong" },
        ],
      },
    ]);
  });
});

describe("hubDatasetHandlers", () => {
  const url = `${HUB}/datasets/${REPO}/resolve/main/data.bin`;
  const bytes = new Uint8Array(Array.from({ length: 10 }, (_, index) => index));

  it("answers ranges with 206, a range past the end with 416, and HEAD with the headers alone", async () => {
    serve({ files: { "data.bin": bytes } });
    const partial = await fetch(url, { headers: { Range: "bytes=2-4" } });
    expect(partial.status).toBe(206);
    expect(partial.headers.get("content-range")).toBe("bytes 2-4/10");
    expect([...new Uint8Array(await partial.arrayBuffer())]).toEqual([2, 3, 4]);
    expect((await fetch(url, { headers: { Range: "bytes=20-" } })).status).toBe(416);
    const head = await fetch(url, { method: "HEAD" });
    expect(head.headers.get("content-length")).toBe("10");
    expect(head.headers.get("x-repo-commit")).toBe(HUB_TEST_COMMIT);
    expect(head.headers.get("etag")).toBe(head.headers.get("x-linked-etag"));
  });

  it("answers a missing file with EntryNotFound and refuses a bad commit", async () => {
    serve({ files: { "data.bin": bytes } });
    const missing = await fetch(`${HUB}/datasets/${REPO}/resolve/main/nope.bin`);
    expect(missing.status).toBe(404);
    expect(missing.headers.get("x-error-code")).toBe("EntryNotFound");
    expect(() => hubDatasetHandlers({ repo: REPO, files: {}, commit: "abc" })).toThrow(/40 lowercase hex/);
  });
});
