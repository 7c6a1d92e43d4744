export { TRAIN_DEFAULTS } from "./defaults.js";
export { type PackedBlock, packExamples, type TokenizedExample } from "./packing.js";
export { learningRateSchedule, type ScheduleOptions, type SchedulerName } from "./schedule.js";
export {
  learnedTokens,
  type TokenizedDataset,
  type TokenizeOptions,
  tokenizeExample,
  tokenizeExamples,
} from "./tokenize.js";
export { LocalTrainer, type ModelView, type TrainOptions } from "./trainer.js";
export {
  type EvalEvent,
  type RunPlan,
  type RunSummary,
  type StepEvent,
  TrainingRun,
  type TrainingRunEvent,
} from "./training-run.js";
