#!/usr/bin/env node
// Bringing a merged model home: `together().downloadAdapter(job, dir, { kind: "merged" })` against a
// loopback server that answers Together's routes and redirects the download to a tar.zst made by the
// real tar and zstd (level 3) from bf16 weights. Beside it, in the same run, the baseline a person
// would otherwise type: `curl -sL URL | tar --zstd -x` (GNU tar with the zstd binary). Each runs in its
// own process, so that each peak RSS is its own. Targets: peak RSS flat in the archive's size (the
// weights are streamed, never held), and the time within a small factor of the native tools.
//
//   npm run build && node bench/download-unpack.mjs [--sizes 256,1024]     # sizes in MB of weights
import { spawnSync } from "node:child_process";
import {
  closeSync,
  createReadStream,
  mkdirSync,
  openSync,
  rmSync,
  statSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { run } from "./run.mjs";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const { values } = parseArgs({
  options: { sizes: { type: "string", default: "256,1024" }, child: { type: "string" } },
});

if (values.child) {
  // The measured side: tunekit's download, in a process of its own.
  const [baseURL, out] = JSON.parse(values.child);
  const { together } = await import(join(root, "dist/index.js"));
  const started = performance.now();
  const result = await together({ apiKey: "bench", baseURL }).downloadAdapter("ft-bench", out, {
    kind: "merged",
  });
  const seconds = (performance.now() - started) / 1000;
  process.stdout.write(
    `${JSON.stringify({ seconds, files: result.files, rss: process.resourceUsage().maxRSS })}\n`,
  );
  process.exit(0);
}

const work = join(tmpdir(), `tunekit-bench-download-${process.pid}`);
mkdirSync(work, { recursive: true });
process.on("exit", () => rmSync(work, { recursive: true, force: true }));

/** A merged model folder of `mb` MB of bf16 weights (normal, σ 0.02), packed by tar and zstd -3. */
function makeArchive(mb) {
  const folder = join(work, `model-${mb}`);
  mkdirSync(folder, { recursive: true });
  const count = (mb * 1024 * 1024) / 2;
  const header = Buffer.from(
    JSON.stringify({
      "model.embed_tokens.weight": {
        dtype: "BF16",
        shape: [count / 1024, 1024],
        data_offsets: [0, count * 2],
      },
    }),
  );
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(header.length));
  // Written 32 MB at a time: a file of several GB never sits in memory here either.
  const file = openSync(join(folder, "model.safetensors"), "w");
  writeSync(file, Buffer.concat([prefix, header]));
  const floats = new Float32Array(1);
  const bits = new Uint32Array(floats.buffer);
  const piece = Buffer.alloc(32 * 2 ** 20);
  for (let done = 0; done < count; ) {
    const values = Math.min(piece.length / 2, count - done);
    for (let index = 0; index < values; index += 2) {
      // Box-Muller: two normal values per pair of uniforms.
      const radius = Math.sqrt(-2 * Math.log(Math.random() || 1e-12)) * 0.02;
      const angle = 2 * Math.PI * Math.random();
      floats[0] = radius * Math.cos(angle);
      piece.writeUInt16LE(bits[0] >>> 16, index * 2);
      floats[0] = radius * Math.sin(angle);
      if (index + 1 < values) piece.writeUInt16LE(bits[0] >>> 16, index * 2 + 2);
    }
    writeSync(file, piece, 0, values * 2);
    done += values;
  }
  closeSync(file);
  writeFileSync(
    join(folder, "config.json"),
    JSON.stringify({ model_type: "llama", architectures: ["LlamaForCausalLM"] }),
  );
  const archive = join(work, `model-${mb}.tar.zst`);
  const packed = spawnSync("sh", ["-c", `tar -C ${work} -cf - model-${mb} | zstd -3 -q -T2 -o ${archive}`]);
  if (packed.status !== 0) throw new Error(`tar | zstd failed: ${packed.stderr}`);
  rmSync(folder, { recursive: true });
  return archive;
}

/** Together's routes for one completed LoRA job, and the storage behind the download's redirect. */
function serve(archive) {
  const server = createServer((request, response) => {
    const url = new URL(request.url, "http://localhost");
    const json = (body) => {
      response.writeHead(200, { "Content-Type": "application/json" });
      response.end(JSON.stringify(body));
    };
    if (url.pathname === "/v1/fine-tunes/ft-bench")
      return json({ id: "ft-bench", status: "completed", model: "bench", training_type: { type: "Lora" } });
    if (url.pathname === "/v1/fine-tunes/ft-bench/checkpoints")
      return json({ data: [{ checkpoint_type: "Final", step: 10, path: "final" }] });
    if (url.pathname === "/v1/finetune/download") {
      response.writeHead(302, { Location: "/storage/model.tar.zst" });
      return response.end();
    }
    if (url.pathname === "/storage/model.tar.zst") {
      response.writeHead(200, {
        "Content-Type": "application/zstd",
        "Content-Length": statSync(archive).size,
      });
      return createReadStream(archive).pipe(response);
    }
    response.writeHead(404);
    response.end();
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(server)));
}

const fixed = (value, digits = 2) => value.toFixed(digits).padStart(8);
console.log(
  "weights MB  archive MB | tunekit: s   MB/s  peak RSS MB | curl | tar --zstd: s   MB/s  peak RSS MB | time ratio",
);
for (const mb of values.sizes.split(",").map(Number)) {
  const archive = makeArchive(mb);
  const archiveMB = statSync(archive).size / 2 ** 20;
  const server = await serve(archive);
  const baseURL = `http://127.0.0.1:${server.address().port}/v1`;
  const out = join(work, `out-${mb}`);
  const self = fileURLToPath(import.meta.url);
  const mine = JSON.parse(
    (await run(process.execPath, [self, "--child", JSON.stringify([baseURL, out])])).out,
  );
  const target = join(work, `tar-${mb}`);
  mkdirSync(target);
  const command = `curl -sfL ${baseURL}/finetune/download | tar --zstd -x -C ${target}`;
  const timed = (await run("/usr/bin/time", ["-f", "%e %M", "sh", "-c", command])).err
    .trim()
    .split("\n")
    .at(-1);
  const [tarSeconds, tarKB] = timed.split(" ").map(Number);
  server.close();
  const size = statSync(join(out, "model.safetensors")).size;
  if (size !== statSync(join(target, `model-${mb}`, "model.safetensors")).size)
    throw new Error("the two unpacked different files");
  rmSync(out, { recursive: true, force: true });
  rmSync(target, { recursive: true, force: true });
  rmSync(archive);
  console.log(
    `${String(mb).padStart(10)}  ${fixed(archiveMB, 0).padStart(10)} | ${fixed(mine.seconds)} ${fixed(mb / mine.seconds, 0)} ${fixed(mine.rss / 1024, 0).padStart(12)} | ${fixed(tarSeconds).padStart(21)} ${fixed(mb / tarSeconds, 0)} ${fixed(tarKB / 1024, 0).padStart(12)} | ${fixed(mine.seconds / tarSeconds).padStart(10)}`,
  );
}
