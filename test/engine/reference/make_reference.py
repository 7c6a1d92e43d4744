#!/usr/bin/env python3
"""Reference values for tunekit's native engine, computed once with PyTorch and committed.

Run with Debian's python3 (PyTorch 1.13): `/usr/bin/python3 test/engine/reference/make_reference.py`.
It writes reference.json next to this file. transformers and bitsandbytes cannot be installed on the
machines that built this, so their definitions are written out here in PyTorch, citing the code they
follow:

- transformers v4.46 src/transformers/models/llama/modeling_llama.py: LlamaRMSNorm.forward,
  rotate_half, apply_rotary_pos_emb, repeat_kv, LlamaMLP.forward, LlamaAttention (eager path:
  matmul(q, kᵀ) * head_dim**-0.5, causal mask, softmax in float32, matmul with v), LlamaModel and
  LlamaForCausalLM (final norm, lm_head or tied embeddings). Qwen2 and Mistral share this block;
  Qwen2Attention adds bias=True to q/k/v (models/qwen2/modeling_qwen2.py).
- transformers src/transformers/modeling_rope_utils.py: _compute_default_rope_parameters and
  _compute_llama3_parameters.
- bitsandbytes functional.py: get_4bit_type("nf4") (the NF4 code), quantize_4bit (absmax per block,
  codes packed two per byte with the first in the high nibble; compress_statistics subtracts the
  mean of absmax and calls quantize_blockwise with blocksize 256 and create_dynamic_map(signed=True)).

The weights are the deterministic pseudo-random ones of test/engine/tiny-model.ts (same hash).
"""
import json
import math
import os

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
M32 = 0xFFFFFFFF


def fnv1a(text):
    h = 0x811C9DC5
    for byte in text.encode():
        h = ((h ^ byte) * 0x01000193) & M32
    return h


def hash32(x):
    x &= M32
    x ^= x >> 16
    x = (x * 0x7FEB352D) & M32
    x ^= x >> 15
    x = (x * 0x846CA68B) & M32
    x ^= x >> 16
    return x


def tiny_values(name, count, scale, norm):
    seed = fnv1a(name)
    out = []
    for i in range(count):
        x = hash32((seed + i * 0x9E3779B1) & M32)
        out.append(((x >> 25) + 64) / 128 if norm else (((x >> 24) - 128) / 128) * scale)
    return torch.tensor(out, dtype=torch.float32)


def load_configs():
    # The configs of tiny-model.ts, kept in one JSON file both sides read.
    with open(os.path.join(HERE, "tiny-models.json")) as f:
        return json.load(f)


def weights(config):
    H, I = config["hidden_size"], config["intermediate_size"]
    D = config.get("head_dim") or H // config["num_attention_heads"]
    Q, KV = config["num_attention_heads"] * D, config["num_key_value_heads"] * D
    bias = config["model_type"] == "qwen2" or config.get("attention_bias", False)
    spec = [("model.embed_tokens.weight", [config["vocab_size"], H], 1, False)]
    for l in range(config["num_hidden_layers"]):
        p = f"model.layers.{l}."
        spec += [
            (p + "input_layernorm.weight", [H], 1, True),
            (p + "self_attn.q_proj.weight", [Q, H], 0.25, False),
            (p + "self_attn.k_proj.weight", [KV, H], 0.25, False),
            (p + "self_attn.v_proj.weight", [KV, H], 0.25, False),
            (p + "self_attn.o_proj.weight", [H, Q], 0.25, False),
            (p + "post_attention_layernorm.weight", [H], 1, True),
            (p + "mlp.gate_proj.weight", [I, H], 0.25, False),
            (p + "mlp.up_proj.weight", [I, H], 0.25, False),
            (p + "mlp.down_proj.weight", [H, I], 0.25, False),
        ]
        if bias:
            spec += [
                (p + "self_attn.q_proj.bias", [Q], 0.5, False),
                (p + "self_attn.k_proj.bias", [KV], 0.5, False),
                (p + "self_attn.v_proj.bias", [KV], 0.5, False),
            ]
    spec.append(("model.norm.weight", [H], 1, True))
    if not config["tie_word_embeddings"]:
        spec.append(("lm_head.weight", [config["vocab_size"], H], 0.5, False))
    return {name: tiny_values(name, math.prod(shape), scale, norm).reshape(shape) for name, shape, scale, norm in spec}


def inv_freq(config):
    # modeling_rope_utils._compute_default_rope_parameters
    dim = config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
    base = config["rope_theta"]
    inv = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))
    scaling = config.get("rope_scaling")
    if scaling and scaling.get("rope_type", scaling.get("type")) == "llama3":
        # modeling_rope_utils._compute_llama3_parameters
        factor = scaling["factor"]
        low_freq_factor = scaling["low_freq_factor"]
        high_freq_factor = scaling["high_freq_factor"]
        old_context_len = scaling["original_max_position_embeddings"]
        low_freq_wavelen = old_context_len / low_freq_factor
        high_freq_wavelen = old_context_len / high_freq_factor
        wavelen = 2 * math.pi / inv
        inv_llama = torch.where(wavelen > low_freq_wavelen, inv / factor, inv)
        smooth = (old_context_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
        smoothed = (1 - smooth) * inv_llama / factor + smooth * inv_llama
        is_medium = ~(wavelen < high_freq_wavelen) * ~(wavelen > low_freq_wavelen)
        inv = torch.where(is_medium, smoothed, inv_llama)
    return inv


def rms_norm(x, weight, eps):  # LlamaRMSNorm.forward
    variance = x.pow(2).mean(-1, keepdim=True)
    return weight * (x * torch.rsqrt(variance + eps))


def rotate_half(x):
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2 :]
    return torch.cat((-x2, x1), dim=-1)


def repeat_kv(states, n_rep):  # [heads_kv, T, D] → [heads_kv * n_rep, T, D]
    return states.repeat_interleave(n_rep, dim=0)


def forward(config, w, ids):
    H = config["hidden_size"]
    nh, nkv = config["num_attention_heads"], config["num_key_value_heads"]
    D = config.get("head_dim") or H // nh
    eps = config["rms_norm_eps"]
    T = len(ids)
    x = w["model.embed_tokens.weight"][torch.tensor(ids)]
    positions = torch.arange(T).float()
    freqs = positions[:, None] @ inv_freq(config)[None, :]  # LlamaRotaryEmbedding.forward
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos(), emb.sin()
    mask = torch.full((T, T), float("-inf")).triu(1)
    for l in range(config["num_hidden_layers"]):
        p = f"model.layers.{l}."
        lin = lambda name, v: v @ w[p + name + ".weight"].T + (w[p + name + ".bias"] if p + name + ".bias" in w else 0)
        h = rms_norm(x, w[p + "input_layernorm.weight"], eps)
        q = lin("self_attn.q_proj", h).view(T, nh, D).transpose(0, 1)
        k = lin("self_attn.k_proj", h).view(T, nkv, D).transpose(0, 1)
        v = lin("self_attn.v_proj", h).view(T, nkv, D).transpose(0, 1)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin  # apply_rotary_pos_emb
        k, v = repeat_kv(k, nh // nkv), repeat_kv(v, nh // nkv)
        scores = torch.matmul(q, k.transpose(1, 2)) * D**-0.5 + mask
        attention = torch.softmax(scores, dim=-1, dtype=torch.float32) @ v
        x = x + lin("self_attn.o_proj", attention.transpose(0, 1).reshape(T, nh * D))
        h = rms_norm(x, w[p + "post_attention_layernorm.weight"], eps)
        gate, up = lin("mlp.gate_proj", h), lin("mlp.up_proj", h)
        x = x + lin("mlp.down_proj", torch.nn.functional.silu(gate) * up)  # LlamaMLP.forward
    x = rms_norm(x, w["model.norm.weight"], eps)
    head = w["model.embed_tokens.weight"] if config["tie_word_embeddings"] else w["lm_head.weight"]
    return x @ head.T


# ---- NF4 (bitsandbytes) ---------------------------------------------------------------------------

NF4 = torch.tensor([
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
    -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
    0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
    0.7229568362236023, 1.0,
], dtype=torch.float32)


def create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8):  # bitsandbytes functional.py
    data = []
    non_sign_bits = total_bits - 1
    additional_items = 2 ** (non_sign_bits - max_exponent_bits) - 1
    for i in range(max_exponent_bits):
        fraction_items = int(2 ** (i + non_sign_bits - max_exponent_bits) + 1 if signed else 2 ** (i + non_sign_bits - max_exponent_bits + 1) + 1)
        boundaries = torch.linspace(0.1, 1, fraction_items, dtype=torch.float32)
        means = (boundaries[:-1] + boundaries[1:]) / 2.0
        data += ((10 ** (-(max_exponent_bits - 1) + i)) * means).tolist()
        if signed:
            data += (-(10 ** (-(max_exponent_bits - 1) + i)) * means).tolist()
    assert additional_items == 0
    data.append(0)
    data.append(1.0)
    data.sort()
    return torch.tensor(data, dtype=torch.float32)


def nearest(code, x):  # index of the nearest code value, ties to the lower index
    return torch.argmin((code[None, :] - x[:, None]).abs(), dim=1)


def quantize_nf4(x, block_size, double_quant):
    n = x.numel()
    blocks = (n + block_size - 1) // block_size
    padded = torch.zeros(blocks * block_size)
    padded[:n] = x
    absmax = padded.view(blocks, block_size).abs().max(dim=1).values
    scaled = padded.view(blocks, block_size) * (1.0 / absmax)[:, None]
    codes = nearest(NF4, scaled.flatten())[:n]
    if n % 2:
        codes = torch.cat([codes, torch.zeros(1, dtype=codes.dtype)])
    packed = (codes[0::2] << 4) | codes[1::2]
    result = {"packed": packed.tolist(), "absmax": absmax.tolist()}
    if double_quant:
        offset = absmax.mean()
        centred = absmax - offset
        dmap = create_dynamic_map(signed=True)
        nblocks = (centred.numel() + 255) // 256
        scales, qcodes = [], []
        for b in range(nblocks):
            chunk = centred[b * 256 : (b + 1) * 256]
            scale = chunk.abs().max()
            scales.append(scale.item())
            qcodes += nearest(dmap, chunk * (1.0 / scale)).tolist()
        deq = dmap[torch.tensor(qcodes)] * torch.tensor(scales).repeat_interleave(256)[: len(qcodes)] + offset
        result["nested"] = {"offset": offset.item(), "codes": qcodes, "scales": scales, "absmax": deq.tolist()}
    return result


def known_vector(n, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, generator=g, dtype=torch.float32)


# ---- LoRA (PEFT) -----------------------------------------------------------------------------------
# peft/tuners/lora/layer.py Linear.forward: result = base_layer(x) + lora_B(lora_A(dropout(x))) * scaling,
# scaling = lora_alpha / r (update_layer); rank_pattern / alpha_pattern override r / alpha per module
# (peft/tuners/lora/model.py _create_and_replace, matching keys as `.*\.{key}$`).

LORA = {
    "r": 4,
    "lora_alpha": 8,
    "target_modules": ["q_proj", "v_proj", "down_proj"],
    "rank_pattern": {"down_proj": 2},
    "alpha_pattern": {"model.layers.1.self_attn.v_proj": 16},
}


def pattern_value(pattern, name):
    for key, value in pattern.items():
        if name == key or name.endswith("." + key):
            return value
    return None


def lora_modules(config):
    H, I = config["hidden_size"], config["intermediate_size"]
    D = config.get("head_dim") or H // config["num_attention_heads"]
    shapes = {"q_proj": (H, config["num_attention_heads"] * D), "v_proj": (H, config["num_key_value_heads"] * D),
              "down_proj": (I, H)}
    modules = {}
    for l in range(config["num_hidden_layers"]):
        for projection in LORA["target_modules"]:
            block = "mlp" if projection == "down_proj" else "self_attn"
            name = f"model.layers.{l}.{block}.{projection}"
            r = pattern_value(LORA["rank_pattern"], name) or LORA["r"]
            alpha = pattern_value(LORA["alpha_pattern"], name) or LORA["lora_alpha"]
            fan_in, fan_out = shapes[projection]
            a = tiny_values(name + ".lora_A", r * fan_in, 0.25, False).reshape(r, fan_in)
            b = tiny_values(name + ".lora_B", fan_out * r, 0.25, False).reshape(fan_out, r)
            modules[name] = (a, b, alpha / r)
    return modules


def write_peft_adapter(folder, config, modules):
    # What PEFT's save_pretrained writes: adapter_config.json and adapter_model.safetensors, here in BF16.
    os.makedirs(folder, exist_ok=True)
    tensors = {}
    for name, (a, b, _) in modules.items():
        tensors[f"base_model.model.{name}.lora_A.weight"] = a
        tensors[f"base_model.model.{name}.lora_B.weight"] = b
    header, blobs, offset = {}, [], 0
    for key in sorted(tensors):
        data = tensors[key].to(torch.bfloat16).view(torch.int16).numpy().tobytes()
        header[key] = {"dtype": "BF16", "shape": list(tensors[key].shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    header["__metadata__"] = {"format": "pt"}
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(os.path.join(folder, "adapter_model.safetensors"), "wb") as f:
        f.write(len(text).to_bytes(8, "little"))
        f.write(text)
        for blob in blobs:
            f.write(blob)
    peft_config = {
        "alpha_pattern": LORA["alpha_pattern"], "auto_mapping": None, "base_model_name_or_path": "tiny-llama",
        "bias": "none", "fan_in_fan_out": False, "inference_mode": True, "init_lora_weights": True,
        "layer_replication": None, "layers_pattern": None, "layers_to_transform": None, "loftq_config": {},
        "lora_alpha": LORA["lora_alpha"], "lora_dropout": 0.05, "megatron_config": None, "megatron_core": "megatron.core",
        "modules_to_save": None, "peft_type": "LORA", "r": LORA["r"], "rank_pattern": LORA["rank_pattern"],
        "revision": None, "target_modules": LORA["target_modules"], "task_type": "CAUSAL_LM", "use_dora": False,
        "use_rslora": False,
    }
    with open(os.path.join(folder, "adapter_config.json"), "w") as f:
        json.dump(peft_config, f, indent=2)
        f.write("\n")


def main():
    configs = load_configs()
    out = {"input": configs["input"], "logits": {}, "nf4": []}
    for name, config in configs["models"].items():
        logits = forward(config, weights(config), configs["input"])
        out["logits"][name] = logits.flatten().tolist()
    # The llama model with a PEFT adapter: W + scaling · B A is what Linear.forward adds up to.
    llama = configs["models"]["llama"]
    modules = lora_modules(llama)
    w = weights(llama)
    for name, (a, b, scaling) in modules.items():
        w[name + ".weight"] = w[name + ".weight"] + scaling * (b @ a)
    out["logits"]["llama+lora"] = forward(llama, w, configs["input"]).flatten().tolist()
    write_peft_adapter(os.path.join(HERE, "peft-adapter"), llama, modules)
    for n, block, dq, seed in [(64, 64, False, 1), (200, 64, False, 2), (1000, 64, True, 3), (333, 32, False, 4)]:
        x = known_vector(n, seed)
        out["nf4"].append({"values": x.tolist(), "blockSize": block, "doubleQuant": dq, **quantize_nf4(x, block, dq)})
    out["dynamicMap"] = create_dynamic_map(signed=True).tolist()
    with open(os.path.join(HERE, "reference.json"), "w") as f:
        json.dump(out, f)
        f.write("\n")


if __name__ == "__main__":
    main()
