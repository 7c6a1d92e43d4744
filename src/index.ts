/**
 * tunekit: fine-tune LLMs from TypeScript. This entry point never loads native code; the local
 * engine loads on first local use.
 */

export type {
  AnswerLoss,
  ChatCapabilities,
  ChatDelta,
  ChatOptions,
  ChatResult,
  ChatStream,
  ChatTarget,
  ChatUsage,
  FinishReason,
  TokenLogprob,
  ToolCallDelta,
} from "./core/chat.js";
export {
  AuthenticationError,
  BadRequestError,
  ConnectionError,
  DataFormatError,
  DisposedError,
  EngineError,
  type ErrorCode,
  FineTuneFailedError,
  FineTuningUnavailableError,
  formatLocation,
  ModelFormatError,
  NotFoundError,
  PermissionDeniedError,
  type ProblemCode,
  ProviderError,
  type ProviderErrorOptions,
  RateLimitError,
  SourceError,
  type SourceLocation,
  TunekitError,
  type TunekitErrorOptions,
  ValidationError,
} from "./core/errors.js";
export type { Sleep } from "./core/http.js";
export type { Distribution } from "./core/stats.js";
export {
  Dataset,
  type DatasetOptions,
  type DatasetRecord,
  type DatasetStats,
  type UrlOptions,
  type WriteOptions,
  type WriteResult,
} from "./data/dataset.js";
export type {
  ChatExample,
  ChatMessage,
  CompletionExample,
  ContentPart,
  Example,
  ExampleKind,
  ImagePart,
  PreferenceExample,
  Role,
  TextExample,
  TextPart,
  ToolCall,
  ToolDefinition,
} from "./data/example.js";
export { contentText } from "./data/example.js";
export {
  detectFormat,
  FORMAT_NAMES,
  type FormatName,
  formatExample,
  parseRecord,
} from "./data/formats/index.js";
export type { HubOptions } from "./data/hub.js";
export type { Problem, Severity } from "./data/problem.js";
export { FILE_TYPES, type FileType, type ReadOptions } from "./data/readers/index.js";
export * from "./engine/index.js";
export * from "./eval/index.js";
export {
  type ExportGGUFOptions,
  type ExportGGUFResult,
  type ExportKind,
  type ExportProgress,
  exportGGUF,
  type GGUFType,
} from "./export/export-gguf.js";
export type { GGUFValue } from "./export/gguf/format.js";
export { type GGUFFile, type GGUFTensorInfo, readGGUF } from "./export/gguf/reader.js";
export type { FineTuneJobEvent, FineTuneJobEventType } from "./jobs/events.js";
export {
  type CreateFineTuneJobOptions,
  FineTuneJob,
  type FineTuneResult,
  type TrainingInput,
  type WatchOptions,
} from "./jobs/fine-tune-job.js";
export * from "./local/index.js";
export {
  findFineTune,
  MIGRATION_STEPS,
  type MigrateOptions,
  type MigrationEvent,
  type MigrationState,
  type MigrationStep,
  migrateFromOpenAI,
  type RecordEstimate,
  type RecordEvent,
  type RecordGeneration,
  type RecordOptions,
  type RecordProvenance,
  type RecordResult,
  type RetrievedFile,
  record,
  retrieveTrainingData,
} from "./migrate/index.js";
export {
  FIREWORKS_BASE_URL,
  FIREWORKS_INFERENCE_URL,
  type FireworksProviderOptions,
  fireworks,
} from "./providers/fireworks/index.js";
export { type LocalProvider, type LocalProviderOptions, local } from "./providers/local/index.js";
export { NEBIUS_BASE_URL, type NebiusProviderOptions, nebius } from "./providers/nebius/index.js";
export {
  FINE_TUNING_ALTERNATIVES,
  type FineTunedModel,
  type InventoryFile,
  modelShutdown,
  OPENAI_FINE_TUNING_WIND_DOWN,
  type OpenAIProvider,
  type OpenAIProviderOptions,
  openai,
  shutdownWarning,
} from "./providers/openai/index.js";
export {
  type CallOptions,
  type Checkpoint,
  type CreateJobRequest,
  type DownloadedAdapter,
  type DownloadOptions,
  type FineTuningProvider,
  type Hyperparameters,
  type JobError,
  type JobInfo,
  type JobMetrics,
  type JobStatus,
  type Page,
  type PriceEstimate,
  type ProviderEvent,
  type ProviderWarning,
  TERMINAL_STATUSES,
  type TrainingMethod,
  type UploadedFile,
  type UploadRequest,
} from "./providers/spec.js";
export { type TogetherProviderOptions, together } from "./providers/together/index.js";
export { HttpError, type ServeOptions, type Server, serve } from "./serve/index.js";
export { defaultEpochs } from "./validate/cost.js";
export {
  DEFAULT_OPENAI_MODEL,
  type ModelInfo,
  OPENAI_TRAINING_PRICES,
  openaiModel,
} from "./validate/models.js";
export type { CostEstimate, ValidationReport, ValidationStats } from "./validate/report.js";
export {
  chatTokens,
  type ExampleTokens,
  exampleTokens,
  type TokenCounter,
  tiktokenCounter,
} from "./validate/tokens.js";
export {
  InvalidDatasetError,
  type ValidationTarget,
  Validator,
  type ValidatorOptions,
} from "./validate/validator.js";
