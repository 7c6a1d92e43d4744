/** The server's figures in Prometheus's text format (`GET /metrics`). */
import type { ChatUsage } from "../core/chat.js";
import type { DecodeStats } from "../engine/decode-loop.js";

const BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];

class Histogram {
  readonly counts = new Array<number>(BUCKETS.length).fill(0);
  sum = 0;
  count = 0;

  observe(seconds: number): void {
    this.sum += seconds;
    this.count++;
    for (const [index, bound] of BUCKETS.entries())
      if (seconds <= bound) this.counts[index] = (this.counts[index] as number) + 1;
  }

  lines(name: string): string[] {
    return [
      ...BUCKETS.map((bound, index) => `${name}_bucket{le="${bound}"} ${this.counts[index]}`),
      `${name}_bucket{le="+Inf"} ${this.count}`,
      `${name}_sum ${this.sum}`,
      `${name}_count ${this.count}`,
    ];
  }
}

export class Metrics {
  readonly #requests = new Map<number, number>();
  #promptTokens = 0;
  #completionTokens = 0;
  #queue = 0;
  readonly #latency = new Histogram();
  readonly #firstToken = new Histogram();

  request(status: number, seconds: number): void {
    this.#requests.set(status, (this.#requests.get(status) ?? 0) + 1);
    this.#latency.observe(seconds);
  }

  tokens(usage: ChatUsage | undefined): void {
    this.#promptTokens += usage?.promptTokens ?? 0;
    this.#completionTokens += usage?.completionTokens ?? 0;
  }

  firstToken(seconds: number): void {
    this.#firstToken.observe(seconds);
  }

  queue(depth: number): void {
    this.#queue = depth;
  }

  /** `decoding`: a local model's decode loop, for the batch figures. */
  text(decoding?: DecodeStats): string {
    const batch = decoding
      ? [
          "# HELP tunekit_batch_size Sequences decoding together now.",
          "# TYPE tunekit_batch_size gauge",
          `tunekit_batch_size ${decoding.running}`,
          "# HELP tunekit_decode_steps_total Decode steps run (one token of every running sequence each).",
          "# TYPE tunekit_decode_steps_total counter",
          `tunekit_decode_steps_total ${decoding.steps}`,
          "# HELP tunekit_decode_rows_total Sequences decoded over all steps (rows / steps: the mean batch size).",
          "# TYPE tunekit_decode_rows_total counter",
          `tunekit_decode_rows_total ${decoding.rows}`,
        ]
      : [];
    const lines = [
      "# HELP tunekit_requests_total Requests answered, by HTTP status.",
      "# TYPE tunekit_requests_total counter",
      ...[...this.#requests].map(([status, count]) => `tunekit_requests_total{status="${status}"} ${count}`),
      "# HELP tunekit_prompt_tokens_total Prompt tokens read.",
      "# TYPE tunekit_prompt_tokens_total counter",
      `tunekit_prompt_tokens_total ${this.#promptTokens}`,
      "# HELP tunekit_completion_tokens_total Tokens generated.",
      "# TYPE tunekit_completion_tokens_total counter",
      `tunekit_completion_tokens_total ${this.#completionTokens}`,
      "# HELP tunekit_queue_depth Requests waiting for a slot.",
      "# TYPE tunekit_queue_depth gauge",
      `tunekit_queue_depth ${this.#queue}`,
      "# HELP tunekit_request_duration_seconds Time from a request to its answer.",
      "# TYPE tunekit_request_duration_seconds histogram",
      ...this.#latency.lines("tunekit_request_duration_seconds"),
      "# HELP tunekit_time_to_first_token_seconds Time from a streamed request to its first token.",
      "# TYPE tunekit_time_to_first_token_seconds histogram",
      ...this.#firstToken.lines("tunekit_time_to_first_token_seconds"),
      ...batch,
    ];
    return `${lines.join("\n")}\n`;
  }
}
