export { cacheKey, defaultCacheDir } from "./cache.js";
export { type CaseSource, loadCases } from "./cases.js";
export {
  type EvalTarget,
  type EvaluationEvent,
  EvaluationRun,
  Evaluator,
  type EvaluatorOptions,
  type RunOptions,
  type TargetFunction,
} from "./evaluator.js";
export * from "./metrics/index.js";
export {
  type CaseReport,
  type Comparison,
  EvaluationReport,
  type GateOptions,
  type MetricSummary,
  type ReportData,
  type TargetOutput,
} from "./report.js";
export { bootstrapInterval, normalSurvival, signTest, type WilcoxonResult, wilcoxon } from "./statistics.js";
export type {
  CaseInput,
  EvalCase,
  GenerationOptions,
  Metric,
  MetricInput,
  MetricOutcome,
  MetricScore,
  NotApplicable,
} from "./types.js";
