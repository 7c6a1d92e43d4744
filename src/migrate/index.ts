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
