/**
 * The one generation loop of a local model: continuous batching over the engine's `Batch`. Every
 * sequence any caller starts (generate, stream, generateBatch, the chat targets, `tunekit serve`)
 * joins the running batch at its next step and leaves it when it ends, so concurrent requests are
 * decoded together whatever adapters they use, and each still gets what it would get alone.
 */
import {
  fromNative,
  type NativeAdapter,
  type NativeBatch,
  type NativeGenerateOptions,
  type NativeModel,
  type NativeStepEvent,
} from "./binding.js";

export type LoopFinish = "stop" | "length" | "abort";

export interface DecodeStats {
  running: number;
  waiting: number;
  steps: number;
  rows: number;
}

export interface LoopSequence {
  inputIds: Int32Array;
  options: NativeGenerateOptions;
  adapter: NativeAdapter;
  signal?: AbortSignal;
  /**
   * Sees each of this sequence's step events in order; returning "stop" ends it before its next
   * token (a stop string). Throwing ends it too, and `run` rejects with what was thrown.
   */
  onEvent(event: NativeStepEvent): "stop" | undefined;
}

interface Entry {
  sequence: LoopSequence;
  id?: number;
  error?: unknown;
  resolve(finish: LoopFinish): void;
  reject(error: unknown): void;
  onAbort(): void;
}

export class DecodeLoop {
  readonly #batch: NativeBatch;
  /** Sequences in the engine's batch, by id. */
  readonly #running = new Map<number, Entry>();
  /** Sequences waiting for a place (beyond `maxActive`). */
  readonly #waiting: Entry[] = [];
  #stepping = false;
  #steps = 0;
  #rows = 0;
  /** The most sequences decoded at once; more wait their turn. */
  maxActive = Number.POSITIVE_INFINITY;

  constructor(native: NativeModel) {
    this.#batch = native.createBatch();
  }

  /**
   * Sequences decoding now and waiting to, and since the start the steps run and the sequences
   * they decoded (rows / steps: the mean batch size).
   */
  get size(): DecodeStats {
    return {
      running: this.#running.size,
      waiting: this.#waiting.length,
      steps: this.#steps,
      rows: this.#rows,
    };
  }

  /** Decodes one sequence with the others; resolves with how it ended. */
  run(sequence: LoopSequence): Promise<LoopFinish> {
    return new Promise<LoopFinish>((resolve, reject) => {
      const entry: Entry = {
        sequence,
        resolve,
        reject,
        onAbort: () => {
          if (entry.id !== undefined) this.#batch.cancel(entry.id);
          else this.#settle(entry, "abort", this.#waiting.indexOf(entry));
        },
      };
      if (sequence.signal?.aborted) {
        resolve("abort");
        return;
      }
      sequence.signal?.addEventListener("abort", entry.onAbort, { once: true });
      if (this.#running.size < this.maxActive) this.#admit(entry);
      else this.#waiting.push(entry);
      this.#pump();
    });
  }

  #admit(entry: Entry): void {
    const { inputIds, options, adapter } = entry.sequence;
    try {
      entry.id = this.#batch.add(inputIds, options, adapter);
    } catch (error) {
      entry.sequence.signal?.removeEventListener("abort", entry.onAbort);
      entry.reject(fromNative(error));
      return;
    }
    this.#running.set(entry.id, entry);
  }

  /** Ends an entry that is not running (waiting at `at`, or never admitted). */
  #settle(entry: Entry, finish: LoopFinish, at: number): void {
    if (at >= 0) this.#waiting.splice(at, 1);
    entry.sequence.signal?.removeEventListener("abort", entry.onAbort);
    entry.resolve(finish);
  }

  #finish(entry: Entry, finish: LoopFinish | undefined, error?: unknown): void {
    if (entry.id !== undefined) this.#running.delete(entry.id);
    entry.sequence.signal?.removeEventListener("abort", entry.onAbort);
    if (error !== undefined) entry.reject(error);
    else entry.resolve(finish as LoopFinish);
    while (this.#waiting.length > 0 && this.#running.size < this.maxActive)
      this.#admit(this.#waiting.shift() as Entry);
  }

  /** Steps while anything runs; one step at a time, the event loop free between them. */
  async #pump(): Promise<void> {
    if (this.#stepping) return;
    this.#stepping = true;
    try {
      while (this.#running.size > 0) {
        let events: NativeStepEvent[];
        try {
          const rows = this.#running.size;
          events = await this.#batch.step();
          this.#steps++;
          this.#rows += rows;
        } catch (error) {
          // The engine dropped every sequence: each caller gets the error.
          const failed = fromNative(error);
          for (const entry of [...this.#running.values()]) this.#finish(entry, undefined, failed);
          continue;
        }
        for (const event of events) {
          const entry = this.#running.get(event.id);
          if (!entry) continue;
          let stop = false;
          if (entry.error === undefined)
            try {
              stop = entry.sequence.onEvent(event) === "stop";
            } catch (error) {
              entry.error = error;
              if (!event.finishReason) this.#batch.cancel(event.id);
            }
          if (event.finishReason) this.#finish(entry, event.finishReason, entry.error);
          else if (stop) this.#batch.stop(event.id);
        }
      }
    } finally {
      this.#stepping = false;
    }
  }
}
