/**
 * The local adapter: tunekit's provider specification over the bundled LoRA / QLoRA engine, so that
 * `FineTuneJob` runs a job on this machine exactly as it runs one on OpenAI or Together. The
 * fine-tuned model is the adapter folder (PEFT format); each job's record lives in its output folder,
 * so `FineTuneJob.attach` and `FineTuneJob.list` work after a restart.
 */
import { LocalProvider, type LocalProviderOptions } from "./provider.js";

export type { LocalProvider, LocalProviderOptions } from "./provider.js";

/**
 * A fine-tuning provider that trains on this machine:
 * `FineTuneJob.create({ provider: local({ outputDir: "./runs" }), model: "HuggingFaceTB/SmolLM2-135M-Instruct", ... })`.
 * `quantization` defaults to "nf4" (QLoRA), `threads` to all hardware threads. Dispose it
 * (`await using provider = local(...)`) to stop its jobs and free the models its chat targets loaded.
 */
export function local(options: LocalProviderOptions): LocalProvider {
  return new LocalProvider(options);
}
