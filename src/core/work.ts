/** Running many calls: a bounded pool, and retries with backoff on transient errors. */
import { isRetryableError, sleep } from "./http.js";

/** Runs `work` on each item, at most `limit` at a time, in order of start. */
export async function pool<T>(
  items: readonly T[],
  limit: number,
  work: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  const workers = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) await work(items[next++] as T);
  });
  await Promise.all(workers);
}

export interface RetryOptions {
  /** Tries in all. Default 3. */
  attempts?: number;
  /** Milliseconds before try `attempt + 1`. Default 500 · 2^(attempt − 1). */
  retryDelayMs?: (attempt: number) => number;
  signal?: AbortSignal;
}

/** `run`, tried again after a wait on a transient error (429, 5xx, a dropped connection). */
export async function withRetries<T>(run: () => Promise<T>, options: RetryOptions = {}): Promise<T> {
  const attempts = options.attempts ?? 3;
  const delay = options.retryDelayMs ?? ((attempt: number) => 500 * 2 ** (attempt - 1));
  for (let attempt = 1; ; attempt++) {
    try {
      return await run();
    } catch (error) {
      if (options.signal?.aborted || attempt >= attempts || !isRetryableError(error)) throw error;
      await sleep(delay(attempt), options.signal);
    }
  }
}
