"""Idiomatic PyTorch encoder-decoder Transformer (the DeepMind Mathematics model) for the per-step benchmark.

The same network as modlab's mask_transformer: one embedding table tied to the output layer,
sinusoidal positions added (no scaling), post-norm nn.TransformerEncoderLayer / DecoderLayer with
ReLU and no final norm, dropout 0, teacher forcing, cross-entropy ignoring padding;
Adam(lr 1e-4, betas (0.9, 0.995), eps 1e-9) and gradient clipping at 0.1, as the reference trains.
The batch is random tokens with the benchmark's fixed lengths (row i: question length
Lq - i mod (Lq/2), answer length La - i mod (La/2)). Prints "ms_per_step <d> <value>" for each d.
"""
import argparse
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

PAD, START, END, VOCAB = 0, 1, 2, 40


def positions(steps, d):
    pos = torch.arange(steps, dtype=torch.float32).unsqueeze(1)
    freq = torch.exp(torch.arange(0, d, 2, dtype=torch.float32) * (-math.log(10000.0) / d))
    pe = torch.zeros(steps, d)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq)
    return pe


class Seq2Seq(nn.Module):
    def __init__(self, d, heads, layers):
        super().__init__()
        self.embedding = nn.Embedding(VOCAB, d)
        enc = nn.TransformerEncoderLayer(d, heads, 4 * d, dropout=0.0, batch_first=True)
        dec = nn.TransformerDecoderLayer(d, heads, 4 * d, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(enc, layers, enable_nested_tensor=False)
        self.decoder = nn.TransformerDecoder(dec, layers)
        self.register_buffer("pe", positions(512, d))

    def forward(self, src, tgt_in, src_pad):
        memory = self.encoder(self.embedding(src) + self.pe[: src.size(1)], src_key_padding_mask=src_pad)
        causal = torch.triu(torch.full((tgt_in.size(1), tgt_in.size(1)), float("-inf")), 1)
        h = self.decoder(self.embedding(tgt_in) + self.pe[: tgt_in.size(1)], memory, tgt_mask=causal,
                         memory_key_padding_mask=src_pad)
        return h @ self.embedding.weight.t()


def batch(rows, lq, la):
    g = torch.Generator().manual_seed(0)
    src = torch.randint(3, VOCAB, (rows, lq), generator=g)
    tgt = torch.randint(3, VOCAB, (rows, la), generator=g)
    for i in range(rows):
        nq, na = lq - i % (lq // 2), la - i % (la // 2)
        src[i, nq:] = PAD
        tgt[i, na - 1] = END
        tgt[i, na:] = PAD
    return src, tgt


def ms_per_step(d, heads, layers, rows, lq, la, steps):
    torch.manual_seed(0)
    model = Seq2Seq(d, heads, layers)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.9, 0.995), eps=1e-9)
    src, tgt = batch(rows, lq, la)
    tgt_in = torch.cat([torch.full((rows, 1), START), tgt[:, :-1]], 1)
    pad = src.eq(PAD)

    def step():
        opt.zero_grad()
        logits = model(src, tgt_in, pad)
        loss = F.cross_entropy(logits.reshape(-1, VOCAB), tgt.reshape(-1), ignore_index=PAD)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 0.1)
        opt.step()
        return loss.item()

    for _ in range(5):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - t0) * 1000.0 / steps


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--rows", type=int, default=64)
    p.add_argument("--lq", type=int, default=40)
    p.add_argument("--la", type=int, default=12)
    p.add_argument("--config", nargs="+", default=["64:4:2"], help="d:heads:layers")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    for c in a.config:
        d, heads, layers = (int(x) for x in c.split(":"))
        steps = max(3, a.steps * 64 // d)
        print("ms_per_step", c, ms_per_step(d, heads, layers, a.rows, a.lq, a.la, steps), flush=True)


if __name__ == "__main__":
    main()
