#!/usr/bin/python3
"""Reference for bench/engine-vs-torch.mjs: the engine benchmark's MPO-shaped training step
(packages/engine/src/bench.ts) written in plain PyTorch on CPU, same model and batch.

One step = forward+backward of 2*pairs target sequences through the LM head (average log-prob of
the response tokens, the last 3/4 of each sequence) and of 2*pairs source sequences to the final
norm's hidden state, mean-pooled over the response, then AdamW. The model is "config S": a Llama
with vocab 512, hidden 256, SwiGLU 688, 4 layers, 4 heads (no GQA), RMSNorm, rotate-half RoPE.
--official adds what the official MPO trainer does every step: a reference-model forward of the
source batch and the source batch through the LM head.

usage: /usr/bin/python3 torch_mpo_step.py [--pairs 8] [--threads 2] [--steps 5] [--seq 256] [--official]
prints one line: "... tokens/s=N ..." (tokens processed with forward+backward per second, median step).
Needs PyTorch (Debian: apt-get install python3-torch); exits 3 with a message when it is missing.
"""
import argparse
import math
import statistics
import sys
import time

try:
    import torch
    import torch.nn.functional as F
    from torch import nn
except ImportError:
    print("torch_mpo_step.py: PyTorch is not installed for this python (Debian: apt-get install python3-torch)",
          file=sys.stderr)
    sys.exit(3)

VOCAB, HIDDEN, FF, LAYERS, HEADS = 512, 256, 688, 4, 4


class RMSNorm(nn.Module):
    def __init__(self, dim, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class DecoderLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.input_norm = RMSNorm(HIDDEN)
        self.post_norm = RMSNorm(HIDDEN)
        self.q = nn.Linear(HIDDEN, HIDDEN, bias=False)
        self.k = nn.Linear(HIDDEN, HIDDEN, bias=False)
        self.v = nn.Linear(HIDDEN, HIDDEN, bias=False)
        self.o = nn.Linear(HIDDEN, HIDDEN, bias=False)
        self.gate = nn.Linear(HIDDEN, FF, bias=False)
        self.up = nn.Linear(HIDDEN, FF, bias=False)
        self.down = nn.Linear(FF, HIDDEN, bias=False)

    def forward(self, x, cos, sin, causal):
        b, t, _ = x.shape
        hd = HIDDEN // HEADS
        h = self.input_norm(x)
        q, k, v = (proj(h).view(b, t, HEADS, hd).transpose(1, 2) for proj in (self.q, self.k, self.v))
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(hd) + causal
        attn = torch.softmax(scores, dim=-1) @ v
        x = x + self.o(attn.transpose(1, 2).reshape(b, t, HIDDEN))
        h = self.post_norm(x)
        return x + self.down(F.silu(self.gate(h)) * self.up(h))


class Llama(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, HIDDEN)
        self.layers = nn.ModuleList(DecoderLayer() for _ in range(LAYERS))
        self.norm = RMSNorm(HIDDEN)
        self.lm_head = nn.Linear(HIDDEN, VOCAB, bias=False)

    def forward(self, ids, lm_head=True):
        t = ids.shape[1]
        hd = HIDDEN // HEADS
        inv_freq = 1.0 / (10000 ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd))
        angles = torch.outer(torch.arange(t, dtype=torch.float32), inv_freq)
        angles = torch.cat((angles, angles), dim=-1)
        causal = torch.full((t, t), float("-inf")).triu(1)
        x = self.embed(ids)
        for layer in self.layers:
            x = layer(x, angles.cos(), angles.sin(), causal)
        hidden = self.norm(x)
        return (self.lm_head(hidden) if lm_head else None), hidden


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--official", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)

    policy = Llama()
    reference = Llama()
    reference.load_state_dict(policy.state_dict())
    reference.requires_grad_(False)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=1e-5)
    n, t = 2 * a.pairs, a.seq
    target = torch.randint(0, VOCAB, (n, t))
    source = torch.randint(0, VOCAB, (n, t))
    response = torch.zeros(n, t)
    response[:, t // 4:] = 1.0  # prompt = first quarter, as the engine benchmark
    ref_gap = torch.randn(a.pairs)
    ref_pooled = torch.randn(n, HIDDEN) * 1e-2

    def avg_logp(logits, ids):
        logp = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, ids[:, 1:, None]).squeeze(-1)
        mask = response[:, 1:]
        return (logp * mask).sum(-1) / mask.sum(-1)

    def pooled(hidden):
        return (hidden * response[..., None]).sum(1) / response.sum(1, keepdim=True)

    def step():
        nonlocal ref_gap, ref_pooled
        logits, _ = policy(target)
        lp = avg_logp(logits, target)
        gap = lp[: a.pairs] - lp[a.pairs:]
        if a.official:
            with torch.no_grad():
                ref_logits, ref_hidden = reference(source)
                ref_lp = avg_logp(ref_logits, source)
                ref_gap = ref_lp[: a.pairs] - ref_lp[a.pairs:]
                ref_pooled = pooled(ref_hidden)
        _, hidden = policy(source, lm_head=a.official)
        loss = F.mse_loss(gap, ref_gap) + F.mse_loss(pooled(hidden), ref_pooled)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    step()  # warm-up
    seconds = []
    for _ in range(a.steps):
        t0 = time.perf_counter()
        step()
        seconds.append(time.perf_counter() - t0)
    sec = statistics.median(seconds)
    tokens = 4 * a.pairs * t
    params = sum(p.numel() for p in policy.parameters())
    print(f"torch {torch.__version__} {'official' if a.official else 'engine-shaped'} threads={a.threads} "
          f"pairs={a.pairs} params={params} tokens/step={tokens} s/step={sec:.4f} tokens/s={tokens / sec:.0f}")


if __name__ == "__main__":
    main()
