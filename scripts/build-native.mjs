#!/usr/bin/env node
// tunekit's own install script: builds the native engine (native/) with node-gyp, the one that ships
// with npm. A published package carries a prebuilt binary for linux-x64 (prebuilds/), used as is
// unless TUNEKIT_BUILD_FROM_SOURCE=1 or --force. A failed build never fails `npm install`: cloud-only
// users do not need the engine, and the loader (src/engine/binding.ts) explains what is missing on
// first local use.
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const force = process.argv.includes("--force") || process.env.TUNEKIT_BUILD_FROM_SOURCE === "1";
const prebuilt = join(root, "prebuilds", `${process.platform}-${process.arch}`, "tunekit.node");

function loads(path) {
  try {
    createRequire(import.meta.url)(path);
    return true;
  } catch {
    return false;
  }
}

if (process.env.TUNEKIT_SKIP_NATIVE === "1") {
  console.log("tunekit: TUNEKIT_SKIP_NATIVE=1, not building the native engine");
  process.exit(0);
}
if (!force && existsSync(prebuilt) && loads(prebuilt)) {
  console.log(`tunekit: using the prebuilt native engine (${process.platform}-${process.arch})`);
  process.exit(0);
}

// npm tells scripts where its node-gyp is; outside npm, look next to this Node's npm, then on PATH.
const candidates = [
  process.env.npm_config_node_gyp,
  join(dirname(process.execPath), "../lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js"),
  join(dirname(process.execPath), "node_modules/npm/node_modules/node-gyp/bin/node-gyp.js"),
].filter((path) => path && existsSync(path));
const [command, args] = candidates[0]
  ? [process.execPath, [candidates[0], "rebuild", "--release"]]
  : ["node-gyp", ["rebuild", "--release"]];
const result = spawnSync(command, args, {
  cwd: join(root, "native"),
  stdio: "inherit",
  shell: process.platform === "win32" && command === "node-gyp",
});
if (result.status === 0) process.exit(0);

console.warn(
  [
    "",
    "tunekit: the native engine did not build, so local models (LocalModel, LocalTrainer) are unavailable;",
    "the data, validation and cloud APIs work without it.",
    "Building it needs a C++17 compiler (g++ 9+ or clang 10+; Xcode command-line tools on macOS; Visual",
    "Studio Build Tools on Windows), make, Python 3 and Node's headers (node-gyp downloads them, or set",
    "npm_config_nodedir). Then run: npm rebuild tunekit",
    result.error ? `(${result.error.message})` : "",
  ].join("\n"),
);
process.exit(0);
