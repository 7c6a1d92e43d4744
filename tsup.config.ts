import { defineConfig, type Options } from "tsup";

const shared: Options = {
  entry: { index: "src/index.ts", "testing/index": "src/testing/index.ts", "cli/index": "src/cli/index.ts" },
  target: "node20",
  platform: "node",
  sourcemap: true,
  dts: true,
  splitting: false,
  treeshake: true,
  // import.meta.url in the CJS build (the engine's loader finds the package folder from it).
  shims: true,
};

export default defineConfig([
  { ...shared, format: "esm" },
  // hyparquet ships ESM only; Node 20 before 20.19 cannot require() it, so the CJS build carries its own copy.
  {
    ...shared,
    entry: { index: "src/index.ts", "testing/index": "src/testing/index.ts" },
    format: "cjs",
    noExternal: ["hyparquet"],
  },
]);
