"""Hugging Face transformers' ESM-2 throughput on the proteins benches/esm2.rs uses.

    ~/.cache/satlas/refenv/bin/python scripts/reference/esm2_bench.py [THREADS]

Same proteins (records 0, 256, 512, ... -- 64 of them -- of
../shared/data/proteins/human_swissprot2014_baron_genes.fa), same tokens (<cls> residues <eos> cut to
1022 tokens), same batching (sorted by length, longest first, batch size x longest <= 4096 tokens),
the same mean pooling, f32, torch.inference_mode, default attention (sdpa). Prints tokens/s (median
of 5 timed runs after one warm-up) as `hf_tokens_per_s <value>`.
"""

import os
import statistics
import sys
import time

import torch
from transformers import EsmModel

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA = os.path.join(ROOT, "..", "shared", "data")
VOCAB = ("<cls> <pad> <eos> <unk> L A G V S E R T I D P K Q N F Y M H W C X B U Z O . - "
         "<null_1> <mask>").split()
IDS = {t: i for i, t in enumerate(VOCAB)}


def proteins():
    records = []
    with open(os.path.join(DATA, "proteins", "human_swissprot2014_baron_genes.fa")) as f:
        for line in f:
            if line.startswith(">"):
                records.append([line[1:].split()[0], ""])
            elif records:
                records[-1][1] += line.strip()
    return records[::256][:64]


def encode(seq):
    ids = [IDS["<cls>"]] + [IDS.get(c, IDS["<unk>"]) for c in seq] + [IDS["<eos>"]]
    return ids[:1022], min(len(seq), 1021)


def batches(lengths, budget=4096):
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    out, cur = [], []
    for i in order:
        width = lengths[cur[0]] if cur else lengths[i]
        if cur and (len(cur) + 1) * width > budget:
            out.append(cur)
            cur = []
        cur.append(i)
    return out + ([cur] if cur else [])


def embed(model, encoded, plan):
    out = [None] * len(encoded)
    for batch in plan:
        width = max(len(encoded[i][0]) for i in batch)
        ids = torch.full((len(batch), width), IDS["<pad>"], dtype=torch.int64)
        mask = torch.zeros((len(batch), width), dtype=torch.int64)
        for r, i in enumerate(batch):
            ids[r, : len(encoded[i][0])] = torch.tensor(encoded[i][0])
            mask[r, : len(encoded[i][0])] = 1
        hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state
        for r, i in enumerate(batch):
            out[i] = hidden[r, 1 : encoded[i][1] + 1].mean(0)
    return out


def main():
    threads = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    torch.set_num_threads(threads)
    model = EsmModel.from_pretrained(os.path.join(DATA, "esm2_t6_8M_finetuned"), add_pooling_layer=False).eval()
    encoded = [encode(s) for _, s in proteins()]
    tokens = sum(len(ids) for ids, _ in encoded)
    plan = batches([len(ids) for ids, _ in encoded])
    times = []
    with torch.inference_mode():
        embed(model, encoded, plan)
        for _ in range(5):
            t0 = time.perf_counter()
            embed(model, encoded, plan)
            times.append(time.perf_counter() - t0)
    median = statistics.median(times)
    print(f"transformers: {len(encoded)} proteins, {tokens} tokens, {threads} threads, "
          f"attention {model.config._attn_implementation}, median {median:.3f} s")
    print(f"hf_tokens_per_s {tokens / median:.1f}")


if __name__ == "__main__":
    main()
