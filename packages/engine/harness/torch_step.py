"""The engine's benchmark step written in plain PyTorch, for the side-by-side figure of the GPU check.

Same step as src/bench.ts and mpo-engine-check's `bench`: per pair, 2 target sequences through the LM
head (sum of response-token log-probs, response = last 3/4) and 2 dominant sequences to the mean-pooled
final-norm hidden state, fixed random upstream gradients on both, then AdamW (lr 1e-5, weight decay
0.01). fp32 master weights; bfloat16 runs under autocast, as the engine keeps fp32 masters with bf16
compute copies. TF32 stays at PyTorch's default for matmuls (off), as in libtorch.
Works with torch 1.13 (Debian, dry runs) and 2.x (scaled_dot_product_attention when present).
"""
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class RMSNorm(nn.Module):
    def __init__(self, d, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype) * self.weight.to(x.dtype)


def rotate(x, cos, sin):
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat((-x2, x1), dim=-1) * sin


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        d, h, kv = c["hidden"], c["heads"], c["kv_heads"]
        self.h, self.kv, self.hd = h, kv, d // h
        self.ln1, self.ln2 = RMSNorm(d, 1e-6), RMSNorm(d, 1e-6)
        self.qkv = nn.Linear(d, (h + 2 * kv) * self.hd, bias=False)
        self.o = nn.Linear(h * self.hd, d, bias=False)
        self.gate_up = nn.Linear(d, 2 * c["inter"], bias=False)
        self.down = nn.Linear(c["inter"], d, bias=False)

    def forward(self, x, cos, sin):
        B, T, _ = x.shape
        q, k, v = self.qkv(self.ln1(x)).split([self.h * self.hd, self.kv * self.hd, self.kv * self.hd], -1)
        q = rotate(q.view(B, T, self.h, self.hd).transpose(1, 2), cos, sin)
        k = rotate(k.view(B, T, self.kv, self.hd).transpose(1, 2), cos, sin)
        v = v.view(B, T, self.kv, self.hd).transpose(1, 2)
        if self.kv != self.h:
            k = k.repeat_interleave(self.h // self.kv, 1)
            v = v.repeat_interleave(self.h // self.kv, 1)
        if hasattr(F, "scaled_dot_product_attention"):
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:  # torch 1.13
            s = (q @ k.transpose(-1, -2)) / self.hd**0.5
            s = s.masked_fill(torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1), float("-inf"))
            a = s.softmax(-1) @ v
        x = x + self.o(a.transpose(1, 2).reshape(B, T, -1))
        g, u = self.gate_up(self.ln2(x)).chunk(2, -1)
        return x + self.down(F.silu(g) * u)


class Llama(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embed = nn.Embedding(c["vocab"], c["hidden"])
        self.blocks = nn.ModuleList(Block(c) for _ in range(c["layers"]))
        self.norm = RMSNorm(c["hidden"], 1e-6)
        self.lm_head = nn.Linear(c["hidden"], c["vocab"], bias=False)
        hd = c["hidden"] // c["heads"]
        inv = 1.0 / (10000.0 ** (torch.arange(0, hd, 2).float() / hd))
        ang = torch.outer(torch.arange(c["seq"]).float(), inv)
        self.register_buffer("cos", torch.cat((ang, ang), -1).cos(), persistent=False)
        self.register_buffer("sin", torch.cat((ang, ang), -1).sin(), persistent=False)
        for p in self.parameters():
            if p.dim() == 2:
                nn.init.normal_(p, std=0.02)

    def forward(self, ids):
        T = ids.shape[1]
        x = self.embed(ids)
        cos, sin = self.cos[:T].to(x.dtype), self.sin[:T].to(x.dtype)
        for b in self.blocks:
            x = b(x, cos, sin)
        return self.norm(x)


def bench(c, device, dtype, steps):
    torch.manual_seed(0)
    dev = torch.device(device)
    model = Llama(c).to(dev)
    opt_kw = {"fused": True} if dev.type == "cuda" and torch.__version__ >= "2" else {}
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, weight_decay=0.01, **opt_kw)
    P, T, V, D = c["pairs"], c["seq"], c["vocab"], c["hidden"]
    target = torch.randint(0, V, (2 * P, T), device=dev)
    source = torch.randint(0, V, (2 * P, T), device=dev)
    p0 = T // 4
    g_logp = torch.rand(2 * P, device=dev) - 0.5
    g_hidden = (torch.rand(2 * P, D, device=dev) - 0.5) * 1e-2
    use_bf16 = dtype == "bfloat16"

    def autocast():
        return torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=use_bf16)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    def step():
        opt.zero_grad(set_to_none=True)
        with autocast():
            h = model(target)
            logits = model.lm_head(h[:, p0 - 1 : -1]).float()
        lp = logits.log_softmax(-1).gather(-1, target[:, p0:, None]).squeeze(-1).sum(1)
        (lp * g_logp).sum().backward()
        with autocast():
            hs = model(source).float().mean(1)
        (hs * g_hidden).sum().backward()
        opt.step()
        sync()

    step()  # warm-up
    secs = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        secs.append(time.perf_counter() - t0)
    med = sorted(secs)[len(secs) // 2] if len(secs) % 2 else sum(sorted(secs)[len(secs) // 2 - 1 : len(secs) // 2 + 1]) / 2
    tokens = 4 * P * T
    return {
        "tokensPerSec": tokens / med,
        "secondsPerStep": med,
        "stepSeconds": secs,
        "torchVersion": torch.__version__,
        "numParameters": sum(p.numel() for p in model.parameters()),
    }
