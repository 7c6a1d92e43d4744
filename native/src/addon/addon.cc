// The Node-API surface of the engine, and nothing else: argument checks, one AsyncWorker per heavy
// call, token streaming through a thread-safe function, cancellation through an atomic flag. The
// TypeScript description of this surface is src/engine/binding.ts; keep the two in step.
#include <napi.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "kernels/kernels.h"
#include "kernels/nf4.h"
#include "model/batch.h"
#include "model/llama.h"

namespace tunekit {
namespace {

// ---- Errors: every JS error this surface throws or rejects with carries the engine's `code` -------

Napi::Error with_code(Napi::Error error, ErrorCode code) {
  error.Set("code", Napi::String::New(error.Env(), error_code_name(code)));
  return error;
}

// A wrong type or a value out of range, for the caller: a TypeError / RangeError, `invalid_argument`.
Napi::Error type_error(const Napi::Env& env, const std::string& message) {
  return with_code(Napi::TypeError::New(env, message), ErrorCode::InvalidArgument);
}
Napi::Error range_error(const Napi::Env& env, const std::string& message) {
  return with_code(Napi::RangeError::New(env, message), ErrorCode::InvalidArgument);
}
Napi::Error coded_error(const Napi::Env& env, ErrorCode code, const std::string& message) {
  return with_code(Napi::Error::New(env, message), code);
}

// The code of the exception being handled (call it in a catch block): the engine's own, or
// out_of_memory, or engine_failed for anything else. (Rethrown and caught by type: the addon builds
// without RTTI, so no dynamic_cast.)
ErrorCode caught_code() {
  try {
    throw;
  } catch (const Error& error) {
    return error.code();
  } catch (const std::bad_alloc&) {
    return ErrorCode::OutOfMemory;
  } catch (...) {
    return ErrorCode::EngineFailed;
  }
}
Napi::Error native_error(const Napi::Env& env, const std::exception& error) {
  return coded_error(env, caught_code(), error.what());
}

// ---- Argument helpers: a wrong type is a TypeError naming the field ------------------------------

Napi::Value field(const Napi::Object& object, const char* name) { return object.Get(name); }

double number_field(const Napi::Object& object, const char* name) {
  Napi::Value value = field(object, name);
  if (!value.IsNumber()) throw type_error(object.Env(), std::string(name) + " must be a number");
  return value.As<Napi::Number>().DoubleValue();
}

int int_field(const Napi::Object& object, const char* name) {
  const double value = number_field(object, name);
  if (value != double(int64_t(value)) || value < -2147483648.0 || value > 2147483647.0)
    throw type_error(object.Env(), std::string(name) + " must be an integer");
  return int(value);
}

bool bool_field(const Napi::Object& object, const char* name, bool fallback) {
  Napi::Value value = field(object, name);
  if (value.IsUndefined()) return fallback;
  if (!value.IsBoolean()) throw type_error(object.Env(), std::string(name) + " must be a boolean");
  return value.As<Napi::Boolean>().Value();
}

std::string string_field(const Napi::Object& object, const char* name, const std::string& fallback) {
  Napi::Value value = field(object, name);
  if (value.IsUndefined()) return fallback;
  if (!value.IsString()) throw type_error(object.Env(), std::string(name) + " must be a string");
  return value.As<Napi::String>().Utf8Value();
}

template <typename Typed>
Typed typed_array(const Napi::Env& env, const Napi::Value& value, const char* name, napi_typedarray_type type,
                  const char* type_name) {
  if (!value.IsTypedArray() || value.As<Napi::TypedArray>().TypedArrayType() != type)
    throw type_error(env, std::string(name) + " must be a " + type_name);
  return value.As<Typed>();
}

std::vector<int32_t> int32_vector(const Napi::Env& env, const Napi::Value& value, const char* name) {
  auto array = typed_array<Napi::Int32Array>(env, value, name, napi_int32_array, "Int32Array");
  return std::vector<int32_t>(array.Data(), array.Data() + array.ElementLength());
}

// A JS copy of engine values.
Napi::Float32Array float_array(Napi::Env env, const std::vector<float>& values) {
  Napi::Float32Array out = Napi::Float32Array::New(env, values.size());
  std::copy(values.begin(), values.end(), out.Data());
  return out;
}

DType parse_dtype(const Napi::Env& env, const std::string& name, const std::string& tensor) {
  if (name == "F32") return DType::F32;
  if (name == "F16") return DType::F16;
  if (name == "BF16") return DType::BF16;
  throw type_error(env, "tensor " + tensor + ": unsupported dtype " + name + " (F32, F16 or BF16)");
}

struct LoadSpec {
  ModelConfig config;
  std::vector<std::string> files;
  std::vector<TensorSource> tensors;
  LoadOptions options;
};

LoadSpec parse_load_spec(const Napi::Env& env, const Napi::Object& spec) {
  LoadSpec result;
  Napi::Value config_value = spec.Get("config");
  if (!config_value.IsObject()) throw type_error(env, "config must be an object");
  Napi::Object config = config_value.As<Napi::Object>();
  ModelConfig& c = result.config;
  c.hidden_size = int_field(config, "hiddenSize");
  c.intermediate_size = int_field(config, "intermediateSize");
  c.num_layers = int_field(config, "numLayers");
  c.num_heads = int_field(config, "numHeads");
  c.num_kv_heads = int_field(config, "numKvHeads");
  c.head_dim = int_field(config, "headDim");
  c.vocab_size = int_field(config, "vocabSize");
  c.max_positions = int_field(config, "maxPositions");
  c.rms_norm_eps = float(number_field(config, "rmsNormEps"));
  c.tie_word_embeddings = bool_field(config, "tieWordEmbeddings", false);
  c.attention_bias = bool_field(config, "attentionBias", false);
  c.attention_scaling = float(number_field(config, "attentionScaling"));
  auto inv_freq = typed_array<Napi::Float32Array>(env, config.Get("invFreq"), "config.invFreq", napi_float32_array,
                                                  "Float32Array");
  c.inv_freq.assign(inv_freq.Data(), inv_freq.Data() + inv_freq.ElementLength());

  Napi::Value files = spec.Get("files");
  if (!files.IsArray()) throw type_error(env, "files must be an array of paths");
  Napi::Array file_array = files.As<Napi::Array>();
  for (uint32_t i = 0; i < file_array.Length(); i++) {
    Napi::Value path = file_array.Get(i);
    if (!path.IsString()) throw type_error(env, "files must be an array of paths");
    result.files.push_back(path.As<Napi::String>().Utf8Value());
  }

  Napi::Value tensors = spec.Get("tensors");
  if (!tensors.IsArray()) throw type_error(env, "tensors must be an array");
  Napi::Array tensor_array = tensors.As<Napi::Array>();
  for (uint32_t i = 0; i < tensor_array.Length(); i++) {
    Napi::Value entry = tensor_array.Get(i);
    if (!entry.IsObject()) throw type_error(env, "tensors must hold objects");
    Napi::Object tensor = entry.As<Napi::Object>();
    TensorSource source;
    source.name = string_field(tensor, "name", "");
    source.file = int_field(tensor, "file");
    const double offset = number_field(tensor, "offset"), bytes = number_field(tensor, "bytes");
    if (offset < 0 || bytes < 0) throw type_error(env, "tensor " + source.name + ": negative offset or size");
    source.offset = uint64_t(offset);
    source.bytes = uint64_t(bytes);
    source.dtype = parse_dtype(env, string_field(tensor, "dtype", ""), source.name);
    Napi::Value shape = tensor.Get("shape");
    if (!shape.IsArray()) throw type_error(env, "tensor " + source.name + ": shape must be an array");
    Napi::Array dims = shape.As<Napi::Array>();
    for (uint32_t d = 0; d < dims.Length(); d++) {
      Napi::Value dim = dims.Get(d);
      if (!dim.IsNumber() || dim.As<Napi::Number>().DoubleValue() < 0)
        throw type_error(env, "tensor " + source.name + ": shape must hold sizes");
      source.shape.push_back(int64_t(dim.As<Napi::Number>().DoubleValue()));
    }
    result.tensors.push_back(std::move(source));
  }

  Napi::Value options_value = spec.Get("options");
  if (options_value.IsObject()) {
    Napi::Object options = options_value.As<Napi::Object>();
    result.options.quantization = string_field(options, "quantization", "none");
    result.options.nf4_double_quant = bool_field(options, "doubleQuant", false);
    result.options.cpu = string_field(options, "cpu", "");
    result.options.compute_dtype = string_field(options, "computeDtype", "f32");
    if (!options.Get("threads").IsUndefined()) {
      const int threads = int_field(options, "threads");
      if (threads < 0) throw type_error(env, "threads must be >= 0");
      result.options.threads = size_t(threads);
    }
  }
  return result;
}

// The classes of one environment (the main thread or a worker thread), freed with it.
struct AddonData {
  Napi::FunctionReference model;
  Napi::FunctionReference cancel_token;
  Napi::FunctionReference lora;
  Napi::FunctionReference batch;
};

// ---- A promise-returning worker ------------------------------------------------------------------

class PromiseWorker : public Napi::AsyncWorker {
 public:
  explicit PromiseWorker(Napi::Env env, const char* name)
      : Napi::AsyncWorker(env, name), deferred_(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise Promise() { return deferred_.Promise(); }

 protected:
  void OnOK() override { deferred_.Resolve(Result(Env())); }
  void OnError(const Napi::Error& error) override {
    Napi::Object value = error.Value();
    value.Set("code", error_code_name(code_));
    deferred_.Reject(value);
  }
  // Called off the JS thread, in the catch block: keeps the code for OnError.
  void Fail(const std::exception& error) {
    code_ = caught_code();
    SetError(error.what());
  }
  virtual Napi::Value Result(Napi::Env env) = 0;
  Napi::Promise::Deferred deferred_;
  ErrorCode code_ = ErrorCode::EngineFailed;
};

// Runs `body` off the JS thread, turning any C++ exception into a promise rejected with its code.
#define TUNEKIT_EXECUTE(body)                 \
  void Execute() override {                   \
    try {                                     \
      body;                                   \
    } catch (const std::exception& error) {   \
      Fail(error);                            \
    }                                         \
  }

// ---- CancelToken ---------------------------------------------------------------------------------

// Cancels a generation (cancel) or ends one sequence of a batch (stop(index)); the engine checks
// both between tokens.
struct StopFlags {
  std::atomic<bool> cancelled{false};
  std::mutex mutex;
  std::vector<bool> stopped;
  bool is_stopped(size_t index) {
    std::lock_guard<std::mutex> lock(mutex);
    return index < stopped.size() && stopped[index];
  }
};

class CancelToken : public Napi::ObjectWrap<CancelToken> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "CancelToken",
                       {InstanceMethod<&CancelToken::Cancel>("cancel"), InstanceMethod<&CancelToken::Stop>("stop")});
  }
  explicit CancelToken(const Napi::CallbackInfo& info)
      : Napi::ObjectWrap<CancelToken>(info), flags_(std::make_shared<StopFlags>()) {}
  std::shared_ptr<StopFlags> flags() const { return flags_; }

 private:
  void Cancel(const Napi::CallbackInfo&) { flags_->cancelled.store(true); }
  void Stop(const Napi::CallbackInfo& info) {
    if (!info[0].IsNumber()) throw type_error(info.Env(), "stop needs a sequence index");
    const double index = info[0].As<Napi::Number>().DoubleValue();
    if (index < 0 || index > 1e6 || index != double(size_t(index)))
      throw range_error(info.Env(), "stop needs a sequence index");
    std::lock_guard<std::mutex> lock(flags_->mutex);
    if (flags_->stopped.size() <= size_t(index)) flags_->stopped.resize(size_t(index) + 1);
    flags_->stopped[size_t(index)] = true;
  }
  std::shared_ptr<StopFlags> flags_;
};

// ---- Lora: a set of adapters held apart from the model's attached one ----------------------------

// Made by model.createLora(entries); passed where an adapter is chosen (logits, loss, a batch's
// sequences), so that many adapters stay resident on one base. It belongs to the model that made it.
class Lora : public Napi::ObjectWrap<Lora> {
 public:
  static Napi::Function Define(Napi::Env env) { return DefineClass(env, "Lora", {}); }
  explicit Lora(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Lora>(info) {
    if (info.Length() != 1 || !info[0].IsExternal()) throw type_error(info.Env(), "Lora is created by model.createLora()");
    const auto* made = info[0].As<Napi::External<std::pair<const LlamaModel*, std::shared_ptr<const LoraSet>>>>().Data();
    owner_ = made->first;
    set_ = made->second;
  }
  const LlamaModel* owner() const { return owner_; }
  std::shared_ptr<const LoraSet> set() const { return set_; }

 private:
  const LlamaModel* owner_ = nullptr;
  std::shared_ptr<const LoraSet> set_;
};

// The adapters an `adapter` argument names: true or undefined, the model's attached set (a snapshot);
// false or null, none; a Lora made by this model, that one.
std::shared_ptr<const LoraSet> adapter_argument(const Napi::Env& env, const LlamaModel& model, const Napi::Value& value) {
  if (value.IsUndefined()) return model.lora();
  if (value.IsNull()) return nullptr;
  if (value.IsBoolean()) return value.As<Napi::Boolean>().Value() ? model.lora() : nullptr;
  const AddonData* data = env.GetInstanceData<AddonData>();
  if (value.IsObject() && value.As<Napi::Object>().InstanceOf(data->lora.Value())) {
    const Lora* lora = Lora::Unwrap(value.As<Napi::Object>());
    if (lora->owner() != &model) throw type_error(env, "the adapter was made by another model");
    return lora->set();
  }
  throw type_error(env, "adapter must be a boolean, null or a Lora from this model's createLora()");
}

// ---- Model ---------------------------------------------------------------------------------------

class Model : public Napi::ObjectWrap<Model> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Model",
                       {InstanceMethod<&Model::Logits>("logits"), InstanceMethod<&Model::Loss>("loss"),
                        InstanceMethod<&Model::Generate>("generate"), InstanceMethod<&Model::SetLora>("setLora"),
                        InstanceMethod<&Model::GetLora>("getLora"),
                        InstanceMethod<&Model::MergedWeight>("mergedWeight"),
                        InstanceMethod<&Model::LossAndGradients>("lossAndGradients"),
                        InstanceMethod<&Model::ForwardBackward>("forwardBackward"),
                        InstanceMethod<&Model::OptimizerStep>("optimizerStep"),
                        InstanceMethod<&Model::GetOptimizerState>("getOptimizerState"),
                        InstanceMethod<&Model::SetOptimizerState>("setOptimizerState"),
                        InstanceMethod<&Model::SeedDropout>("seedDropout"),
                        InstanceMethod<&Model::CreateLora>("createLora"),
                        InstanceMethod<&Model::CreateBatch>("createBatch"),
                        InstanceMethod<&Model::WeightBytes>("weightBytes"), InstanceMethod<&Model::Info>("info"),
                        InstanceMethod<&Model::Dispose>("dispose")});
  }
  explicit Model(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Model>(info) {
    if (info.Length() != 1 || !info[0].IsExternal())
      throw type_error(info.Env(), "Model is created by loadModel()");
    model_ = *info[0].As<Napi::External<std::shared_ptr<LlamaModel>>>().Data();
  }

 private:
  std::shared_ptr<LlamaModel> live(const Napi::Env& env) const {
    if (!model_) throw coded_error(env, ErrorCode::Disposed, "the model has been disposed");
    return model_;
  }

  Napi::Value Logits(const Napi::CallbackInfo& info);
  Napi::Value Loss(const Napi::CallbackInfo& info);
  Napi::Value Generate(const Napi::CallbackInfo& info);
  Napi::Value SetLora(const Napi::CallbackInfo& info);
  Napi::Value GetLora(const Napi::CallbackInfo& info);
  Napi::Value CreateLora(const Napi::CallbackInfo& info);
  Napi::Value CreateBatch(const Napi::CallbackInfo& info);
  Napi::Value MergedWeight(const Napi::CallbackInfo& info);
  Napi::Value LossAndGradients(const Napi::CallbackInfo& info);
  Napi::Value ForwardBackward(const Napi::CallbackInfo& info);
  Napi::Value OptimizerStep(const Napi::CallbackInfo& info);
  Napi::Value GetOptimizerState(const Napi::CallbackInfo& info);
  Napi::Value SetOptimizerState(const Napi::CallbackInfo& info);
  Napi::Value SeedDropout(const Napi::CallbackInfo& info);

  Napi::Value WeightBytes(const Napi::CallbackInfo& info) {
    const tunekit::WeightBytes bytes = live(info.Env())->weight_bytes();
    Napi::Object result = Napi::Object::New(info.Env());
    result.Set("linear", double(bytes.linear));
    result.Set("embedding", double(bytes.embedding));
    result.Set("head", double(bytes.head));
    result.Set("norm", double(bytes.norm));
    return result;
  }

  Napi::Value Info(const Napi::CallbackInfo& info) {
    std::shared_ptr<LlamaModel> model = live(info.Env());
    Napi::Object result = Napi::Object::New(info.Env());
    result.Set("kernels", model->kernels().name);
    result.Set("computeDtype", model->compute_dtype());
    result.Set("threads", double(model->threads()));
    return result;
  }

  // Drops this handle's reference; running calls keep the weights alive until they finish.
  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    model_.reset();
    return info.Env().Undefined();
  }

  std::shared_ptr<LlamaModel> model_;
};

class LoadWorker : public PromiseWorker {
 public:
  LoadWorker(Napi::Env env, LoadSpec spec) : PromiseWorker(env, "tunekit.loadModel"), spec_(std::move(spec)) {}
  TUNEKIT_EXECUTE(model_ = std::make_shared<LlamaModel>(std::move(spec_.config), spec_.files, spec_.tensors,
                                                        spec_.options))
  Napi::Value Result(Napi::Env env) override {
    return env.GetInstanceData<AddonData>()->model.New({Napi::External<std::shared_ptr<LlamaModel>>::New(env, &model_)});
  }

 private:
  LoadSpec spec_;
  std::shared_ptr<LlamaModel> model_;
};

class LogitsWorker : public PromiseWorker {
 public:
  LogitsWorker(Napi::Env env, std::shared_ptr<LlamaModel> model, std::vector<int32_t> tokens,
               std::shared_ptr<const LoraSet> lora)
      : PromiseWorker(env, "tunekit.logits"), model_(std::move(model)), tokens_(std::move(tokens)), lora_(std::move(lora)) {}
  TUNEKIT_EXECUTE(logits_ = model_->logits(tokens_, lora_.get()))
  Napi::Value Result(Napi::Env env) override {
    Napi::Float32Array out = float_array(env, logits_);
    return out;
  }

 private:
  std::shared_ptr<LlamaModel> model_;
  std::vector<int32_t> tokens_;
  std::shared_ptr<const LoraSet> lora_;
  std::vector<float> logits_;
};

// logits(inputIds, adapter?)
Napi::Value Model::Logits(const Napi::CallbackInfo& info) {
  std::shared_ptr<LlamaModel> model = live(info.Env());
  auto* worker = new LogitsWorker(info.Env(), model, int32_vector(info.Env(), info[0], "inputIds"),
                                  adapter_argument(info.Env(), *model, info[1]));
  worker->Queue();
  return worker->Promise();
}

class LossWorker : public PromiseWorker {
 public:
  LossWorker(Napi::Env env, std::shared_ptr<LlamaModel> model, std::vector<int32_t> tokens, std::vector<int32_t> labels,
             std::vector<int> lengths, std::shared_ptr<const LoraSet> lora)
      : PromiseWorker(env, "tunekit.loss"), model_(std::move(model)), tokens_(std::move(tokens)),
        labels_(std::move(labels)), lengths_(std::move(lengths)), lora_(std::move(lora)) {}
  TUNEKIT_EXECUTE(result_ = model_->loss(tokens_, labels_, lengths_, lora_.get()))
  Napi::Value Result(Napi::Env env) override {
    Napi::Object out = Napi::Object::New(env);
    out.Set("loss", result_.loss);
    out.Set("tokens", double(result_.tokens));
    out.Set("correct", double(result_.correct));
    return out;
  }

 private:
  std::shared_ptr<LlamaModel> model_;
  std::vector<int32_t> tokens_, labels_;
  std::vector<int> lengths_;
  std::shared_ptr<const LoraSet> lora_;
  LlamaModel::LossResult result_;
};

// loss(inputIds, labels, adapter?, sequenceLengths?)
Napi::Value Model::Loss(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::vector<int32_t> lengths;
  if (!info[3].IsUndefined()) lengths = int32_vector(env, info[3], "sequenceLengths");
  std::shared_ptr<LlamaModel> model = live(env);
  auto* worker = new LossWorker(env, model, int32_vector(env, info[0], "inputIds"),
                                int32_vector(env, info[1], "labels"), std::vector<int>(lengths.begin(), lengths.end()),
                                adapter_argument(env, *model, info[2]));
  worker->Queue();
  return worker->Promise();
}

Napi::Object generation_object(Napi::Env env, const Generation& generation, bool with_logits) {
  Napi::Object out = Napi::Object::New(env);
  Napi::Int32Array tokens = Napi::Int32Array::New(env, generation.tokens.size());
  std::copy(generation.tokens.begin(), generation.tokens.end(), tokens.Data());
  out.Set("tokenIds", tokens);
  const char* reason = generation.finish == FinishReason::Stop    ? "stop"
                       : generation.finish == FinishReason::Abort ? "abort"
                                                                  : "length";
  out.Set("finishReason", reason);
  if (with_logits) {
    Napi::Float32Array logits = float_array(env, generation.logits);
    out.Set("logits", logits);
  }
  return out;
}

// One or several prompts; streamed tokens reach `on_token(index, tokenId)` on the JS thread.
class GenerateWorker : public PromiseWorker {
 public:
  GenerateWorker(Napi::Env env, std::shared_ptr<LlamaModel> model, std::vector<std::vector<int32_t>> prompts,
                 SamplingOptions options, std::shared_ptr<StopFlags> flags, Napi::Function on_token, bool batch)
      : PromiseWorker(env, "tunekit.generate"), model_(std::move(model)), prompts_(std::move(prompts)),
        options_(std::move(options)), flags_(std::move(flags)), batch_(batch) {
    if (!on_token.IsEmpty())
      on_token_ = Napi::ThreadSafeFunction::New(env, on_token, "tunekit.generate.token", 0, 1);
  }
  ~GenerateWorker() override {
    if (on_token_) on_token_.Release();
  }
  TUNEKIT_EXECUTE(results_ = model_->generate_batch(
                      prompts_, options_, flags_->cancelled, [this](size_t index) { return flags_->is_stopped(index); },
                      [this](size_t index, int32_t token) {
                        if (!on_token_) return;
                        on_token_.BlockingCall([index, token, batch = batch_](Napi::Env env, Napi::Function callback) {
                          if (batch)
                            callback.Call({Napi::Number::New(env, double(index)), Napi::Number::New(env, token)});
                          else
                            callback.Call({Napi::Number::New(env, token)});
                        });
                      }))
  Napi::Value Result(Napi::Env env) override {
    if (!batch_) return generation_object(env, results_[0], options_.collect_logits);
    Napi::Array out = Napi::Array::New(env, results_.size());
    for (size_t i = 0; i < results_.size(); i++) out.Set(uint32_t(i), generation_object(env, results_[i], options_.collect_logits));
    return out;
  }

 private:
  std::shared_ptr<LlamaModel> model_;
  std::vector<std::vector<int32_t>> prompts_;
  SamplingOptions options_;
  std::shared_ptr<StopFlags> flags_;
  bool batch_;
  Napi::ThreadSafeFunction on_token_;
  std::vector<Generation> results_;
};

SamplingOptions parse_sampling(const Napi::Env& env, const Napi::Value& value) {
  if (!value.IsObject()) throw type_error(env, "options must be an object");
  Napi::Object object = value.As<Napi::Object>();
  SamplingOptions options;
  options.max_tokens = int_field(object, "maxTokens");
  if (options.max_tokens < 0) throw range_error(env, "maxTokens must be >= 0");
  options.temperature = float(number_field(object, "temperature"));
  options.top_k = int_field(object, "topK");
  options.top_p = float(number_field(object, "topP"));
  if (!(options.temperature >= 0.0f) || options.top_k < 0 || !(options.top_p > 0.0f && options.top_p <= 1.0f))
    throw range_error(env, "temperature must be >= 0, topK >= 0 and topP in (0, 1]");
  const double seed = number_field(object, "seed");
  if (seed < 0 || seed > 9007199254740991.0 || seed != double(uint64_t(seed)))
    throw range_error(env, "seed must be an integer >= 0");
  options.seed = uint64_t(seed);
  options.stop_tokens = int32_vector(env, object.Get("stopTokens"), "stopTokens");
  options.collect_logits = bool_field(object, "collectLogits", false);
  options.adapter = bool_field(object, "adapter", true);
  if (!object.Get("topLogprobs").IsUndefined()) {
    options.top_logprobs = int_field(object, "topLogprobs");
    if (options.top_logprobs < -1 || options.top_logprobs > 20) throw range_error(env, "topLogprobs must be in [-1, 20]");
  }
  return options;
}

// generate(inputIds, options, onToken?, cancelToken?) and generateBatch(inputIds[], options, onToken?, cancelToken?)
Napi::Value Model::Generate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const bool batch = info[0].IsArray();
  std::vector<std::vector<int32_t>> prompts;
  if (batch) {
    Napi::Array array = info[0].As<Napi::Array>();
    if (array.Length() == 0) throw range_error(env, "generateBatch needs at least one prompt");
    for (uint32_t i = 0; i < array.Length(); i++) prompts.push_back(int32_vector(env, array.Get(i), "inputIds[i]"));
  } else {
    prompts.push_back(int32_vector(env, info[0], "inputIds"));
  }
  SamplingOptions options = parse_sampling(env, info[1]);
  Napi::Function on_token = info[2].IsFunction() ? info[2].As<Napi::Function>() : Napi::Function();
  std::shared_ptr<StopFlags> flags = std::make_shared<StopFlags>();
  if (!info[3].IsUndefined()) {
    const AddonData* data = env.GetInstanceData<AddonData>();
    if (!info[3].IsObject() || !info[3].As<Napi::Object>().InstanceOf(data->cancel_token.Value()))
      throw type_error(env, "the fourth argument must be a CancelToken");
    flags = CancelToken::Unwrap(info[3].As<Napi::Object>())->flags();
  }
  auto* worker =
      new GenerateWorker(env, live(env), std::move(prompts), std::move(options), flags, on_token, batch);
  worker->Queue();
  return worker->Promise();
}

// ---- Batch: continuous batching (model/batch.h) --------------------------------------------------

// A DecodeBatch and the model it runs on, kept alive by the JS object and by a step in flight.
struct BatchState {
  std::shared_ptr<LlamaModel> model;
  DecodeBatch batch;
  explicit BatchState(std::shared_ptr<LlamaModel> owner) : model(std::move(owner)), batch(*model) {}
};

class StepWorker : public PromiseWorker {
 public:
  StepWorker(Napi::Env env, std::shared_ptr<BatchState> state)
      : PromiseWorker(env, "tunekit.step"), state_(std::move(state)) {}
  TUNEKIT_EXECUTE(events_ = state_->batch.step())
  Napi::Value Result(Napi::Env env) override {
    Napi::Array out = Napi::Array::New(env, events_.size());
    for (size_t i = 0; i < events_.size(); i++) {
      const StepEvent& event = events_[i];
      Napi::Object entry = Napi::Object::New(env);
      entry.Set("id", double(event.id));
      if (event.has_token) {
        entry.Set("tokenId", event.token);
        if (event.reported_logprob) entry.Set("logprob", event.logprob);
        if (!event.top.empty()) {
          Napi::Int32Array ids = Napi::Int32Array::New(env, event.top.size());
          Napi::Float32Array logprobs = Napi::Float32Array::New(env, event.top.size());
          for (size_t j = 0; j < event.top.size(); j++) {
            ids[j] = event.top[j].first;
            logprobs[j] = event.top[j].second;
          }
          entry.Set("topIds", ids);
          entry.Set("topLogprobs", logprobs);
        }
        if (!event.logits.empty()) {
          Napi::Float32Array logits = float_array(env, event.logits);
          entry.Set("logits", logits);
        }
      }
      if (event.finished)
        entry.Set("finishReason", event.finish == FinishReason::Stop    ? "stop"
                                  : event.finish == FinishReason::Abort ? "abort"
                                                                        : "length");
      out.Set(uint32_t(i), entry);
    }
    return out;
  }

 private:
  std::shared_ptr<BatchState> state_;
  std::vector<StepEvent> events_;
};

class Batch : public Napi::ObjectWrap<Batch> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Batch",
                       {InstanceMethod<&Batch::Add>("add"), InstanceMethod<&Batch::Stop>("stop"),
                        InstanceMethod<&Batch::Cancel>("cancel"), InstanceMethod<&Batch::Step>("step"),
                        InstanceMethod<&Batch::Size>("size")});
  }
  explicit Batch(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Batch>(info) {
    if (info.Length() != 1 || !info[0].IsExternal()) throw type_error(info.Env(), "Batch is created by model.createBatch()");
    state_ = std::make_shared<BatchState>(*info[0].As<Napi::External<std::shared_ptr<LlamaModel>>>().Data());
  }

 private:
  // add(inputIds: Int32Array, options, adapter?: boolean | Lora | null) → the sequence's id
  Napi::Value Add(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    std::vector<int32_t> prompt = int32_vector(env, info[0], "inputIds");
    SamplingOptions options = parse_sampling(env, info[1]);
    std::shared_ptr<const LoraSet> lora = adapter_argument(env, *state_->model, info[2]);
    try {
      return Napi::Number::New(env, double(state_->batch.add(std::move(prompt), options, std::move(lora))));
    } catch (const std::exception& error) {
      throw native_error(env, error);
    }
  }
  uint64_t id_argument(const Napi::CallbackInfo& info) {
    if (!info[0].IsNumber()) throw type_error(info.Env(), "a sequence id is needed");
    const double id = info[0].As<Napi::Number>().DoubleValue();
    if (!(id >= 1 && id <= 9007199254740991.0) || id != double(uint64_t(id)))
      throw range_error(info.Env(), "a sequence id is needed");
    return uint64_t(id);
  }
  void Stop(const Napi::CallbackInfo& info) { state_->batch.stop(id_argument(info)); }
  void Cancel(const Napi::CallbackInfo& info) { state_->batch.cancel(id_argument(info)); }
  // step() → Promise<{ id, tokenId?, logprob?, topIds?, topLogprobs?, logits?, finishReason? }[]>
  Napi::Value Step(const Napi::CallbackInfo& info) {
    auto* worker = new StepWorker(info.Env(), state_);
    worker->Queue();
    return worker->Promise();
  }
  Napi::Value Size(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), double(state_->batch.size())); }

  std::shared_ptr<BatchState> state_;
};

// createBatch(): an empty Batch on this model.
Napi::Value Model::CreateBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::shared_ptr<LlamaModel> model = live(env);
  return env.GetInstanceData<AddonData>()->batch.New({Napi::External<std::shared_ptr<LlamaModel>>::New(env, &model)});
}

int projection_index(const Napi::Env& env, const std::string& name) {
  for (int p = 0; p < kProjections; p++)
    if (name == kProjectionNames[p]) return p;
  throw type_error(env, "unknown projection \"" + name + "\" (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj)");
}

std::shared_ptr<LoraSet> parse_lora_set(const Napi::Env& env, const LlamaModel& model, const Napi::Array& entries);

// setLora(adapters: { layer, projection, rank, scale, a: Float32Array, b: Float32Array }[] | null)
// replaces every adapter at once.
Napi::Value Model::SetLora(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::shared_ptr<LlamaModel> model = live(env);
  if (info[0].IsNull() || info[0].IsUndefined()) {
    model->set_lora(nullptr);
    return env.Undefined();
  }
  if (!info[0].IsArray()) throw type_error(env, "setLora needs an array of adapters or null");
  std::shared_ptr<LoraSet> set = parse_lora_set(env, *model, info[0].As<Napi::Array>());
  try {
    model->set_lora(std::move(set));
  } catch (const std::exception& error) {
    throw native_error(env, error);
  }
  return env.Undefined();
}

// createLora(adapters): the same entries as setLora, held apart (a Lora) instead of attached.
Napi::Value Model::CreateLora(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::shared_ptr<LlamaModel> model = live(env);
  if (!info[0].IsArray()) throw type_error(env, "createLora needs an array of adapters");
  std::pair<const LlamaModel*, std::shared_ptr<const LoraSet>> made{model.get(),
                                                                     parse_lora_set(env, *model, info[0].As<Napi::Array>())};
  return env.GetInstanceData<AddonData>()->lora.New(
      {Napi::External<std::pair<const LlamaModel*, std::shared_ptr<const LoraSet>>>::New(env, &made)});
}

// Entries { layer, projection, rank, scale, a: Float32Array, b: Float32Array }, checked against the
// model's shapes, as one set of adapters.
std::shared_ptr<LoraSet> parse_lora_set(const Napi::Env& env, const LlamaModel& model, const Napi::Array& entries) {
  auto set = std::make_shared<LoraSet>();
  set->layers.resize(model.config().num_layers);
  for (uint32_t i = 0; i < entries.Length(); i++) {
    if (!entries.Get(i).IsObject()) throw type_error(env, "adapters must be objects");
    Napi::Object entry = entries.Get(i).As<Napi::Object>();
    const int layer = int_field(entry, "layer");
    if (layer < 0 || layer >= model.config().num_layers) throw range_error(env, "no layer " + std::to_string(layer));
    const int p = projection_index(env, string_field(entry, "projection", ""));
    auto adapter = std::make_shared<LoraAdapter>();
    adapter->rank = int_field(entry, "rank");
    adapter->scale = float(number_field(entry, "scale"));
    if (adapter->rank <= 0 || !std::isfinite(adapter->scale))
      throw range_error(env, "rank must be > 0 and scale finite");
    auto a = typed_array<Napi::Float32Array>(env, entry.Get("a"), "a", napi_float32_array, "Float32Array");
    auto b = typed_array<Napi::Float32Array>(env, entry.Get("b"), "b", napi_float32_array, "Float32Array");
    const auto [in, out] = model.projection_shape(p);
    const std::string where = "layer " + std::to_string(layer) + " " + kProjectionNames[p];
    if (a.ElementLength() != size_t(adapter->rank) * in)
      throw coded_error(env, ErrorCode::ShapeMismatch, where + ": A must hold rank × " + std::to_string(in) + " values");
    if (b.ElementLength() != out * size_t(adapter->rank))
      throw coded_error(env, ErrorCode::ShapeMismatch, where + ": B must hold " + std::to_string(out) + " × rank values");
    adapter->a.assign(a.Data(), a.Data() + a.ElementLength());
    adapter->b.assign(b.Data(), b.Data() + b.ElementLength());
    adapter->transpose_b();
    if (set->layers[layer][p]) throw range_error(env, where + " is given twice");
    set->layers[layer][p] = std::move(adapter);
  }
  return set;
}

Napi::Value Model::GetLora(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::shared_ptr<const LoraSet> set = live(env)->lora();
  Napi::Array out = Napi::Array::New(env);
  if (!set) return out;
  uint32_t index = 0;
  for (size_t layer = 0; layer < set->layers.size(); layer++)
    for (int p = 0; p < kProjections; p++) {
      const LoraAdapter* adapter = set->layers[layer][p].get();
      if (!adapter) continue;
      Napi::Object entry = Napi::Object::New(env);
      entry.Set("layer", double(layer));
      entry.Set("projection", kProjectionNames[p]);
      entry.Set("rank", adapter->rank);
      entry.Set("scale", adapter->scale);
      Napi::Float32Array a = float_array(env, adapter->a);
      Napi::Float32Array b = float_array(env, adapter->b);
      entry.Set("a", a);
      entry.Set("b", b);
      out.Set(index++, entry);
    }
  return out;
}

class MergedWeightWorker : public PromiseWorker {
 public:
  MergedWeightWorker(Napi::Env env, std::shared_ptr<LlamaModel> model, int layer, int projection)
      : PromiseWorker(env, "tunekit.mergedWeight"), model_(std::move(model)), layer_(layer), projection_(projection) {}
  TUNEKIT_EXECUTE(weight_ = model_->merged_weight(layer_, projection_))
  Napi::Value Result(Napi::Env env) override {
    Napi::Float32Array out = float_array(env, weight_);
    return out;
  }

 private:
  std::shared_ptr<LlamaModel> model_;
  int layer_, projection_;
  std::vector<float> weight_;
};

// mergedWeight(layer, projection): W + scale · B A, [out × in], the base dequantized.
Napi::Value Model::MergedWeight(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsNumber() || !info[1].IsString()) throw type_error(env, "mergedWeight(layer, projection)");
  const int p = projection_index(env, info[1].As<Napi::String>().Utf8Value());
  auto* worker = new MergedWeightWorker(env, live(env), int(info[0].As<Napi::Number>().Int32Value()), p);
  worker->Queue();
  return worker->Promise();
}

class GradientsWorker : public PromiseWorker {
 public:
  GradientsWorker(Napi::Env env, std::shared_ptr<LlamaModel> model, std::vector<int32_t> tokens,
                  std::vector<int32_t> labels, std::vector<int> lengths, bool checkpointing)
      : PromiseWorker(env, "tunekit.lossAndGradients"), model_(std::move(model)), tokens_(std::move(tokens)),
        labels_(std::move(labels)), lengths_(std::move(lengths)), checkpointing_(checkpointing) {}
  TUNEKIT_EXECUTE(result_ = model_->loss_and_gradients(tokens_, labels_, lengths_, checkpointing_))
  Napi::Value Result(Napi::Env env) override {
    Napi::Object out = Napi::Object::New(env);
    out.Set("loss", result_.loss);
    out.Set("tokens", double(result_.tokens));
    Napi::Array gradients = Napi::Array::New(env);
    uint32_t index = 0;
    for (size_t layer = 0; layer < result_.layers.size(); layer++)
      for (int p = 0; p < kProjections; p++) {
        const LlamaModel::LoraGradient& gradient = result_.layers[layer][p];
        if (gradient.a.empty()) continue;
        Napi::Object entry = Napi::Object::New(env);
        entry.Set("layer", double(layer));
        entry.Set("projection", kProjectionNames[p]);
        Napi::Float32Array a = float_array(env, gradient.a);
        Napi::Float32Array b = float_array(env, gradient.b);
        entry.Set("a", a);
        entry.Set("b", b);
        gradients.Set(index++, entry);
      }
    out.Set("gradients", gradients);
    return out;
  }

 private:
  std::shared_ptr<LlamaModel> model_;
  std::vector<int32_t> tokens_, labels_;
  std::vector<int> lengths_;
  bool checkpointing_;
  LlamaModel::Gradients result_;
};

// lossAndGradients(inputIds: Int32Array, labels: Int32Array, sequenceLengths: Int32Array, checkpointing?)
Napi::Value Model::LossAndGradients(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::vector<int32_t> lengths = int32_vector(env, info[2], "sequenceLengths");
  auto* worker = new GradientsWorker(env, live(env), int32_vector(env, info[0], "inputIds"),
                                     int32_vector(env, info[1], "labels"),
                                     std::vector<int>(lengths.begin(), lengths.end()),
                                     info[3].IsBoolean() && info[3].As<Napi::Boolean>().Value());
  worker->Queue();
  return worker->Promise();
}

class ForwardBackwardWorker : public PromiseWorker {
 public:
  ForwardBackwardWorker(Napi::Env env, std::shared_ptr<LlamaModel> model, std::vector<int32_t> tokens,
                        std::vector<int32_t> labels, std::vector<int> lengths, float dropout, bool checkpointing)
      : PromiseWorker(env, "tunekit.forwardBackward"), model_(std::move(model)), tokens_(std::move(tokens)),
        labels_(std::move(labels)), lengths_(std::move(lengths)), dropout_(dropout), checkpointing_(checkpointing) {}
  TUNEKIT_EXECUTE(result_ = model_->forward_backward(tokens_, labels_, lengths_, dropout_, checkpointing_))
  Napi::Value Result(Napi::Env env) override {
    Napi::Object out = Napi::Object::New(env);
    out.Set("loss", result_.first);
    out.Set("tokens", double(result_.second));
    return out;
  }

 private:
  std::shared_ptr<LlamaModel> model_;
  std::vector<int32_t> tokens_, labels_;
  std::vector<int> lengths_;
  float dropout_;
  bool checkpointing_;
  std::pair<double, size_t> result_;
};

// forwardBackward(inputIds, labels, sequenceLengths, dropout, checkpointing?)
Napi::Value Model::ForwardBackward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::vector<int32_t> lengths = int32_vector(env, info[2], "sequenceLengths");
  if (!info[3].IsNumber()) throw type_error(env, "dropout must be a number");
  auto* worker = new ForwardBackwardWorker(env, live(env), int32_vector(env, info[0], "inputIds"),
                                           int32_vector(env, info[1], "labels"),
                                           std::vector<int>(lengths.begin(), lengths.end()),
                                           info[3].As<Napi::Number>().FloatValue(),
                                           info[4].IsBoolean() && info[4].As<Napi::Boolean>().Value());
  worker->Queue();
  return worker->Promise();
}

class OptimizerWorker : public PromiseWorker {
 public:
  OptimizerWorker(Napi::Env env, std::shared_ptr<LlamaModel> model, LlamaModel::AdamW options)
      : PromiseWorker(env, "tunekit.optimizerStep"), model_(std::move(model)), options_(options) {}
  TUNEKIT_EXECUTE(norm_ = model_->optimizer_step(options_))
  Napi::Value Result(Napi::Env env) override {
    Napi::Object out = Napi::Object::New(env);
    out.Set("gradNorm", norm_);
    return out;
  }

 private:
  std::shared_ptr<LlamaModel> model_;
  LlamaModel::AdamW options_;
  double norm_ = 0.0;
};

// optimizerStep({ learningRate, weightDecay, beta1, beta2, eps, maxGradNorm })
Napi::Value Model::OptimizerStep(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsObject()) throw type_error(env, "optimizerStep needs options");
  Napi::Object object = info[0].As<Napi::Object>();
  LlamaModel::AdamW options;
  options.learning_rate = float(number_field(object, "learningRate"));
  options.weight_decay = float(number_field(object, "weightDecay"));
  options.beta1 = float(number_field(object, "beta1"));
  options.beta2 = float(number_field(object, "beta2"));
  options.eps = float(number_field(object, "eps"));
  options.max_grad_norm = float(number_field(object, "maxGradNorm"));
  if (!(options.learning_rate >= 0) || !(options.weight_decay >= 0) || !(options.beta1 >= 0 && options.beta1 < 1) ||
      !(options.beta2 >= 0 && options.beta2 < 1) || !(options.eps > 0) || !(options.max_grad_norm >= 0))
    throw range_error(env, "learningRate, weightDecay, eps >= 0 (eps > 0), betas in [0, 1), maxGradNorm >= 0");
  auto* worker = new OptimizerWorker(env, live(env), options);
  worker->Queue();
  return worker->Promise();
}

// { step, random: [4 × hex], moments: [{ layer, projection, expAvgA, expAvgB, expAvgSqA, expAvgSqB }] }
Napi::Value Model::GetOptimizerState(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const LlamaModel::OptimizerState state = live(env)->optimizer_state();
  Napi::Object out = Napi::Object::New(env);
  out.Set("step", double(state.step));
  Napi::Array random = Napi::Array::New(env, 4);
  for (uint32_t i = 0; i < 4; i++) {
    char text[17];
    std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(state.random[i]));
    random.Set(i, text);
  }
  out.Set("random", random);
  Napi::Array moments = Napi::Array::New(env);
  uint32_t index = 0;
  for (size_t l = 0; l < state.exp_avg.size(); l++)
    for (int p = 0; p < kProjections; p++) {
      if (state.exp_avg[l][p].a.empty()) continue;
      Napi::Object entry = Napi::Object::New(env);
      entry.Set("layer", double(l));
      entry.Set("projection", kProjectionNames[p]);
      entry.Set("expAvgA", float_array(env, state.exp_avg[l][p].a));
      entry.Set("expAvgB", float_array(env, state.exp_avg[l][p].b));
      entry.Set("expAvgSqA", float_array(env, state.exp_avg_sq[l][p].a));
      entry.Set("expAvgSqB", float_array(env, state.exp_avg_sq[l][p].b));
      moments.Set(index++, entry);
    }
  out.Set("moments", moments);
  return out;
}

Napi::Value Model::SetOptimizerState(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::shared_ptr<LlamaModel> model = live(env);
  if (!info[0].IsObject()) throw type_error(env, "setOptimizerState needs a state object");
  Napi::Object object = info[0].As<Napi::Object>();
  LlamaModel::OptimizerState state;
  const double step = number_field(object, "step");
  if (step < 0 || step != double(int64_t(step))) throw range_error(env, "step must be an integer >= 0");
  state.step = int64_t(step);
  Napi::Value random = object.Get("random");
  if (!random.IsArray() || random.As<Napi::Array>().Length() != 4)
    throw type_error(env, "random must hold 4 hex words");
  for (uint32_t i = 0; i < 4; i++) {
    Napi::Value word = random.As<Napi::Array>().Get(i);
    const std::string text = word.IsString() ? word.As<Napi::String>().Utf8Value() : "";
    if (text.empty() || text.size() > 16 || text.find_first_not_of("0123456789abcdef") != std::string::npos)
      throw type_error(env, "random must hold 4 hex words");
    state.random[i] = std::stoull(text, nullptr, 16);
  }
  Napi::Value moments = object.Get("moments");
  if (!moments.IsArray()) throw type_error(env, "moments must be an array");
  Napi::Array entries = moments.As<Napi::Array>();
  if (entries.Length() > 0) {
    const size_t layers = size_t(model->config().num_layers);
    state.exp_avg.resize(layers);
    state.exp_avg_sq.resize(layers);
  }
  auto copy = [&](const Napi::Object& entry, const char* name, std::vector<float>& into) {
    auto values = typed_array<Napi::Float32Array>(env, entry.Get(name), name, napi_float32_array, "Float32Array");
    into.assign(values.Data(), values.Data() + values.ElementLength());
  };
  for (uint32_t i = 0; i < entries.Length(); i++) {
    if (!entries.Get(i).IsObject()) throw type_error(env, "moments must hold objects");
    Napi::Object entry = entries.Get(i).As<Napi::Object>();
    const int layer = int_field(entry, "layer");
    if (layer < 0 || layer >= model->config().num_layers) throw range_error(env, "no such layer");
    const int p = projection_index(env, string_field(entry, "projection", ""));
    copy(entry, "expAvgA", state.exp_avg[layer][p].a);
    copy(entry, "expAvgB", state.exp_avg[layer][p].b);
    copy(entry, "expAvgSqA", state.exp_avg_sq[layer][p].a);
    copy(entry, "expAvgSqB", state.exp_avg_sq[layer][p].b);
  }
  try {
    model->set_optimizer_state(state);
  } catch (const std::exception& error) {
    throw native_error(env, error);
  }
  return env.Undefined();
}

Napi::Value Model::SeedDropout(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsNumber()) throw type_error(env, "seedDropout needs a seed");
  live(env)->seed_dropout(uint64_t(std::max(0.0, info[0].As<Napi::Number>().DoubleValue())));
  return env.Undefined();
}

// ---- Module functions ----------------------------------------------------------------------------

Napi::Value LoadModel(const Napi::CallbackInfo& info) {
  if (!info[0].IsObject()) throw type_error(info.Env(), "loadModel needs a spec object");
  auto* worker = new LoadWorker(info.Env(), parse_load_spec(info.Env(), info[0].As<Napi::Object>()));
  worker->Queue();
  return worker->Promise();
}

Napi::Value CpuFeatures(const Napi::CallbackInfo& info) {
  const tunekit::CpuFeatures features = cpu_features();
  Napi::Object result = Napi::Object::New(info.Env());
  result.Set("avx2", features.avx2);
  result.Set("avx512", features.avx512);
  return result;
}

// quantizeNF4(values: Float32Array, blockSize: number, doubleQuant: boolean)
Napi::Value QuantizeNF4(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto values = typed_array<Napi::Float32Array>(env, info[0], "values", napi_float32_array, "Float32Array");
  const double block_size = info[1].IsNumber() ? info[1].As<Napi::Number>().DoubleValue() : 64;
  if (block_size < 2 || block_size > 4096 || block_size != double(int(block_size)) || int(block_size) % 2 != 0)
    throw range_error(env, "blockSize must be an even integer in [2, 4096]");
  const bool double_quant = info[2].IsBoolean() && info[2].As<Napi::Boolean>().Value();
  NF4Tensor tensor;
  try {
    tensor = quantize_nf4(values.Data(), values.ElementLength(), size_t(block_size), double_quant);
  } catch (const std::exception& error) {
    throw native_error(env, error);
  }
  Napi::Object result = Napi::Object::New(env);
  Napi::Uint8Array packed = Napi::Uint8Array::New(env, tensor.packed.size());
  std::copy(tensor.packed.begin(), tensor.packed.end(), packed.Data());
  result.Set("packed", packed);
  Napi::Float32Array absmax = Napi::Float32Array::New(env, tensor.blocks());
  for (size_t b = 0; b < tensor.blocks(); b++) absmax[b] = tensor.block_absmax(b);
  result.Set("absmax", absmax);
  result.Set("blockSize", double(tensor.block_size));
  result.Set("length", double(tensor.length));
  if (double_quant) {
    Napi::Object nested = Napi::Object::New(env);
    nested.Set("offset", tensor.absmax_offset);
    Napi::Uint8Array codes = Napi::Uint8Array::New(env, tensor.absmax_codes.size());
    std::copy(tensor.absmax_codes.begin(), tensor.absmax_codes.end(), codes.Data());
    nested.Set("codes", codes);
    Napi::Float32Array scales = float_array(env, tensor.absmax_scales);
    nested.Set("scales", scales);
    nested.Set("blockSize", 256);
    result.Set("nested", nested);
  }
  return result;
}

// dequantizeNF4(packed: Uint8Array, absmax: Float32Array, blockSize: number, length: number)
Napi::Value DequantizeNF4(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto packed = typed_array<Napi::Uint8Array>(env, info[0], "packed", napi_uint8_array, "Uint8Array");
  auto absmax = typed_array<Napi::Float32Array>(env, info[1], "absmax", napi_float32_array, "Float32Array");
  if (!info[2].IsNumber() || !info[3].IsNumber()) throw type_error(env, "blockSize and length must be numbers");
  const double block_size = info[2].As<Napi::Number>().DoubleValue();
  const double length = info[3].As<Napi::Number>().DoubleValue();
  if (block_size < 2 || block_size != double(int64_t(block_size)) || length < 0 || length != double(int64_t(length)))
    throw range_error(env, "blockSize and length must be integers");
  NF4Tensor tensor;
  tensor.length = size_t(length);
  tensor.block_size = size_t(block_size);
  if (packed.ElementLength() != (tensor.length + 1) / 2)
    throw range_error(env, "packed holds " + std::to_string(packed.ElementLength()) + " bytes; " +
                                         std::to_string((tensor.length + 1) / 2) + " expected for " +
                                         std::to_string(tensor.length) + " values");
  if (absmax.ElementLength() != tensor.blocks())
    throw range_error(env, "absmax holds " + std::to_string(absmax.ElementLength()) + " values; " +
                                         std::to_string(tensor.blocks()) + " blocks expected");
  tensor.packed.assign(packed.Data(), packed.Data() + packed.ElementLength());
  tensor.absmax.assign(absmax.Data(), absmax.Data() + absmax.ElementLength());
  Napi::Float32Array out = Napi::Float32Array::New(env, tensor.length);
  tensor.dequantize(0, tensor.length, out.Data());
  return out;
}

Napi::Value DynamicMap(const Napi::CallbackInfo& info) {
  const std::vector<float>& map = dynamic_map_signed();
  Napi::Float32Array out = Napi::Float32Array::New(info.Env(), map.size());
  std::copy(map.begin(), map.end(), out.Data());
  return out;
}

// matmul(form, m, n, k, a, w, kernels, threads, repeat, compute): the engine's blocked matrix products
// on their own, for benchmarks and tests. w: [n × k] weight rows, a Float32Array, or a Uint16Array of
// BF16. "forward": y [m × n] = a [m × k] · wᵀ (a linear layer); "input-gradient": dx [m × k] = a [m × n]
// · w (its input gradient). compute "bf16": bf16 inputs where the kernels have them, else fp32, as a
// model falls back. Runs `repeat` times; returns { out, seconds, compute } (the fastest run; the
// compute type used).
Napi::Value Matmul(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string form = info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "";
  if (form != "forward" && form != "input-gradient") throw range_error(env, "form must be \"forward\" or \"input-gradient\"");
  const auto size = [&](size_t index, const char* name) {
    const double value = info[index].IsNumber() ? info[index].As<Napi::Number>().DoubleValue() : -1;
    if (!(value >= 1 && value <= 1 << 20 && value == double(size_t(value))))
      throw range_error(env, std::string(name) + " must be an integer in [1, 2^20]");
    return size_t(value);
  };
  const size_t m = size(1, "m"), n = size(2, "n"), k = size(3, "k");
  auto a = typed_array<Napi::Float32Array>(env, info[4], "a", napi_float32_array, "Float32Array");
  const size_t a_cols = form == "forward" ? k : n;
  if (a.ElementLength() != m * a_cols) throw range_error(env, "a must hold m × " + std::string(form == "forward" ? "k" : "n") + " values");
  const bool bf16 = info[5].IsTypedArray() && info[5].As<Napi::TypedArray>().TypedArrayType() == napi_uint16_array;
  const float* w32 = nullptr;
  const uint16_t* w16 = nullptr;
  if (bf16) {
    auto w = info[5].As<Napi::Uint16Array>();
    if (w.ElementLength() != n * k) throw range_error(env, "w must hold n × k values");
    w16 = w.Data();
  } else {
    auto w = typed_array<Napi::Float32Array>(env, info[5], "w", napi_float32_array, "Float32Array or Uint16Array");
    if (w.ElementLength() != n * k) throw range_error(env, "w must hold n × k values");
    w32 = w.Data();
  }
  const std::string path = info[6].IsString() ? info[6].As<Napi::String>().Utf8Value() : "";
  const Kernels* kernels;
  try {
    kernels = &select_kernels(path);
  } catch (const std::exception& error) {
    throw range_error(env, error.what());
  }
  const double threads = info[7].IsNumber() ? info[7].As<Napi::Number>().DoubleValue() : 0;
  const double repeat = info[8].IsNumber() ? info[8].As<Napi::Number>().DoubleValue() : 1;
  if (!(threads >= 0 && threads <= 256) || !(repeat >= 1 && repeat <= 1000))
    throw range_error(env, "threads must be in [0, 256] and repeat in [1, 1000]");
  const std::string compute = info[9].IsString() ? info[9].As<Napi::String>().Utf8Value() : "f32";
  if (compute != "f32" && compute != "bf16") throw range_error(env, "compute must be \"f32\" or \"bf16\"");
  const bool bf16_compute = compute == "bf16" && kernels->has_bf16();
  ThreadPool pool(threads >= 1 ? size_t(threads) : std::max(1u, std::thread::hardware_concurrency()));
  const RowSpans rows = w16 ? RowSpans([w16, k, kernels](size_t row, size_t col, size_t count, float* scratch) {
    kernels->bf16_to_f32(w16 + row * k + col, scratch, count);
    return static_cast<const float*>(scratch);
  })
                            : dense_rows(w32, k);
  const Bf16Rows bf16_rows =
      !bf16_compute ? Bf16Rows()
      : w16         ? Bf16Rows([w16, k](size_t row, size_t col, size_t, uint16_t*) { return w16 + row * k + col; })
                    : rounded_rows(*kernels, rows);
  const size_t out_size = form == "forward" ? m * n : m * k;
  Napi::Float32Array out = Napi::Float32Array::New(env, out_size);
  double best = 1e300;
  try {
    for (int run = 0; run < int(repeat); run++) {
      std::fill(out.Data(), out.Data() + out_size, 0.0f);
      const auto started = std::chrono::steady_clock::now();
      if (form == "forward" && bf16_compute)
        multiply_transposed_bf16(*kernels, pool, m, n, k, a.Data(), k, bf16_rows, out.Data(), n);
      else if (form == "forward")
        multiply_transposed(*kernels, pool, m, n, k, a.Data(), k, rows, out.Data(), n);
      else if (bf16_compute)
        multiply_add_bf16(*kernels, pool, m, k, n, a.Data(), n, bf16_rows, out.Data(), k);
      else
        multiply_add(*kernels, pool, m, k, n, a.Data(), n, false, rows, out.Data(), k);
      best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
    }
  } catch (const std::exception& error) {
    throw native_error(env, error);
  }
  Napi::Object result = Napi::Object::New(env);
  result.Set("out", out);
  result.Set("seconds", best);
  result.Set("compute", bf16_compute ? "bf16" : "f32");
  return result;
}

// dropoutMask(key: bigint, first, count, p, kernels): the keep-scales of mask elements [first, first +
// count) as training draws them (Kernels::dropout_mask), on a kernel path: for tests of the stream.
Napi::Value DropoutMask(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsBigInt()) throw range_error(env, "key must be a bigint");
  bool lossless = false;
  const uint64_t key = info[0].As<Napi::BigInt>().Uint64Value(&lossless);
  if (!lossless) throw range_error(env, "key must be a bigint in [0, 2^64)");
  const auto integer = [&](size_t index, const char* name, double most) {
    const double value = info[index].IsNumber() ? info[index].As<Napi::Number>().DoubleValue() : -1;
    if (!(value >= 0 && value <= most && value == double(uint64_t(value))))
      throw range_error(env, std::string(name) + " must be an integer in [0, " + std::to_string(uint64_t(most)) + "]");
    return uint64_t(value);
  };
  const uint64_t first = integer(1, "first", 9007199254740991.0);
  const size_t count = size_t(integer(2, "count", double(1 << 26)));
  const double p = info[3].IsNumber() ? info[3].As<Napi::Number>().DoubleValue() : -1;
  if (!(p >= 0 && p < 1)) throw range_error(env, "p must be in [0, 1)");
  const std::string path = info[4].IsString() ? info[4].As<Napi::String>().Utf8Value() : "";
  const Kernels* kernels;
  try {
    kernels = &select_kernels(path);
  } catch (const std::exception& error) {
    throw range_error(env, error.what());
  }
  const float dropout = float(p);
  // The kept bits read back through dropout_apply on ones, in spans of 37 (from every bit offset, as
  // the backward pass reads a row's columns): the keep-scales it applies.
  const float kept = 1.0f / (1.0f - dropout);
  std::vector<float> ones(count, 1.0f), dropped(count);
  std::vector<uint8_t> bits(count / 8 + 8);
  kernels->dropout_mask(key, first, count, uint64_t(std::ldexp(double(dropout), 64)), kept, ones.data(), bits.data(),
                        dropped.data());
  Napi::Float32Array mask = Napi::Float32Array::New(env, count);
  for (size_t i = 0; i < count; i += 37)
    kernels->dropout_apply(bits.data(), i, std::min<size_t>(37, count - i), kept, ones.data() + i, mask.Data() + i,
                           false);
  for (size_t i = 0; i < count; i++)
    if (dropped[i] != mask[i]) throw Napi::Error::New(env, "dropout_mask's inputs and its bits disagree");
  return mask;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  Napi::Function model = Model::Define(env);
  Napi::Function cancel_token = CancelToken::Define(env);
  // Per environment (main thread or worker thread), freed with it.
  env.SetInstanceData<AddonData>(new AddonData{Napi::Persistent(model), Napi::Persistent(cancel_token),
                                               Napi::Persistent(Lora::Define(env)), Napi::Persistent(Batch::Define(env))});
  exports.Set("Model", model);
  exports.Set("CancelToken", cancel_token);
  exports.Set("loadModel", Napi::Function::New<LoadModel>(env, "loadModel"));
  exports.Set("cpuFeatures", Napi::Function::New<CpuFeatures>(env, "cpuFeatures"));
  Napi::Array codes = Napi::Array::New(env);
  for (ErrorCode code : kErrorCodes) codes.Set(codes.Length(), error_code_name(code));
  exports.Set("errorCodes", codes);
  exports.Set("quantizeNF4", Napi::Function::New<QuantizeNF4>(env, "quantizeNF4"));
  exports.Set("dequantizeNF4", Napi::Function::New<DequantizeNF4>(env, "dequantizeNF4"));
  exports.Set("nf4DynamicMap", Napi::Function::New<DynamicMap>(env, "nf4DynamicMap"));
  exports.Set("dropoutMask", Napi::Function::New<DropoutMask>(env, "dropoutMask"));
  exports.Set("matmul", Napi::Function::New<Matmul>(env, "matmul"));
  return exports;
}

}  // namespace
}  // namespace tunekit

static Napi::Object InitTunekit(Napi::Env env, Napi::Object exports) { return tunekit::Init(env, exports); }

NODE_API_MODULE(tunekit, InitTunekit)
