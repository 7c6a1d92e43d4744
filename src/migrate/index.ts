export {
  MIGRATION_STEPS,
  type MigrateOptions,
  type MigrationEvent,
  type MigrationState,
  type MigrationStep,
  migrateFromOpenAI,
} from "./migrate.js";
export {
  provenanceOf,
  type RecordEstimate,
  type RecordEvent,
  type RecordGeneration,
  type RecordOptions,
  type RecordProvenance,
  type RecordResult,
  record,
} from "./record.js";
export { findFineTune, type RetrievedFile, retrieveTrainingData } from "./retrieve.js";
