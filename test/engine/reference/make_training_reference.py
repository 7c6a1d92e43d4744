#!/usr/bin/env python3
"""Reference loss and LoRA gradients on the stories260K fixture, computed once with PyTorch autograd.

Run with Debian's python3 (PyTorch 1.13) from the repository root:
    /usr/bin/python3 test/engine/reference/make_training_reference.py [../shared/fixtures/stories260K-hf]
It writes training-reference.safetensors next to this file: the mean loss (`loss`, one F32) and the
gradient of every LoRA matrix under its PEFT name. The forward pass is make_reference.py's (transformers'
Llama), with PEFT's LoRA on all seven projections (peft/tuners/lora/layer.py Linear.forward:
base(x) + lora_B(lora_A(x)) * scaling, scaling = lora_alpha / r), no dropout; the adapter's values are
the deterministic ones of test/engine/tiny-model.ts's hash, so the test rebuilds them exactly.
"""
import json
import os
import struct
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_reference import inv_freq, rms_norm, rotate_half, tiny_values  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
RANK, ALPHA = 4, 8
PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
# A stretch of the fixture's own greedy text (token ids), with two labels left out.
TOKENS = [1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401, 396, 267, 337]
LABELS = [t if i not in (5, 12) else -100 for i, t in enumerate(TOKENS)]


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        begin, end = t["data_offsets"]
        assert t["dtype"] == "F32"
        out[name] = torch.frombuffer(bytearray(data[begin:end]), dtype=torch.float32).reshape(t["shape"])
    return out


def write_safetensors(path, tensors):
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        data = tensors[name].detach().contiguous().numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(tensors[name].shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)


def module_name(layer, projection):
    block = "mlp" if projection in ("gate_proj", "up_proj", "down_proj") else "self_attn"
    return f"model.layers.{layer}.{block}.{projection}"


def main():
    folder = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "../../../../shared/fixtures/stories260K-hf")
    with open(os.path.join(folder, "config.json")) as f:
        config = json.load(f)
    w = read_safetensors(os.path.join(folder, "model.safetensors"))
    H, nh, nkv = config["hidden_size"], config["num_attention_heads"], config["num_key_value_heads"]
    D = config.get("head_dim") or H // nh
    eps = config["rms_norm_eps"]
    lora = {}
    for l in range(config["num_hidden_layers"]):
        for projection in PROJECTIONS:
            name = module_name(l, projection)
            out_features, in_features = w[name + ".weight"].shape
            a = tiny_values(name + ".lora_A", RANK * in_features, 0.125, False).reshape(RANK, in_features)
            b = tiny_values(name + ".lora_B", out_features * RANK, 0.125, False).reshape(out_features, RANK)
            lora[name] = (a.requires_grad_(), b.requires_grad_())
    scaling = ALPHA / RANK

    T = len(TOKENS)
    x = w["model.embed_tokens.weight"][torch.tensor(TOKENS)]
    freqs = torch.arange(T).float()[:, None] @ inv_freq(config)[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos(), emb.sin()
    mask = torch.full((T, T), float("-inf")).triu(1)
    for l in range(config["num_hidden_layers"]):
        p = f"model.layers.{l}."

        def lin(projection, v):
            name = module_name(l, projection)
            a, b = lora[name]
            return v @ w[name + ".weight"].T + ((v @ a.T) @ b.T) * scaling

        h = rms_norm(x, w[p + "input_layernorm.weight"], eps)
        q = lin("q_proj", h).view(T, nh, D).transpose(0, 1)
        k = lin("k_proj", h).view(T, nkv, D).transpose(0, 1)
        v = lin("v_proj", h).view(T, nkv, D).transpose(0, 1)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        k, v = k.repeat_interleave(nh // nkv, dim=0), v.repeat_interleave(nh // nkv, dim=0)
        scores = torch.matmul(q, k.transpose(1, 2)) * D**-0.5 + mask
        attention = torch.softmax(scores, dim=-1, dtype=torch.float32) @ v
        x = x + lin("o_proj", attention.transpose(0, 1).reshape(T, nh * D))
        h = rms_norm(x, w[p + "post_attention_layernorm.weight"], eps)
        x = x + lin("down_proj", torch.nn.functional.silu(lin("gate_proj", h)) * lin("up_proj", h))
    x = rms_norm(x, w["model.norm.weight"], eps)
    logits = x @ w["model.embed_tokens.weight"].T
    # transformers' causal-LM loss: logits at t against labels at t + 1, -100 ignored, mean.
    loss = torch.nn.functional.cross_entropy(logits[:-1], torch.tensor(LABELS[1:]), ignore_index=-100)
    loss.backward()
    out = {"loss": loss.detach().reshape(1)}
    for name, (a, b) in lora.items():
        out[f"base_model.model.{name}.lora_A.weight"] = a.grad
        out[f"base_model.model.{name}.lora_B.weight"] = b.grad
    write_safetensors(os.path.join(HERE, "training-reference.safetensors"), out)
    print(f"loss {loss.item():.6f}")


if __name__ == "__main__":
    main()
