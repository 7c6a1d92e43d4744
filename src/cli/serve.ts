/** `tunekit serve`: flags → `serve()`, the URL and model ids printed, Ctrl-C or SIGTERM → `close()`. */
import { computeDtypeFlag, integerFlag, parseFlags, quantizationFlag } from "./args.js";
import { type CliIO, processIO, UsageError } from "./io.js";

export const SERVE_USAGE = `  serve --model PATH|HUB_ID [--adapter NAME=DIR …] [--port N] [--host H] [--api-key KEY]
        [--quantization nf4|none] [--compute-dtype f32|bf16] [--threads N] [--max-batch N]
        [--max-queue N] [--allow-adapter-updates]
      Serve the model and its adapters behind an OpenAI-compatible API (/v1/chat/completions,
      /v1/models, /health, /metrics); a request's "model" picks the base or an adapter. The key also
      comes from TUNEKIT_API_KEY. Ctrl-C or SIGTERM stops it, letting requests in flight finish.`;

export async function runServe(argv: string[], io: CliIO): Promise<number> {
  const { values, positionals, help } = parseFlags("serve", argv, {
    model: { type: "string" },
    adapter: { type: "multiple" },
    port: { type: "string" },
    host: { type: "string" },
    "api-key": { type: "string" },
    quantization: { type: "string" },
    "compute-dtype": { type: "string" },
    threads: { type: "string" },
    "max-batch": { type: "string" },
    "max-queue": { type: "string" },
    "allow-adapter-updates": { type: "boolean" },
  });
  if (help) {
    io.stdout(`Usage: tunekit${SERVE_USAGE.slice(1)}\n`);
    return 0;
  }
  if (positionals.length > 0)
    throw new UsageError(`serve takes no file arguments; use --model ${positionals[0]}`, "serve");
  if (!values.model) throw new UsageError("serve needs --model PATH|HUB_ID", "serve");
  const adapters: Record<string, string> = {};
  for (const entry of values.adapter ?? []) {
    const equals = entry.indexOf("=");
    if (equals <= 0) throw new UsageError(`--adapter takes NAME=DIR, got "${entry}"`, "serve");
    const name = entry.slice(0, equals);
    if (name in adapters) throw new UsageError(`--adapter: "${name}" is given twice`, "serve");
    adapters[name] = entry.slice(equals + 1);
  }
  const quantization = quantizationFlag(values.quantization, "serve");
  const computeDtype = computeDtypeFlag(values["compute-dtype"], "serve");
  const port = integerFlag(values.port, "--port", { min: 0, max: 65535, command: "serve" }) ?? 8000;
  const threads = integerFlag(values.threads, "--threads", { command: "serve" });
  const maxBatch = integerFlag(values["max-batch"], "--max-batch", { command: "serve" });
  const maxQueue = integerFlag(values["max-queue"], "--max-queue", { command: "serve" });
  const apiKey = values["api-key"] ?? io.env.TUNEKIT_API_KEY;
  const { serve } = await import("../serve/server.js");
  const server = await serve({
    model: values.model,
    ...(Object.keys(adapters).length > 0 ? { adapters } : {}),
    port,
    ...(values.host ? { host: values.host } : {}),
    ...(apiKey ? { apiKey } : {}),
    quantization,
    ...(computeDtype !== undefined ? { computeDtype } : {}),
    ...(threads !== undefined ? { threads } : {}),
    ...(maxBatch !== undefined ? { maxBatch } : {}),
    ...(maxQueue !== undefined ? { maxQueue } : {}),
    ...(values["allow-adapter-updates"] ? { allowAdapterUpdates: true } : {}),
    log: (line) => io.stderr(`${line}\n`),
  });
  io.stdout(`listening on ${server.url} (loading ${values.model}…)\n`);
  let stop: () => void = () => undefined;
  const stopped = new Promise<void>((resolve) => {
    stop = resolve;
  });
  const subscribe = io.onInterrupt ?? processIO.onInterrupt;
  const unsubscribe = subscribe?.(() => stop());
  try {
    await Promise.race([server.ready, stopped]);
    if (!(await Promise.race([stopped.then(() => true), Promise.resolve(false)]))) {
      io.stdout(`ready: ${server.models.join(", ")}${apiKey ? " (an API key is required)" : ""}\n`);
      io.stdout(
        `try: curl ${server.url}/models${apiKey ? ' -H "Authorization: Bearer $TUNEKIT_API_KEY"' : ""}\n`,
      );
      await stopped;
    }
    io.stdout("stopping: requests in flight may finish\n");
    return 0;
  } finally {
    unsubscribe?.();
    await server.close();
  }
}
