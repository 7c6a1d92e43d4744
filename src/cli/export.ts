/** `tunekit export gguf` and `tunekit export inspect`: GGUF files for llama.cpp and Ollama, and a look inside one. */
import type { GGUFValue } from "../export/gguf/format.js";
import { parseFlags } from "./args.js";
import { type CliIO, processIO, UsageError } from "./io.js";

export const EXPORT_USAGE = `  export gguf --model PATH|HUB_ID [--adapter DIR [--merge]] [--type f32|f16|bf16|q8_0|q4_0]
             --out FILE.gguf [--name NAME] [--base-gguf FILE] [--no-modelfile] [--json]
      Write the model as a GGUF file for llama.cpp, Ollama, LM Studio and node-llama-cpp (default
      type f16); with --adapter, the adapter alone as a GGUF LoRA adapter (f32 or f16, default f32);
      with --merge, the model with the adapter merged in. An Ollama Modelfile goes beside it.
  export inspect FILE.gguf [--json]
      Print a GGUF file's metadata and tensor table.`;

const ACTIONS = ["gguf", "inspect"];

export async function runExport(argv: string[], io: CliIO): Promise<number> {
  const [action, ...rest] = argv;
  if (action === undefined || action === "--help" || action === "-h") {
    io.stdout(`Usage: tunekit${EXPORT_USAGE.slice(1)}\n`);
    return action === undefined ? 2 : 0;
  }
  if (!ACTIONS.includes(action))
    throw new UsageError(
      `unknown action "export ${action}"; use ${ACTIONS.map((name) => `export ${name}`).join(" or ")}`,
      "export",
    );
  if (action === "inspect") return inspect(rest, io);
  const { values, positionals, help } = parseFlags("export gguf", rest, {
    model: { type: "string" },
    adapter: { type: "string" },
    merge: { type: "boolean" },
    type: { type: "string" },
    out: { type: "string" },
    name: { type: "string" },
    "base-gguf": { type: "string" },
    "no-modelfile": { type: "boolean" },
    json: { type: "boolean" },
  });
  if (help) {
    io.stdout(`Usage: tunekit${EXPORT_USAGE.slice(1)}\n`);
    return 0;
  }
  if (positionals.length > 0)
    throw new UsageError(`export gguf takes no arguments, got "${positionals[0]}"`, "export");
  if (!values.model) throw new UsageError("export gguf needs --model PATH|HUB_ID", "export");
  if (!values.out) throw new UsageError("export gguf needs --out FILE.gguf", "export");
  if (!values.out.endsWith(".gguf"))
    throw new UsageError(`--out must end in .gguf, got "${values.out}"`, "export");
  if (values.merge && !values.adapter) throw new UsageError("--merge needs --adapter DIR", "export");
  const { GGUF_TYPES } = await import("../export/gguf/model.js");
  const type = values.type as (typeof GGUF_TYPES)[number] | undefined;
  if (type !== undefined && !GGUF_TYPES.includes(type))
    throw new UsageError(`--type: unknown type "${type}"; use ${GGUF_TYPES.join(", ")}`, "export");
  if (type !== undefined && values.adapter && !values.merge && type !== "f32" && type !== "f16")
    throw new UsageError(
      `--type ${type}: a GGUF LoRA adapter is f32 or f16 (add --merge for a merged ${type} model)`,
      "export",
    );
  const { exportGGUF } = await import("../export/export-gguf.js");
  const controller = new AbortController();
  const unsubscribe = (io.onInterrupt ?? processIO.onInterrupt)?.(() =>
    controller.abort(new Error("stopped")),
  );
  let last = "";
  try {
    const result = await exportGGUF({
      model: values.model,
      ...(values.adapter ? { adapter: values.adapter } : {}),
      ...(values.merge ? { merge: true } : {}),
      ...(type ? { type } : {}),
      out: values.out,
      ...(values.name ? { name: values.name } : {}),
      ...(values["base-gguf"] ? { baseGGUF: values["base-gguf"] } : {}),
      ...(values["no-modelfile"] ? { modelfile: false } : {}),
      signal: controller.signal,
      onProgress: (event) => {
        if (values.json || event.type !== "tensor-written") return;
        const line = `${event.done}/${event.total} ${event.name}`;
        if (io.isTTY) io.stdout(`\r\x1b[2K${line}`);
        else if (event.done === event.total || event.done % 50 === 0) io.stdout(`${line}\n`);
        last = line;
      },
    });
    if (io.isTTY && last) io.stdout("\n");
    for (const note of result.notes) io.stderr(`note: ${note}\n`);
    if (values.json) io.stdout(`${JSON.stringify(result)}\n`);
    else {
      const what =
        result.kind === "adapter" ? "LoRA adapter" : result.kind === "merged" ? "merged model" : "model";
      io.stdout(
        `${result.out}: ${what}, ${result.architecture}, ${result.type}, ${result.tensors} tensors, ${megabytes(result.bytes)}\n`,
      );
      if (result.modelfile)
        io.stdout(`${result.modelfile}: Ollama Modelfile (ollama create NAME -f ${result.modelfile})\n`);
    }
    return 0;
  } catch (error) {
    if (controller.signal.aborted) {
      io.stderr("tunekit: stopped; no file was written\n");
      return 130;
    }
    throw error;
  } finally {
    unsubscribe?.();
  }
}

async function inspect(argv: string[], io: CliIO): Promise<number> {
  const { values, positionals, help } = parseFlags("export inspect", argv, { json: { type: "boolean" } });
  if (help) {
    io.stdout(`Usage: tunekit${EXPORT_USAGE.slice(1)}\n`);
    return 0;
  }
  if (positionals.length !== 1) throw new UsageError("export inspect takes one FILE.gguf", "export");
  const { readGGUF } = await import("../export/gguf/reader.js");
  const file = await readGGUF(positionals[0] as string);
  if (values.json) {
    const metadata = Object.fromEntries([...file.metadata].map(([key, value]) => [key, value.value]));
    io.stdout(
      `${JSON.stringify({ version: file.version, size: file.size, alignment: file.alignment, metadata, tensors: file.tensors }, (_, value) => (typeof value === "bigint" ? value.toString() : value))}\n`,
    );
    return 0;
  }
  const lines = [
    `GGUF v${file.version}, ${megabytes(file.size)}, ${file.metadata.size} metadata keys, ${file.tensors.length} tensors`,
    "",
  ];
  for (const [key, value] of file.metadata) lines.push(`${key} = ${describe(value)}`);
  lines.push("");
  for (const tensor of file.tensors)
    lines.push(`${tensor.name.padEnd(32)} ${tensor.typeName.padEnd(5)} [${tensor.shape.join(", ")}]`);
  io.stdout(`${lines.join("\n")}\n`);
  return 0;
}

/** A value as a line: arrays by their type and length and first items. */
function describe(value: GGUFValue): string {
  if (value.type !== "array")
    return typeof value.value === "string" ? JSON.stringify(shorten(value.value)) : String(value.value);
  const head = value.value
    .slice(0, 4)
    .map((item) => (typeof item === "string" ? JSON.stringify(item) : String(item)));
  return `[${value.itemType} × ${value.value.length}] ${head.join(", ")}${value.value.length > 4 ? ", …" : ""}`;
}

function shorten(text: string): string {
  return text.length > 120 ? `${text.slice(0, 117)}…` : text;
}

function megabytes(bytes: number): string {
  return bytes < 1024 * 1024 ? `${(bytes / 1024).toFixed(1)} KB` : `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}
