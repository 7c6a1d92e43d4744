#!/usr/bin/env node
// Copies the local build of the native engine to prebuilds/<platform>-<arch>/ so `npm pack` ships it
// (run by prepack; postpack removes it again with --clean, so a working tree never runs a stale copy).
import { copyFileSync, existsSync, mkdirSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const target = join(root, "prebuilds", `${process.platform}-${process.arch}`, "tunekit.node");
if (process.argv.includes("--clean")) {
  rmSync(join(root, "prebuilds"), { recursive: true, force: true });
  process.exit(0);
}
const build = join(root, "native", "build", "Release", "tunekit.node");
if (!existsSync(build)) {
  console.error("tunekit: no native build to package; run `npm run build:native` first");
  process.exit(1);
}
mkdirSync(dirname(target), { recursive: true });
copyFileSync(build, target);
console.log(`tunekit: packaged ${target}`);
