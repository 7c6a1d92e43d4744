/**
 * Hugging Face Hub models: which files of a repository a local model needs (config, tokenizer,
 * safetensors weights, whole or sharded), fetched into the Hugging Face cache that Python shares.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { modelInfo } from "@huggingface/hub";
import { z } from "zod";
import { SourceError, ValidationError } from "../core/errors.js";
import {
  type CacheFallback,
  cachedSnapshot,
  cacheFailure,
  type DownloadProgressEvent,
  downloadFiles,
  type HubAccessOptions,
  type HubRepo,
  type HubSession,
  listCommit,
  listOrFallback,
  type RepoFile,
  recordRevision,
  redact,
  resolveHubRepo,
  snapshotFolder,
  storageFolder,
} from "../core/hub.js";

export type { DownloadProgressEvent } from "../core/hub.js";

/** Where a Hub model is, and how to follow and stop its download. */
export interface ModelHubOptions extends HubAccessOptions {
  /** Called as bytes arrive, and once per file when it is in the cache (`loadedBytes === totalBytes`). */
  onProgress?: (event: DownloadProgressEvent) => void;
  /**
   * Fetch the safetensors weights too. Default true; false fetches only the config and tokenizer
   * files (enough to count tokens), though the repository must still have safetensors weights.
   */
  weights?: boolean;
}

/** Files a model folder cannot do without, besides its weights. */
const REQUIRED_FILES = ["config.json", "tokenizer.json"];
/** Files tunekit reads when the repository has them. */
const OPTIONAL_FILES = [
  "generation_config.json",
  "tokenizer_config.json",
  "special_tokens_map.json",
  "chat_template.jinja",
];
const WEIGHTS = "model.safetensors";
const WEIGHTS_INDEX = "model.safetensors.index.json";
/** Weights tunekit cannot read, named in the error so that the user knows what the repository has. */
const OTHER_WEIGHTS = /(?:^|\/)[^/]+\.(?:bin|pt|pth|ckpt|h5|msgpack|gguf|onnx)$/;

const indexSchema = z.object({ weight_map: z.record(z.string(), z.string()) });

/**
 * Downloads (or finds in the HF cache) what tunekit needs of a model repo; returns the snapshot folder.
 * Online it asks the Hub which commit the revision is and which files it holds, downloads the needed
 * files the cache lacks (`model.safetensors`, or the index and every shard it names) and records the
 * revision in `refs/`, like `huggingface_hub`. When the Hub cannot be reached, or `HF_HUB_OFFLINE=1`,
 * it answers from the cached snapshot of the revision when that holds the needed files.
 */
export async function downloadModel(repo: string, options: ModelHubOptions = {}): Promise<string> {
  if (options.onProgress !== undefined && typeof options.onProgress !== "function") {
    throw new ValidationError("invalid_argument", "onProgress must be a function");
  }
  const hub = resolveHubRepo("model", repo, options, process.env);
  const connection = await listOrFallback(hub, listRevision);
  if ("fallback" in connection) return fromCache(hub, connection.fallback, options.weights ?? true);
  const { session, listing } = connection;
  const { commit, files } = listing;

  const missing = REQUIRED_FILES.filter((path) => !files.has(path));
  if (missing.length > 0) {
    throw new SourceError(
      "hub_not_a_model",
      `the model has no ${missing.join(" or ")}; tunekit needs ${REQUIRED_FILES.join(", ")} and safetensors weights`,
      { location: { file: hub.location } },
    );
  }
  const metadata = [...REQUIRED_FILES, ...OPTIONAL_FILES].filter((path) => files.has(path));
  const download = (paths: string[]) =>
    downloadFiles(
      session,
      commit,
      paths.map((path) => files.get(path) as RepoFile),
      options.onProgress,
    );
  if (options.weights === false) {
    if (!files.has(WEIGHTS) && !files.has(WEIGHTS_INDEX)) throw noSafetensors(hub, [...files.keys()]);
    await download(metadata);
  } else if (files.has(WEIGHTS)) {
    await download([...metadata, WEIGHTS]);
  } else if (files.has(WEIGHTS_INDEX)) {
    const [index] = await download([WEIGHTS_INDEX]);
    const shards = await readShards(index as string, hub);
    const absent = shards.filter((shard) => !files.has(shard));
    if (absent.length > 0) {
      throw new SourceError(
        "hub_missing_shard",
        `${WEIGHTS_INDEX} names shards the model does not have: ${absent.join(", ")}`,
        { location: { file: `${hub.location}/${WEIGHTS_INDEX}` } },
      );
    }
    await download([...metadata, ...shards]);
  } else {
    throw noSafetensors(hub, [...files.keys()]);
  }
  await recordRevision(hub, commit);
  return snapshotFolder(hub, commit);
}

/** Which commit the revision is, and every file of that commit. */
async function listRevision(session: HubSession) {
  const { repo } = session;
  const info = await modelInfo({
    name: repo.name,
    revision: repo.revision,
    additionalFields: ["sha"],
    ...session.common,
  });
  return listCommit(session, info.sha);
}

/** The shard files of an index, as the loader reads them: file names beside the index. */
async function readShards(indexPath: string, hub: HubRepo): Promise<string[]> {
  const location = { file: `${hub.location}/${WEIGHTS_INDEX}` };
  let json: unknown;
  try {
    json = JSON.parse(await readFile(indexPath, "utf8"));
  } catch (error) {
    throw new SourceError("hub_bad_index", `${WEIGHTS_INDEX} is not JSON`, { location, cause: error });
  }
  const parsed = indexSchema.safeParse(json);
  if (!parsed.success) {
    throw new SourceError("hub_bad_index", `${WEIGHTS_INDEX} has no weight_map of tensor → shard file`, {
      location: { ...location, path: "weight_map" },
    });
  }
  const shards = [...new Set(Object.values(parsed.data.weight_map))].sort();
  const bad = shards.find((shard) => shard.includes("/") || !shard.endsWith(".safetensors"));
  if (bad !== undefined) {
    throw new SourceError("hub_bad_index", `not a shard file name: ${JSON.stringify(bad)}`, {
      location: { ...location, path: "weight_map" },
    });
  }
  return shards;
}

function noSafetensors(hub: HubRepo, paths: string[]): SourceError {
  const others = paths.filter((path) => OTHER_WEIGHTS.test(path)).sort();
  const has =
    others.length > 0 ? `it has ${others.slice(0, 3).join(", ")}${others.length > 3 ? ", …" : ""}` : "";
  return new SourceError(
    "hub_no_safetensors",
    redact(
      `the model has no safetensors weights (${WEIGHTS} or ${WEIGHTS_INDEX})${has ? `; ${has}` : ""}; ` +
        "tunekit reads only safetensors: pick a repository that has them, or convert the weights " +
        "(transformers: model.save_pretrained(folder, safe_serialization=True))",
      hub,
    ),
    { location: { file: hub.location } },
  );
}

/**
 * The cached snapshot of the revision when it holds what the loader reads: the required files and,
 * unless only metadata is asked for, the weights (the shards of the index when there is one, since
 * the loader prefers it).
 */
async function fromCache(hub: HubRepo, fallback: CacheFallback, weights: boolean): Promise<string> {
  const snapshot = await cachedSnapshot(hub, fallback);
  const cached = new Set(snapshot.paths);
  const lacking = (paths: string[]) => paths.filter((path) => !cached.has(path));
  let missing = lacking(REQUIRED_FILES);
  if (weights && cached.has(WEIGHTS_INDEX)) {
    missing = [...missing, ...lacking(await readShards(join(snapshot.folder, WEIGHTS_INDEX), hub))];
  } else if (weights && !cached.has(WEIGHTS)) {
    missing = [...missing, WEIGHTS];
  }
  if (missing.length > 0) {
    throw cacheFailure(
      hub,
      fallback,
      `the cached model (${storageFolder(hub)}) lacks ${missing.join(", ")}; download it once online`,
    );
  }
  return snapshot.folder;
}
