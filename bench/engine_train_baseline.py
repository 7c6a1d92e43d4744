#!/usr/bin/env python3
"""Baseline for bench/engine-train-speed.mjs: times in PyTorch the LoRA training step the engine runs,
on the model bench/engine_baseline.py writes: LoRA r = 16, alpha 32, dropout 0.05 on all seven
projections (PEFT's lora_B(lora_A(dropout(x))) · alpha / r), the frozen base in fp32, a batch of
sequences each attending only to itself, the causal-LM loss, backward, and AdamW on the adapters.
Plain autograd, no checkpointing (PyTorch's fastest). The fastest of --steps steps at each thread
count, the faster count kept. Prints one JSON line.
"""
import argparse
import json
import math
import os
import time

import torch
import torch.nn.functional as F

from engine_baseline import load


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--sequences", type=int, default=4)
    parser.add_argument("--length", type=int, default=256)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    with open(os.path.join(args.model, "config.json")) as f:
        c = json.load(f)
    w = load(args.model)
    nh, nkv, D, eps = c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"], c["rms_norm_eps"]
    H, L, r, alpha, dropout = c["hidden_size"], c["num_hidden_layers"], 16, 32, 0.05
    names = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
             "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]
    g = torch.Generator().manual_seed(0)
    adapters = {}
    for l in range(L):
        for name in names:
            out, inp = w[f"model.layers.{l}.{name}.weight"].shape
            bound = 1 / math.sqrt(inp)
            a = ((torch.rand(r, inp, generator=g) * 2 - 1) * bound).requires_grad_()
            b = torch.zeros(out, r).requires_grad_()
            adapters[f"{l}.{name}"] = (a, b)
    params = [t for pair in adapters.values() for t in pair]
    optimizer = torch.optim.AdamW(params, lr=2e-4, weight_decay=0.0)

    inv_freq = 1.0 / (c["rope_theta"] ** (torch.arange(0, D, 2).float() / D))
    S, T = args.sequences, args.length
    freqs = torch.arange(T).float()[:, None] * inv_freq[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos(), emb.sin()
    mask = torch.full((T, T), float("-inf")).triu(1)
    ids = torch.tensor([3 + (i * 7) % 27 for i in range(S * T)]).view(S, T)

    def norm(v, name):
        return w[name] * (v * torch.rsqrt(v.pow(2).mean(-1, keepdim=True) + eps))

    def rot(v):
        return torch.cat((-v[..., D // 2:], v[..., : D // 2]), dim=-1)

    def project(x, l, name):
        a, b = adapters[f"{l}.{name}"]
        base = x @ w[f"model.layers.{l}.{name}.weight"].T
        bias = w.get(f"model.layers.{l}.{name}.bias")
        if bias is not None:  # Qwen2's q, k and v
            base = base + bias
        return base + (F.dropout(x, dropout, True) @ a.T @ b.T) * (alpha / r)

    def step():
        x = w["model.embed_tokens.weight"][ids]
        for l in range(L):
            p = f"model.layers.{l}."
            h = norm(x, p + "input_layernorm.weight")
            q = project(h, l, "self_attn.q_proj").view(S, T, nh, D).transpose(1, 2)
            k = project(h, l, "self_attn.k_proj").view(S, T, nkv, D).transpose(1, 2)
            v = project(h, l, "self_attn.v_proj").view(S, T, nkv, D).transpose(1, 2)
            q, k = q * cos + rot(q) * sin, k * cos + rot(k) * sin
            k, v = k.repeat_interleave(nh // nkv, dim=1), v.repeat_interleave(nh // nkv, dim=1)
            attn = torch.softmax((q @ k.transpose(-1, -2)) * D ** -0.5 + mask, dim=-1) @ v
            x = x + project(attn.transpose(1, 2).reshape(S, T, nh * D), l, "self_attn.o_proj")
            h = norm(x, p + "post_attention_layernorm.weight")
            act = F.silu(project(h, l, "mlp.gate_proj")) * project(h, l, "mlp.up_proj")
            x = x + project(act, l, "mlp.down_proj")
        logits = norm(x, "model.norm.weight") @ w["model.embed_tokens.weight"].T
        loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    best = None
    for threads in sorted({1, os.cpu_count()}):
        torch.set_num_threads(threads)
        step()  # warm-up
        times = []
        for _ in range(args.steps):
            started = time.perf_counter()
            step()
            times.append(time.perf_counter() - started)
        seconds = min(times)
        if best is None or seconds < best["stepSeconds"]:
            best = {"stepSeconds": seconds, "threads": threads}
    print(json.dumps({"torch": torch.__version__, "tokens": S * T, **best}))


if __name__ == "__main__":
    main()
