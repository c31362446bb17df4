"""PyTorch side of scripts/bench_epochs.sh: SATURN's pretraining and fine-tuning epochs with the
network and losses of saturn_reference.py (the parity reference of src/model), on the same cells,
genes, macrogene count, batch size and schedule as satlas' run, timed per epoch.

Inputs: the two raw h5ad files and, per species, the model's genes in weight-column order (one
symbol per line, exported from the atlas by bench_epochs.sh). Cells without a count in those genes
are dropped, as satlas does. The initial macrogene weights are the atlas' (one line per gene,
`[w_1, ..., w_M]`, in weight-column order): the early epochs' speed depends on them (satlas'
first pretraining epochs on the rank weights are several times slower than its later ones). Gene
embeddings for the regulariser are random normal: its cost depends on their shape only.

Fine-tuning mines with `mine_vectorised`, the semantics of saturn_reference.mine (SATURN.md
section 6) with numpy array operations instead of Python loops over cells (the loop version takes
minutes per 4,096-cell batch and would make the comparison meaningless); its random draws come in
another order, so the triplets differ from satlas', not their rule.

Prints one `name value` line per measurement (bench_epochs.sh parses them).

Run: ~/.cache/satlas/refenv/bin/python scripts/reference/saturn_bench.py --h5ad human.h5ad \
    --genes human.genes.txt --h5ad mouse.h5ad --genes mouse.genes.txt --weights weights.txt ...
"""
import argparse
import json
import os
import resource
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, ".."))
from make_fixtures import load_old_h5ad  # noqa: E402
from saturn_reference import Saturn, log_zinb_positive, regulariser, triplet_loss  # noqa: E402


def species_counts(h5ad, genes_file, label):
    """CSR counts (cells x model genes, float32) and labels of the cells with a count in those
    genes (satlas trains on those only)."""
    m, _, genes, obs = load_old_h5ad(h5ad)
    column = {g.upper(): j for j, g in enumerate(genes)}
    wanted = [line.strip() for line in open(genes_file, encoding="utf-8") if line.strip()]
    x = m[:, [column[g.upper()] for g in wanted]].tocsr().astype(np.float32)
    nonempty = np.asarray(x.sum(axis=1)).ravel() > 0
    return x[nonempty], np.asarray(obs[label])[nonempty]


def dense(x, rows):
    return torch.from_numpy(x[rows].toarray())


def mine_vectorised(sim, labels, species, margin, rng):
    """saturn_reference.mine with array operations; draws from `rng`."""
    b = len(labels)
    other = species[None, :] != species[:, None]
    n_of = np.where(other, sim, -np.inf).argmax(1)
    back = np.where(~other, sim[n_of], -np.inf).argmax(1)
    mutual = other.any(1) & (labels[back] == labels)
    out = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        group = np.union1d(members, n_of[members[mutual[members]]])
        if len(group) < 2:
            continue
        for asp in np.unique(species[group]):
            positives = group[species[group] != asp]
            anchors = group[species[group] == asp]
            if len(positives) == 0:
                continue
            p = positives[np.minimum((rng.random(len(anchors)) * len(positives)).astype(int),
                                     len(positives) - 1)]
            allowed = ((species[None, :] == species[anchors, None]) | (species[None, :] == species[p, None]))
            neg = allowed & (labels[None, :] != labels[anchors, None]) & (labels[None, :] != labels[p, None])
            count = neg.sum(1)
            k = np.minimum((rng.random(len(anchors)) * count).astype(int), np.maximum(count - 1, 0))
            n = (np.cumsum(neg, 1) > k[:, None]).argmax(1)
            gap = sim[anchors, p] - sim[anchors, n]
            keep = (count > 0) & (gap > 0) & (gap <= margin)
            out += list(zip(anchors[keep].tolist(), p[keep].tolist(), n[keep].tolist()))
    assert all(x < b for t in out for x in t)
    return out


def pretrain(net, data, e, epochs, batch, lr, rng):
    opt = torch.optim.Adam(net.parameters(), lr=lr, betas=(0.9, 0.999), eps=1e-8)
    cells = [(s, r) for s, x in enumerate(data) for r in range(x.shape[0])]
    n_genes = e.shape[0]
    net.train()
    seconds = []
    for _ in range(epochs):
        start = time.perf_counter()
        order = rng.permutation(len(cells))
        for k in range(0, len(order), batch):
            chunk = [cells[i] for i in order[k:k + batch]]
            terms = []
            for s in sorted({s for s, _ in chunk}):
                x = dense(data[s], [r for t, r in chunk if t == s])
                _, _, _, mu, pi, theta = net(s, x)
                terms.append(-log_zinb_positive(x, mu, theta, pi).sum(-1).mean())
            zinb = torch.stack(terms).sum()
            partners = torch.randint(n_genes, (n_genes,))
            loss = zinb + 0.2 * regulariser(net.gene_vectors(), e, partners)
            opt.zero_grad()
            loss.backward()
            opt.step()
        seconds.append(time.perf_counter() - start)
    return seconds


def finetune(net, data, labels, epochs, batch, lr, margin, rng):
    net.eval()
    with torch.no_grad():  # frozen macrogenes, computed once (satlas' default)
        parts = []
        for s, x in enumerate(data):
            w = net.p_weights.exp()[:, net.offsets[s]:net.offsets[s] + net.genes[s]]
            parts.append(F.relu(net.cl_layer_norm(torch.log1p(dense(x, slice(None))) @ w.T)))
        m_all = torch.cat(parts)
    species = np.concatenate([np.full(x.shape[0], s) for s, x in enumerate(data)])
    encoder = net.encoder
    encoder.train()
    opt = torch.optim.Adam(encoder.parameters(), lr=lr)
    seconds, triplets = [], 0
    for _ in range(epochs):
        start = time.perf_counter()
        order = rng.permutation(len(labels))
        for k in range(0, len(order), batch):
            idx = np.sort(order[k:k + batch])
            z = encoder(m_all[idx])
            zn = F.normalize(z, dim=1)
            sim = (zn @ zn.T).detach().numpy()
            found = mine_vectorised(sim, labels[idx], species[idx], np.float32(margin), rng)
            loss = triplet_loss(zn, found, margin)
            if found:
                opt.zero_grad()
                loss.backward()
                opt.step()
            triplets += len(found)
        seconds.append(time.perf_counter() - start)
    return seconds, triplets


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--h5ad", action="append", required=True)
    parser.add_argument("--genes", action="append", required=True)
    parser.add_argument("--label", default="cell_type1")
    parser.add_argument("--weights", required=True, help="initial weights, one JSON list per gene")
    parser.add_argument("--embedding-dim", type=int, default=320)
    parser.add_argument("--pretrain-epochs", type=int, default=3)
    parser.add_argument("--finetune-epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    data, labels = [], []
    for h5ad, genes in zip(args.h5ad, args.genes):
        x, lab = species_counts(h5ad, genes, args.label)
        data.append(x)
        labels.append(lab)
    genes = [x.shape[1] for x in data]
    with open(args.weights, encoding="utf-8") as f:
        init_w = torch.tensor([json.loads(line.strip().strip('"')) for line in f if line.strip()]).T.contiguous()
    assert init_w.shape[1] == sum(genes), f"{init_w.shape[1]} weight columns for {sum(genes)} genes"
    net = Saturn(genes, init_w.shape[0], 256, 256, 0.1, init_w)
    e = torch.randn(sum(genes), args.embedding_dim)
    label_ids = np.unique(np.concatenate([[f"{s}_{l}" for l in lab] for s, lab in enumerate(labels)]),
                          return_inverse=True)[1]
    n_cells = sum(x.shape[0] for x in data)
    print(f"threads {torch.get_num_threads()}")
    print(f"cells {n_cells}")
    print(f"genes {sum(genes)}")
    pre = pretrain(net, data, e, args.pretrain_epochs, args.batch_size, 5e-4, rng)
    fine, triplets = finetune(net, data, label_ids, args.finetune_epochs, args.batch_size, 1e-3, 0.2, rng)
    for name, values in [("pretrain", pre), ("finetune", fine)]:
        print(f"{name}_epoch_seconds_median {np.median(values):.4f}")
        print(f"{name}_epoch_seconds_all {' '.join(f'{v:.3f}' for v in values)}")
    print(f"finetune_triplets {triplets}")
    print(f"peak_rss_mb {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}")


if __name__ == "__main__":
    main()
