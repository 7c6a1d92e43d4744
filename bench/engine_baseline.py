#!/usr/bin/env python3
"""Baseline for bench/engine-generate.mjs: writes a random-weight model of a given shape as a Hugging
Face folder (BF16 safetensors, a character tokenizer) and times the same work in PyTorch: a prefill
of the prompt and greedy decoding with a KV cache, as transformers' Llama computes it (fp32 on the CPU,
the way a CPU user runs it). Prints one JSON line. Run by the benchmark with Debian's /usr/bin/python3.
"""
import argparse
import json
import os
import struct
import time

import torch

SHAPES = {
    # HuggingFaceTB/SmolLM2-135M's config
    "smollm2-135m": dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                         num_key_value_heads=3, head_dim=64, vocab_size=49152, tie_word_embeddings=True,
                         rope_theta=100000.0),
    # Qwen/Qwen2.5-0.5B's config (q, k and v carry biases)
    "qwen2.5-0.5b": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                         num_key_value_heads=2, head_dim=64, vocab_size=151936, tie_word_embeddings=True,
                         rope_theta=1000000.0),
}
QWEN2 = {"qwen2.5-0.5b"}


def write_model(folder, name):
    shape = SHAPES[name]
    qwen2 = name in QWEN2
    os.makedirs(folder, exist_ok=True)
    g = torch.Generator().manual_seed(0)
    H, I, L = shape["hidden_size"], shape["intermediate_size"], shape["num_hidden_layers"]
    Q = shape["num_attention_heads"] * shape["head_dim"]
    KV = shape["num_key_value_heads"] * shape["head_dim"]
    tensors = {"model.embed_tokens.weight": (shape["vocab_size"], H), "model.norm.weight": (H,)}
    for l in range(L):
        p = f"model.layers.{l}."
        tensors.update({
            p + "input_layernorm.weight": (H,), p + "post_attention_layernorm.weight": (H,),
            p + "self_attn.q_proj.weight": (Q, H), p + "self_attn.k_proj.weight": (KV, H),
            p + "self_attn.v_proj.weight": (KV, H), p + "self_attn.o_proj.weight": (H, Q),
            p + "mlp.gate_proj.weight": (I, H), p + "mlp.up_proj.weight": (I, H), p + "mlp.down_proj.weight": (H, I),
        })
        if qwen2:
            tensors.update({p + "self_attn.q_proj.bias": (Q,), p + "self_attn.k_proj.bias": (KV,),
                            p + "self_attn.v_proj.bias": (KV,)})
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        size = tensors[name]
        value = torch.ones(size) if name.endswith("norm.weight") else torch.randn(size, generator=g) * 0.05
        data = value.to(torch.bfloat16).view(torch.int16).numpy().tobytes()
        header[name] = {"dtype": "BF16", "shape": list(size), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(os.path.join(folder, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)
    config = dict(architectures=["Qwen2ForCausalLM" if qwen2 else "LlamaForCausalLM"],
                  model_type="qwen2" if qwen2 else "llama", max_position_embeddings=2048,
                  rms_norm_eps=1e-6 if qwen2 else 1e-5, hidden_act="silu", bos_token_id=1, eos_token_id=2,
                  torch_dtype="bfloat16", **shape)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(config, f)
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for c in " abcdefghijklmnopqrstuvwxyz":
        vocab[c] = len(vocab)
    with open(os.path.join(folder, "tokenizer.json"), "w") as f:
        json.dump({"version": "1.0", "added_tokens": [], "normalizer": None, "pre_tokenizer": None,
                   "post_processor": None, "decoder": {"type": "Fuse"},
                   "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>", "fuse_unk": False,
                             "byte_fallback": False, "vocab": vocab, "merges": []}}, f)
    with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
        json.dump({"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}, f)


def load(folder):
    with open(os.path.join(folder, "model.safetensors"), "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    weights = {}
    for name, t in header.items():
        begin, end = t["data_offsets"]
        raw = torch.frombuffer(bytearray(data[begin:end]), dtype=torch.int16).view(torch.bfloat16)
        weights[name] = raw.reshape(t["shape"]).float()
    return weights


class Llama:
    """transformers' LlamaForCausalLM forward (see test/engine/reference/make_reference.py), with a KV cache."""

    def __init__(self, config, w):
        self.c, self.w = config, w
        D = config["head_dim"]
        self.inv_freq = 1.0 / (config["rope_theta"] ** (torch.arange(0, D, 2).float() / D))

    def forward(self, ids, cache, start):
        c, w = self.c, self.w
        nh, nkv, D, eps = c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"], c["rms_norm_eps"]
        T = len(ids)
        x = w["model.embed_tokens.weight"][torch.tensor(ids)]
        freqs = torch.arange(start, start + T).float()[:, None] * self.inv_freq[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos(), emb.sin()
        norm = lambda v, name: w[name] * (v * torch.rsqrt(v.pow(2).mean(-1, keepdim=True) + eps))
        rot = lambda v: torch.cat((-v[..., D // 2:], v[..., : D // 2]), dim=-1)
        for l in range(c["num_hidden_layers"]):
            p = f"model.layers.{l}."
            h = norm(x, p + "input_layernorm.weight")
            q = (h @ w[p + "self_attn.q_proj.weight"].T).view(T, nh, D).transpose(0, 1)
            k = (h @ w[p + "self_attn.k_proj.weight"].T).view(T, nkv, D).transpose(0, 1)
            v = (h @ w[p + "self_attn.v_proj.weight"].T).view(T, nkv, D).transpose(0, 1)
            q, k = q * cos + rot(q) * sin, k * cos + rot(k) * sin
            if l in cache:
                k, v = torch.cat((cache[l][0], k), dim=1), torch.cat((cache[l][1], v), dim=1)
            cache[l] = (k, v)
            k, v = k.repeat_interleave(nh // nkv, dim=0), v.repeat_interleave(nh // nkv, dim=0)
            scores = (q @ k.transpose(1, 2)) * D ** -0.5
            if T > 1:
                scores = scores + torch.full((T, T), float("-inf")).triu(1)
            a = torch.softmax(scores, dim=-1) @ v
            x = x + a.transpose(0, 1).reshape(T, nh * D) @ w[p + "self_attn.o_proj.weight"].T
            h = norm(x, p + "post_attention_layernorm.weight")
            g, u = h @ w[p + "mlp.gate_proj.weight"].T, h @ w[p + "mlp.up_proj.weight"].T
            x = x + (torch.nn.functional.silu(g) * u) @ w[p + "mlp.down_proj.weight"].T
        return norm(x[-1:], "model.norm.weight") @ w["model.embed_tokens.weight"].T


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--shape", default="smollm2-135m")
    parser.add_argument("--prompt", type=int, default=128)
    parser.add_argument("--decode", type=int, default=64)
    parser.add_argument("--write-only", action="store_true", help="write the model (if missing) and stop")
    args = parser.parse_args()
    if not os.path.exists(os.path.join(args.out, "model.safetensors")):
        write_model(args.out, args.shape)
    if args.write_only:
        return
    with open(os.path.join(args.out, "config.json")) as f:
        config = json.load(f)
    model = Llama(config, load(args.out))
    prompt = [1] + [3 + (i * 7) % 27 for i in range(args.prompt - 1)]
    # PyTorch at its best: small matrix-vector products run faster on one thread than on all of
    # them (OpenBLAS and torch's own threads compete), so time each thread count and keep the best.
    best = None
    for threads in sorted({1, os.cpu_count()}):
        torch.set_num_threads(threads)
        with torch.no_grad():
            model.forward(prompt[:8], {}, 0)  # warm-up
            started = time.perf_counter()
            cache = {}
            logits = model.forward(prompt, cache, 0)
            prefill = time.perf_counter() - started
            token = int(logits.argmax())
            started = time.perf_counter()
            for step in range(args.decode):
                token = int(model.forward([token], cache, args.prompt + step).argmax())
            decode = time.perf_counter() - started
        run = {"prefillSeconds": prefill, "prefillThreads": threads, "decodeSeconds": decode, "decodeThreads": threads}
        if best is None:
            best = run
        else:
            if run["prefillSeconds"] < best["prefillSeconds"]:
                best.update(prefillSeconds=prefill, prefillThreads=threads)
            if run["decodeSeconds"] < best["decodeSeconds"]:
                best.update(decodeSeconds=decode, decodeThreads=threads)
    print(json.dumps({"torch": torch.__version__, "promptTokens": args.prompt, "decodeTokens": args.decode, **best}))


if __name__ == "__main__":
    main()
