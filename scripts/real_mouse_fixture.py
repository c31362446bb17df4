#!/usr/bin/env python3
"""Writes fixtures/proteins/mouse.fa.gz: REAL mouse protein sequences (Swiss-Prot 2014_01, from
../shared/data/proteins/mouse_swissprot2014_baron_genes.fa; provenance in that folder's README)
for the mouse genes of the fixture proteome (the genes of fixtures/proteins/mouse_surrogate.fa.gz:
1:1 orthologs of the human fixture proteome's genes that the mouse fixture data has), so the demo
integrates real mouse and human sequences at fixture size. Genes the real file lacks are left
out and counted. Standard library only; deterministic (input order, fixed gzip mtime).

    python3 scripts/real_mouse_fixture.py [REAL_MOUSE_FASTA]
"""

import gzip
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REAL = os.path.join(ROOT, "..", "shared", "data", "proteins", "mouse_swissprot2014_baron_genes.fa")
SURROGATE = os.path.join(ROOT, "fixtures", "proteins", "mouse_surrogate.fa.gz")
OUT = os.path.join(ROOT, "fixtures", "proteins", "mouse.fa.gz")


def records(lines):
    header, seq = None, []
    for line in lines:
        line = line.rstrip("\n")
        if line.startswith(">"):
            if header is not None:
                yield header, "".join(seq)
            header, seq = line[1:], []
        elif line:
            seq.append(line)
    if header is not None:
        yield header, "".join(seq)


def main(real):
    with gzip.open(SURROGATE, "rt") as f:
        wanted = [h.split()[0] for h, _ in records(f)]
    with open(real) as f:
        by_gene = {}
        for header, seq in records(f):
            by_gene.setdefault(header.split()[0], (header, seq))
    kept = [by_gene[g] for g in wanted if g in by_gene]
    text = "".join(
        f">{h}\n" + "".join(s[i : i + 60] + "\n" for i in range(0, len(s), 60)) for h, s in kept
    )
    with open(OUT, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as f:
        f.write(text.encode())
    print(f"{OUT}: {len(kept)} of {len(wanted)} fixture mouse genes have a real sequence")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else REAL)
