import { createHash } from "node:crypto";
import {
  DataFormatError,
  formatLocation,
  SourceError,
  type SourceLocation,
  TunekitError,
} from "../core/errors.js";
import { writeFileAtomically } from "../core/files.js";
import { type Distribution, distribution, NumberList, seededRandom } from "../core/stats.js";
import { type ChatMessage, contentText, type Example, type ExampleKind } from "./example.js";
import { type FormatName, formatExample, getFormat } from "./formats/index.js";
import type { HubOptions } from "./hub.js";
import { type ReadOptions, readFile, readResponse, type SourceRecord } from "./readers/index.js";
import { type DatasetRecord, hasError, naturalFormat, toDatasetRecords } from "./records.js";

export type { DatasetRecord } from "./records.js";

export interface DatasetOptions extends ReadOptions {
  /** The record format; detected per record when not given (and a file that mixes formats is an error). */
  format?: FormatName;
}

export interface UrlOptions extends DatasetOptions {
  /** Custom fetch (tests, proxies). Default: global fetch. */
  fetch?: typeof fetch;
  headers?: Record<string, string>;
  signal?: AbortSignal;
}

/** Counts and shapes of a dataset, without tokens (the Validator adds token counts). */
export interface DatasetStats {
  /** Records that became examples. */
  examples: number;
  /** Records (lines, rows) with an error: they are not examples. A whole-file problem is not counted. */
  invalid: number;
  kinds: Partial<Record<ExampleKind, number>>;
  formats: Partial<Record<FormatName, number>>;
  /** Messages per chat or preference example (the input plus the preferred reply). */
  messages: Distribution;
  /** Characters per example, all text fields together. */
  characters: Distribution;
}

type Open = () => AsyncIterable<DatasetRecord>;

export interface WriteOptions {
  /** The format to write; default each example's natural one (chat, preference, completion, text). */
  format?: FormatName;
  /** Skip (and count) the examples `format` cannot hold, instead of stopping at the first. */
  skipUnfit?: boolean;
}

export interface WriteResult {
  path: string;
  /** Examples written. */
  examples: number;
  /** Examples left out by `skipUnfit`, with the first few located. */
  skipped: { count: number; first: Array<SourceLocation & { message: string }> };
}

/**
 * A collection of training examples, read lazily from a file, URL, Hugging Face dataset or array.
 * Iterating yields canonical examples and throws a located `DataFormatError` at the first bad
 * record; `records()` yields every record with its problems, for validation. A dataset can be
 * iterated many times (a file is read again each time) and its operations return new datasets.
 */
export class Dataset implements AsyncIterable<Example> {
  readonly #open: Open;
  /** Where the records come from: a path, URL, hub id or `array`. */
  readonly source: string;

  private constructor(open: Open, source: string) {
    this.#open = open;
    this.source = source;
  }

  /** Reads a local `.jsonl`, `.json` (array or JSON lines), `.csv` or `.parquet` file, gzipped or not. */
  static async fromFile(path: string, options: DatasetOptions = {}): Promise<Dataset> {
    const { inspectFile } = await import("./readers/index.js");
    await inspectFile(path, options); // fail now, not on first iteration, when the file is missing
    return new Dataset(() => toDatasetRecords(readFile(path, options), options.format), path);
  }

  /** Reads records from a URL (fetched again on each iteration; Parquet bodies are held in memory). */
  static async fromURL(url: string | URL, options: UrlOptions = {}): Promise<Dataset> {
    const href = String(url);
    const doFetch = options.fetch ?? fetch;
    const request = async function* (): AsyncGenerator<SourceRecord> {
      let response: Response;
      try {
        const init: RequestInit = {};
        if (options.headers) init.headers = options.headers;
        if (options.signal) init.signal = options.signal;
        response = await doFetch(href, init);
      } catch (error) {
        throw new SourceError("fetch_failed", `cannot fetch: ${(error as Error).message}`, {
          location: { file: href },
          cause: error,
        });
      }
      if (!response.ok) {
        throw new SourceError("http_error", `the server answered ${response.status} ${response.statusText}`, {
          location: { file: href },
          status: response.status,
        });
      }
      yield* readResponse(response, new URL(href).pathname, options);
    };
    return new Dataset(() => toDatasetRecords(request(), options.format), href);
  }

  /**
   * Records already in memory: rows in any supported format (detected like a file's), or canonical
   * examples (`{ kind: "chat", messages }`). A record's `line` is its 1-based index.
   */
  static fromArray(rows: ReadonlyArray<unknown>, options: Pick<DatasetOptions, "format"> = {}): Dataset {
    const records = async function* (): AsyncGenerator<SourceRecord> {
      for (const [index, value] of rows.entries())
        yield { location: { file: "array", line: index + 1 }, value };
    };
    return new Dataset(() => toDatasetRecords(records(), options.format), "array");
  }

  /**
   * A split of a Hugging Face dataset: its data files are downloaded into the standard Hugging Face
   * cache (shared with Python's `datasets` and `huggingface_hub`) and read from there.
   */
  static async fromHub(repo: string, options: HubOptions & DatasetOptions = {}): Promise<Dataset> {
    const { readHubDataset } = await import("./hub.js");
    const files = await readHubDataset(repo, options);
    const open = async function* (): AsyncGenerator<SourceRecord> {
      for (const file of files) yield* readFile(file, options);
    };
    return new Dataset(() => toDatasetRecords(open(), options.format), `hf://datasets/${repo}`);
  }

  /** Every record with its problems, including those that are not valid examples. */
  records(): AsyncIterable<DatasetRecord> {
    const open = this.#open;
    const source = this.source;
    return {
      async *[Symbol.asyncIterator]() {
        try {
          yield* open();
        } catch (error) {
          if (TunekitError.isInstance(error)) throw error;
          throw new SourceError("read_failed", `cannot read: ${(error as Error).message}`, {
            location: { file: source },
            cause: error,
          });
        }
      },
    };
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Example> {
    for await (const record of this.records()) {
      const error = record.problems.find((entry) => entry.severity === "error");
      if (error) {
        throw new DataFormatError(
          error.code,
          error.path ? `${error.path}: ${error.message}` : error.message,
          {
            location: record.location,
          },
        );
      }
      if (record.example) yield record.example;
    }
  }

  #derive(transform: (records: AsyncIterable<DatasetRecord>) => AsyncIterable<DatasetRecord>): Dataset {
    return new Dataset(() => transform(this.records()), this.source);
  }

  /** Transforms every example. Records with errors pass through untouched, so validation still sees them. */
  map(fn: (example: Example, index: number) => Example | Promise<Example>): Dataset {
    return this.#derive(async function* (records) {
      let index = 0;
      for await (const record of records) {
        if (!record.example) yield record;
        else
          yield {
            location: record.location,
            example: await fn(record.example, index++),
            problems: record.problems,
          };
      }
    });
  }

  /** Keeps the examples for which `fn` is true (and every record with an error). */
  filter(fn: (example: Example, index: number) => boolean | Promise<boolean>): Dataset {
    return this.#derive(async function* (records) {
      let index = 0;
      for await (const record of records)
        if (!record.example || (await fn(record.example, index++))) yield record;
    });
  }

  /** The first `count` records (valid or not), stopping the read there. */
  take(count: number): Dataset {
    if (!Number.isInteger(count) || count < 0)
      throw new TypeError(`take: count must be a whole number ≥ 0, got ${count}`);
    return this.#derive(async function* (records) {
      if (count === 0) return;
      let taken = 0;
      for await (const record of records) {
        yield record;
        if (record.example || hasError(record)) taken++;
        if (taken >= count) return;
      }
    });
  }

  /** This dataset's records followed by the others'. */
  concat(...others: Dataset[]): Dataset {
    const all = [this, ...others];
    return new Dataset(
      async function* () {
        for (const dataset of all) yield* dataset.records();
      },
      all.map((dataset) => dataset.source).join(" + "),
    );
  }

  /**
   * The records in a random order (Fisher-Yates with a seeded generator: the same seed, the same order).
   * Holds every record in memory while iterating: about the size of the data as JavaScript objects.
   */
  shuffle(seed = 0): Dataset {
    return this.#derive(async function* (records) {
      const all: DatasetRecord[] = [];
      for await (const record of records) all.push(record);
      const random = seededRandom(seed);
      for (let index = all.length - 1; index > 0; index--) {
        const other = Math.floor(random() * (index + 1));
        [all[index], all[other]] = [all[other] as DatasetRecord, all[index] as DatasetRecord];
      }
      yield* all;
    });
  }

  /**
   * Splits off a random `validation` share (a fraction below 1, or a count), keeping the order of each
   * part. It reads the source once to count records, then streams: its memory is one byte a record.
   */
  split(options: { validation: number; seed?: number }): { train: Dataset; validation: Dataset } {
    const { validation, seed = 0 } = options;
    if (!(validation > 0)) throw new TypeError(`split: validation must be > 0, got ${validation}`);
    let membership: Promise<Uint8Array> | undefined;
    const records = () => this.records();
    const choose = async () => {
      let count = 0;
      for await (const _ of records()) count++;
      const size = validation < 1 ? Math.round(count * validation) : Math.min(count, Math.floor(validation));
      const order = Uint32Array.from({ length: count }, (_, index) => index);
      const random = seededRandom(seed);
      const chosen = new Uint8Array(count);
      for (let index = 0; index < size; index++) {
        const other = index + Math.floor(random() * (count - index));
        [order[index], order[other]] = [order[other] as number, order[index] as number];
        chosen[order[index] as number] = 1;
      }
      return chosen;
    };
    const part = (wanted: number) =>
      this.#derive(async function* (source) {
        membership ??= choose();
        const chosen = await membership;
        let index = 0;
        for await (const record of source) if ((chosen[index++] ?? 0) === wanted) yield record;
      });
    return { train: part(0), validation: part(1) };
  }

  /**
   * Drops examples equal to an earlier one (same canonical content). Keeps a 16-byte hash of each
   * distinct example in memory (about 100 bytes each with the set's overhead).
   */
  dedupe(): Dataset {
    return this.#derive(async function* (records) {
      const seen = new Set<string>();
      for await (const record of records) {
        if (record.example) {
          const key = createHash("sha256")
            .update(JSON.stringify(record.example))
            .digest("base64")
            .slice(0, 22);
          if (seen.has(key)) continue;
          seen.add(key);
        }
        yield record;
      }
    });
  }

  /** Every example in memory. Throws at the first bad record, like iteration. */
  async toArray(): Promise<Example[]> {
    const examples: Example[] = [];
    for await (const example of this) examples.push(example);
    return examples;
  }

  /** Counts kinds, formats, messages and characters in one streaming pass. */
  async stats(): Promise<DatasetStats> {
    const kinds: DatasetStats["kinds"] = {};
    const formats: DatasetStats["formats"] = {};
    const messages = new NumberList();
    const characters = new NumberList();
    let invalid = 0;
    for await (const record of this.records()) {
      if (hasError(record) && record.location.line !== undefined) invalid++;
      const example = record.example;
      if (!example || hasError(record)) continue;
      kinds[example.kind] = (kinds[example.kind] ?? 0) + 1;
      if (record.format) formats[record.format] = (formats[record.format] ?? 0) + 1;
      if (example.kind === "chat") messages.push(example.messages.length);
      if (example.kind === "preference") messages.push(example.input.length + example.preferred.length);
      characters.push(exampleCharacters(example));
    }
    return {
      examples: characters.length,
      invalid,
      kinds,
      formats,
      messages: distribution(messages.values()),
      characters: distribution(characters.values()),
    };
  }

  /**
   * Writes the examples as JSON Lines in `format` (default: chat for chat examples, preference,
   * completion or text for the others). Writes a temporary file beside `path` and renames it when
   * complete, so a failure (a bad record, a full disk) leaves any earlier file at `path` as it was.
   * A record with an error stops the write with a located `DataFormatError`; so does an example that
   * `format` cannot hold (a multi-turn chat as a completion), unless `skipUnfit` skips it and counts it.
   */
  toJSONL(path: string, options: WriteOptions = {}): Promise<WriteResult> {
    return this.#write(path, options, "jsonl");
  }

  /** Writes the examples as one JSON array (one example a line), as `toJSONL` does otherwise. */
  toJSON(path: string, options: WriteOptions = {}): Promise<WriteResult> {
    return this.#write(path, options, "json");
  }

  async #write(path: string, options: WriteOptions, layout: "jsonl" | "json"): Promise<WriteResult> {
    const array = layout === "json";
    if (options.format) getFormat(options.format);
    let examples = 0;
    const skipped: WriteResult["skipped"] = { count: 0, first: [] };
    await writeFileAtomically(path, async (handle) => {
      let batch = array ? "[" : "";
      for await (const record of this.records()) {
        const error = record.problems.find((entry) => entry.severity === "error");
        if (error)
          throw new DataFormatError(
            error.code,
            error.path ? `${error.path}: ${error.message}` : error.message,
            {
              location: record.location,
            },
          );
        const example = record.example;
        if (!example) continue;
        const format = options.format ?? naturalFormat(example);
        let row: unknown;
        try {
          row = formatExample(example, format);
        } catch (cause) {
          const message = `cannot be written as ${format}: ${(cause as Error).message}`;
          if (!options.skipUnfit)
            throw new DataFormatError("unsupported_format", `${message} (skipUnfit skips such examples)`, {
              location: record.location,
              cause,
            });
          skipped.count++;
          if (skipped.first.length < 5) skipped.first.push({ ...record.location, message });
          continue;
        }
        batch += array ? `${examples > 0 ? "," : ""}\n${JSON.stringify(row)}` : `${JSON.stringify(row)}\n`;
        examples++;
        if (batch.length >= 1 << 20) {
          await handle.write(batch);
          batch = "";
        }
      }
      if (array) batch += examples > 0 ? "\n]\n" : "]\n";
      await handle.write(batch);
    });
    return { path, examples, skipped };
  }

  toString(): string {
    return `Dataset(${formatLocation({ file: this.source })})`;
  }
}

function exampleCharacters(example: Example): number {
  const messagesLength = (messages: ChatMessage[]) =>
    messages.reduce((sum, message) => sum + contentText(message.content).length, 0);
  switch (example.kind) {
    case "text":
      return example.text.length;
    case "completion":
      return example.prompt.length + example.completion.length;
    case "chat":
      return messagesLength(example.messages);
    case "preference":
      return messagesLength([...example.input, ...example.preferred, ...example.rejected]);
  }
}
