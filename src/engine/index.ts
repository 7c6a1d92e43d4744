export {
  labelTokens,
  type MaskMessage,
  renderWithSpans,
  type Span,
  tokenizeConversation,
} from "./assistant-mask.js";
export { availableKernels, type ComputeDtype, type KernelPath } from "./binding.js";
export {
  type ChatFormat,
  ChatRenderer,
  DEFAULT_CHAT_TEMPLATE,
  type RenderChatOptions,
  type RenderedChat,
  renderChat,
  type TemplateSource,
  templateMessage,
} from "./chat-template.js";
export { ARCHITECTURES, type ModelConfig, parseModelConfig, ropeFrequencies } from "./config.js";
export { type DownloadProgressEvent, downloadModel, type ModelHubOptions } from "./hub.js";
export {
  type GenerateInput,
  type GenerateOptions,
  type GenerateResult,
  type LoadOptions,
  type LoadProgressEvent,
  LocalModel,
  type LossResult,
  type OptimizerOptions,
  type Quantization,
  type StreamChunk,
  type TrainingBatch,
  type TrainingOptions,
  type WeightBytes,
} from "./local-model.js";
export {
  type LoraConfig,
  type LoraOptions,
  PROJECTIONS,
  type Projection,
  peftKey,
} from "./lora.js";
export { type MergeOptions, parseSize } from "./merge.js";
export { dequantizeNF4, NF4_CODE, type NF4Quantized, quantizeNF4 } from "./nf4.js";
export {
  readModelTensors,
  readSafetensorsHeader,
  type SafetensorsHeader,
  type TensorInfo,
} from "./safetensors.js";
export {
  type ChatTemplateOptions,
  LocalTokenizer,
  StreamDecoder,
  type TemplateMessage,
} from "./tokenizer.js";
