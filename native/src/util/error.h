// The engine's errors: a stable code beside the message, carried across the Node-API boundary as the
// JS error's `code`, so TypeScript never guesses it from the text. The words are the ErrorCode union
// of src/core/errors.ts; test/engine/errors.test.ts checks that every one here is there.
#pragma once
#include <stdexcept>
#include <string>

namespace tunekit {

enum class ErrorCode {
  InvalidArgument,        // a value the caller passed is not allowed
  TokenOutOfRange,        // a token id or label outside the vocabulary
  ContextLengthExceeded,  // more tokens than max_position_embeddings
  ShapeMismatch,          // a tensor, adapter or state of the wrong shape
  MissingTensor,          // a tensor the config needs is not in the files
  BadSafetensors,         // a tensor's bytes do not match its header, or lie beyond the file
  BadConfig,              // sizes in the config that no model can have
  BadTrainingState,       // an optimizer state that does not fit the adapter
  FileNotFound,           // a weights file that does not exist
  ReadFailed,             // a weights file that cannot be opened or mapped
  UnsupportedCpu,         // TUNEKIT_CPU asks for kernels this CPU or build lacks
  NoAdapter,              // training needs a LoRA adapter attached
  Disposed,               // the model was disposed
  OutOfMemory,            // an allocation failed
  EngineFailed,           // anything else: a bug in the engine
};

inline const char* error_code_name(ErrorCode code) {
  switch (code) {
    case ErrorCode::InvalidArgument: return "invalid_argument";
    case ErrorCode::TokenOutOfRange: return "token_out_of_range";
    case ErrorCode::ContextLengthExceeded: return "context_length_exceeded";
    case ErrorCode::ShapeMismatch: return "shape_mismatch";
    case ErrorCode::MissingTensor: return "missing_tensor";
    case ErrorCode::BadSafetensors: return "bad_safetensors";
    case ErrorCode::BadConfig: return "bad_config";
    case ErrorCode::BadTrainingState: return "bad_training_state";
    case ErrorCode::FileNotFound: return "file_not_found";
    case ErrorCode::ReadFailed: return "read_failed";
    case ErrorCode::UnsupportedCpu: return "unsupported_cpu";
    case ErrorCode::NoAdapter: return "no_adapter";
    case ErrorCode::Disposed: return "disposed";
    case ErrorCode::OutOfMemory: return "out_of_memory";
    case ErrorCode::EngineFailed: break;
  }
  return "engine_failed";
}

constexpr ErrorCode kErrorCodes[] = {
    ErrorCode::InvalidArgument,  ErrorCode::TokenOutOfRange, ErrorCode::ContextLengthExceeded,
    ErrorCode::ShapeMismatch,    ErrorCode::MissingTensor,   ErrorCode::BadSafetensors,
    ErrorCode::BadConfig,        ErrorCode::BadTrainingState, ErrorCode::FileNotFound,
    ErrorCode::ReadFailed,       ErrorCode::UnsupportedCpu,  ErrorCode::NoAdapter,
    ErrorCode::Disposed,         ErrorCode::OutOfMemory,     ErrorCode::EngineFailed,
};

class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
  ErrorCode code() const { return code_; }

 private:
  ErrorCode code_;
};

}  // namespace tunekit
