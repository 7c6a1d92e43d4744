import { EventEmitter } from "eventemitter3";

type Listeners<E extends { type: string }> = { [K in E["type"]]: [Extract<E, { type: K }>] };

/**
 * An append-only log of typed events that any number of readers iterate from the start, then live;
 * the same events go to an emitter. Long-running work (jobs, training runs) writes here, so a reader
 * that starts late misses nothing and every reader sees the same order.
 */
export class EventLog<E extends { type: string }> {
  readonly #events: E[] = [];
  readonly #emitter = new EventEmitter<Listeners<E>>();
  #wake: (() => void) | undefined;
  #wakeup: Promise<void> = this.#nextWakeup();
  #end: { error?: unknown } | undefined;

  #nextWakeup(): Promise<void> {
    return new Promise((resolve) => {
      this.#wake = resolve;
    });
  }

  /** Appends an event and hands it to listeners and waiting readers. */
  push(event: E): void {
    if (this.#end) return;
    this.#events.push(event);
    (this.#emitter.emit as (type: string, event: E) => boolean)(event.type, event);
    this.#notify();
  }

  /** Ends the log: readers finish after the last event, or throw `error` when given. */
  close(error?: unknown): void {
    if (this.#end) return;
    this.#end = error === undefined ? {} : { error };
    this.#notify();
  }

  get closed(): boolean {
    return this.#end !== undefined;
  }

  /** The events so far. */
  snapshot(): readonly E[] {
    return this.#events;
  }

  #notify(): void {
    const wake = this.#wake;
    this.#wakeup = this.#nextWakeup();
    wake?.();
  }

  /** Every event from the first, then live ones until the log closes or `signal` aborts. */
  async *read(signal?: AbortSignal): AsyncGenerator<E, void, undefined> {
    let index = 0;
    const aborted = signal
      ? new Promise<void>((resolve) => {
          if (signal.aborted) resolve();
          else signal.addEventListener("abort", () => resolve(), { once: true });
        })
      : undefined;
    while (true) {
      if (signal?.aborted) return;
      if (index < this.#events.length) {
        yield this.#events[index++] as E;
        continue;
      }
      if (this.#end) {
        if (this.#end.error !== undefined) throw this.#end.error;
        return;
      }
      await (aborted ? Promise.race([this.#wakeup, aborted]) : this.#wakeup);
    }
  }

  on<T extends E["type"]>(type: T, listener: (event: Extract<E, { type: T }>) => void): void {
    (this.#emitter.on as (type: string, listener: (event: E) => void) => unknown)(
      type,
      listener as (event: E) => void,
    );
  }

  off<T extends E["type"]>(type: T, listener: (event: Extract<E, { type: T }>) => void): void {
    (this.#emitter.off as (type: string, listener: (event: E) => void) => unknown)(
      type,
      listener as (event: E) => void,
    );
  }

  once<T extends E["type"]>(type: T, listener: (event: Extract<E, { type: T }>) => void): void {
    (this.#emitter.once as (type: string, listener: (event: E) => void) => unknown)(
      type,
      listener as (event: E) => void,
    );
  }
}

/** Resolves after `ms`, or at once when `signal` aborts. `ref: false` lets the process exit meanwhile. */
export function sleep(ms: number, signal?: AbortSignal, options: { ref?: boolean } = {}): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    if (options.ref === false) timer.unref();
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });
}
