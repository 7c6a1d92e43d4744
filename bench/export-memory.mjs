#!/usr/bin/env node
// GGUF export's memory and speed: `exportGGUF` of Llama models of growing size (BF16 safetensors,
// 1024 wide, 2816 feed-forward, more layers for more size), to F16 and to Q8_0, each export in a
// process of its own so that each peak RSS is its own. Beside them, in the same run: the same Node
// process with tunekit loaded and nothing exported (the floor of any export from Node), and `cp` of
// the weights file (the disk's floor for writing as many bytes as an F16 file holds). Target: peak
// RSS flat in the model's size (one tensor in memory at a time: the largest here is 5.8 MB in BF16),
// and time within a small factor of the copy.
//
//   npm run build && node bench/export-memory.mjs [--sizes 256,1024,2048]     # sizes in MB of weights
import { closeSync, mkdirSync, openSync, rmSync, statSync, writeFileSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { run } from "./run.mjs";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const { values } = parseArgs({
  options: { sizes: { type: "string", default: "256,1024,2048" }, child: { type: "string" } },
});

if (values.child) {
  // The measured side, in a process of its own: one export, or (type "none") tunekit loaded alone.
  const [model, type, out] = JSON.parse(values.child);
  const { exportGGUF } = await import(pathToFileURL(join(root, "dist/index.js")).href);
  const started = performance.now();
  const result = type === "none" ? { bytes: 0 } : await exportGGUF({ model, type, out, modelfile: false });
  const seconds = (performance.now() - started) / 1000;
  process.stdout.write(
    `${JSON.stringify({ seconds, bytes: result.bytes, rss: process.resourceUsage().maxRSS })}\n`,
  );
  process.exit(0);
}

const HIDDEN = 1024;
const FFN = 2816;
const VOCAB = 320; // the tiny byte-level tokenizer's (Llama 3's split): the embedding is not what grows here
const LAYER_BYTES = 2 * (4 * HIDDEN * HIDDEN + 3 * HIDDEN * FFN + 2 * HIDDEN);

const work = join(tmpdir(), `tunekit-bench-export-${process.pid}`);
mkdirSync(work, { recursive: true });
process.on("exit", () => rmSync(work, { recursive: true, force: true }));
const { writeTinyModel, TINY_LLAMA } = await import(pathToFileURL(join(root, "dist/testing/index.js")).href);

// Normal values (σ 0.02) in BF16, made once and written again and again: what the bytes are does not
// change the work.
const pool = Buffer.alloc(64 * 2 ** 20);
{
  const floats = new Float32Array(1);
  const bits = new Uint32Array(floats.buffer);
  for (let index = 0; index < pool.length; index += 2) {
    const radius = Math.sqrt(-2 * Math.log(Math.random() || 1e-12)) * 0.02;
    floats[0] = radius * Math.cos(2 * Math.PI * Math.random());
    pool.writeUInt16LE(bits[0] >>> 16, index);
  }
}

/** A Llama folder of about `mb` MB of BF16 weights (whole layers), a tiny byte-level tokenizer. */
async function makeModel(mb) {
  const folder = join(work, `model-${mb}`);
  await writeTinyModel(folder, { ...TINY_LLAMA, vocab_size: VOCAB }, { tokenizer: "llama3" });
  const layers = Math.max(1, Math.round((mb * 2 ** 20) / LAYER_BYTES));
  const tensors = [
    ["model.embed_tokens.weight", [VOCAB, HIDDEN]],
    ["model.norm.weight", [HIDDEN]],
    ["lm_head.weight", [VOCAB, HIDDEN]],
  ];
  for (let layer = 0; layer < layers; layer++) {
    const prefix = `model.layers.${layer}`;
    for (const name of ["q_proj", "k_proj", "v_proj", "o_proj"])
      tensors.push([`${prefix}.self_attn.${name}.weight`, [HIDDEN, HIDDEN]]);
    tensors.push(
      [`${prefix}.mlp.gate_proj.weight`, [FFN, HIDDEN]],
      [`${prefix}.mlp.up_proj.weight`, [FFN, HIDDEN]],
      [`${prefix}.mlp.down_proj.weight`, [HIDDEN, FFN]],
      [`${prefix}.input_layernorm.weight`, [HIDDEN]],
      [`${prefix}.post_attention_layernorm.weight`, [HIDDEN]],
    );
  }
  const header = {};
  let offset = 0;
  for (const [name, shape] of tensors) {
    const bytes = 2 * shape.reduce((a, b) => a * b, 1);
    header[name] = { dtype: "BF16", shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  const json = Buffer.from(JSON.stringify(header));
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(json.length));
  const file = openSync(join(folder, "model.safetensors"), "w");
  writeSync(file, Buffer.concat([prefix, json]));
  for (let done = 0; done < offset; ) {
    const piece = Math.min(pool.length, offset - done);
    writeSync(file, pool, 0, piece);
    done += piece;
  }
  closeSync(file);
  writeFileSync(
    join(folder, "config.json"),
    JSON.stringify({
      ...TINY_LLAMA,
      hidden_size: HIDDEN,
      intermediate_size: FFN,
      num_hidden_layers: layers,
      num_attention_heads: 16,
      num_key_value_heads: 16,
      vocab_size: VOCAB,
      torch_dtype: "bfloat16",
    }),
  );
  return { folder, layers, bytes: offset };
}

const self = fileURLToPath(import.meta.url);
const measure = async (model, type, out) =>
  JSON.parse((await run(process.execPath, [self, "--child", JSON.stringify([model, type, out])])).out);

const floor = await measure("", "none", "");
console.log(`Node with tunekit loaded, nothing exported: peak RSS ${(floor.rss / 1024).toFixed(0)} MB\n`);
const fixed = (value, digits = 2) => value.toFixed(digits).padStart(8);
console.log(
  "weights MB  layers | cp: s    MB/s | F16: s    MB/s  peak RSS MB  vs cp | Q8_0: s    MB/s  peak RSS MB  vs cp",
);
const peaks = [];
for (const mb of values.sizes.split(",").map(Number)) {
  const model = await makeModel(mb);
  const size = model.bytes / 2 ** 20;
  const copy = (
    await run("/usr/bin/time", [
      "-f",
      "%e",
      "cp",
      join(model.folder, "model.safetensors"),
      join(work, "copy"),
    ])
  ).err
    .trim()
    .split("\n")
    .at(-1);
  const copySeconds = Number(copy);
  rmSync(join(work, "copy"));
  const cells = [];
  for (const type of ["f16", "q8_0"]) {
    const out = join(work, `out-${type}.gguf`);
    const result = await measure(model.folder, type, out);
    if (statSync(out).size !== result.bytes)
      throw new Error("the export reported another size than it wrote");
    rmSync(out);
    peaks.push(result.rss);
    cells.push(
      `${fixed(result.seconds)} ${fixed(size / result.seconds, 0)} ${fixed(result.rss / 1024, 0).padStart(12)} ${fixed(result.seconds / copySeconds, 1).padStart(6)}`,
    );
  }
  rmSync(model.folder, { recursive: true, force: true });
  console.log(
    `${fixed(size, 0).padStart(10)} ${String(model.layers).padStart(7)} | ${fixed(copySeconds)} ${fixed(size / copySeconds, 0)} | ${cells.join(" | ")}`,
  );
}
console.log(
  `\npeak RSS over all exports: ${(Math.min(...peaks) / 1024).toFixed(0)}-${(Math.max(...peaks) / 1024).toFixed(0)} MB (largest / smallest ${(Math.max(...peaks) / Math.min(...peaks)).toFixed(2)})`,
);
