#!/usr/bin/env python3
"""A SURROGATE mouse proteome made of human sequences (no real mouse proteome is on this machine).

For every 1:1 human->mouse pair of Ensembl's homology table whose human gene has a protein, the
HUMAN sequence under the mouse symbol, as `>MouseSymbol surrogate=human:HUMAN uniprot=ACC`. It
exercises the pipeline; it is NOT real mouse data, and integration quality measured with it says
nothing about real cross-species integration.

    python3 scripts/surrogate_proteome.py HUMAN.fa GENE_MATCHES_1v1.csv OUT.fa.gz

Standard library only; `scripts/make_fixtures.py` uses the same functions for the fixture proteome
(restricted there to the genes of the mouse fixture).
"""

import csv
import gzip
import sys


def read_fasta(path):
    """[(header, sequence)] of a plain FASTA."""
    records = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line.startswith(">"):
                records.append([line[1:], []])
            elif line:
                records[-1][1].append(line)
    return [(h, "".join(s)) for h, s in records]


def fasta_text(records, width=60):
    out = []
    for header, seq in records:
        out.append(">" + header)
        out += [seq[i : i + width] for i in range(0, len(seq), width)]
    return "\n".join(out) + "\n"


def write_gzip(path, text):
    """Writes `text` gzip-compressed with a zero timestamp and no file name (deterministic)."""
    with open(path, "wb") as raw:
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as gz:
            gz.write(text.encode("utf-8"))


def surrogate_records(human_records, table, mouse_genes=None):
    """Sorted surrogate records: the human sequence of every 1:1 pair in `table` (CSV path) whose
    human gene is in `human_records` and, when `mouse_genes` is given, whose mouse gene is in it."""
    by_symbol = {h.split()[0]: (h, s) for h, s in human_records}
    surrogate = []
    with open(table, encoding="utf-8") as f:
        for row in csv.DictReader(f):
            human, mouse = row["human.gene.name"], row["gene.name"]
            if (mouse_genes is None or mouse in mouse_genes) and human in by_symbol:
                header, seq = by_symbol[human]
                uniprot = header.split("uniprot=")[1].split()[0]
                surrogate.append((f"{mouse} surrogate=human:{human} uniprot={uniprot}", seq))
    surrogate.sort()
    return surrogate


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    human_fa, table, out = sys.argv[1:]
    records = surrogate_records(read_fasta(human_fa), table)
    write_gzip(out, fasta_text(records))
    print(f"{out}: SURROGATE mouse proteome, {len(records)} human sequences under mouse symbols")


if __name__ == "__main__":
    main()
