/** The guide's TrainingArguments defaults: what `LocalTrainer.train` uses for the options left out. */
export const TRAIN_DEFAULTS = {
  epochs: 3,
  batchSize: 4,
  gradientAccumulation: 4,
  learningRate: 2e-4,
  maxSeqLength: 2048,
  loggingSteps: 10,
  saveSteps: 500,
} as const;
