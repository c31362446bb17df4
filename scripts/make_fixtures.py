#!/usr/bin/env python3
"""Regenerate satlas's test fixtures (fixtures/) deterministically from /work/shared/data.

Sources and licences
--------------------
* Baron et al. 2016 pancreas scRNA-seq (inDrop), human and mouse, as shipped in the PyPI package
  `came` 0.1.13 (MIT licence, see ../shared/data/baron_pancreas/LICENSE_came_MIT.txt):
  raw-Baron_{human,mouse}.h5ad (old AnnData encoding) and Baron_human_modern.h5ad (current
  encoding), plus Ensembl's 1:1 human-mouse homology table gene_matches_1v1_human2mouse.csv.
* Human protein sequences: Swiss-Prot (January 2014, GO-annotated subset) from Debian
  `metastudent-data` 2.0.1-8 (GPL-2+, see ../shared/data/proteins/COPYRIGHT_metastudent-data_GPL2+.txt),
  mapped to HGNC symbols: proteins/human_swissprot2014_baron_genes.fa.

What it writes (see fixtures/README.md)
---------------------------------------
* baron/human.h5ad, baron/mouse.h5ad: a stratified subset (the first CELLS_PER_TYPE cells of each
  `cell_type1`, in file order, kept in file order) of the raw-Baron files, ALL genes, same old
  AnnData encoding as the source (categorical codes with object-reference `categories` attributes).
* baron/human_modern.h5ad: the same human cells taken from Baron_human_modern.h5ad, current encoding.
* baron/human_10x/: the same human subset as a 10x directory (matrix.mtx.gz genes x cells,
  features.tsv.gz, barcodes.tsv.gz) plus obs.csv (barcode + every obs column).
* proteins/human.fa.gz: human proteins of the genes detected in at least MIN_FRACTION_FOR_PROTEIN
  of the cells of the human subset (all 17,205 would be 5.8 MB gzipped: over the size budget).
* proteins/mouse_surrogate.fa.gz: a SURROGATE mouse proteome, NOT real mouse data: for every 1:1
  human->mouse pair whose mouse gene is in the mouse data and whose human gene is in
  proteins/human.fa.gz, the HUMAN sequence under `>MouseSymbol surrogate=human:HUMAN uniprot=ACC`.
* legacy/anndata06.h5ad: the first 8 cells x 200 genes of the human subset in the anndata < 0.7
  layout (compound obs/var datasets, `uns/<col>_categories`, `h5sparse_format` X).
* bad/: tiny malformed inputs for error tests.
* expected.json: the facts the Rust tests check, computed here with numpy, independently of the
  Rust readers.

Run with a Python that has h5py, numpy and scipy (nothing else):
    python3 scripts/make_fixtures.py [--data ../shared/data] [--out fixtures]
Output is deterministic: no randomness, gzip streams written with mtime 0, HDF5 objects without
timestamps.
"""

import argparse
import csv
import io
import json
import os
import shutil

import h5py
import numpy as np
import scipy.sparse as sp
from surrogate_proteome import fasta_text, read_fasta, surrogate_records, write_gzip

CELLS_PER_TYPE = 20
MIN_FRACTION_FOR_PROTEIN = 0.3
H5_COMPRESSION = dict(compression="gzip", compression_opts=9, shuffle=True)


def stratified_cells(path, column="cell_type1", per_type=CELLS_PER_TYPE):
    """Indices of the first `per_type` cells of each category, in file order."""
    with h5py.File(path, "r") as f:
        codes = f["obs"][column][:]
    taken = {}
    keep = []
    for i, c in enumerate(codes):
        if taken.get(c, 0) < per_type:
            taken[c] = taken.get(c, 0) + 1
            keep.append(i)
    return np.array(keep)


def create_dataset(group, name, data, dtype):
    kwargs = {}
    if np.ndim(data) == 1 and np.size(data) > 0:
        kwargs = dict(H5_COMPRESSION, chunks=(min(np.size(data), 1 << 16),))
    return group.create_dataset(name, data=data, dtype=dtype, track_times=False, **kwargs)


def copy_attrs(src, dst, deferred_refs):
    for key in src.attrs:
        value = src.attrs[key]
        if isinstance(value, h5py.Reference):
            deferred_refs.append((dst.name, key, src.file[value].name))
        else:
            dst.attrs.create(key, value, dtype=src.attrs.get_id(key).dtype)


def subset_h5ad(src_path, dst_path, cells):
    """Copies an h5ad keeping only rows `cells` of X and obs, preserving its encoding exactly
    (attributes, dtypes, object references)."""
    deferred_refs = []
    with h5py.File(src_path, "r") as src, h5py.File(dst_path, "w", track_order=False) as dst:
        n_obs = src["obs"][src["obs"].attrs["_index"]].shape[0]

        def walk(sgroup, dgroup):
            copy_attrs(sgroup, dgroup, deferred_refs)
            for name, obj in sgroup.items():
                if isinstance(obj, h5py.Group):
                    if obj.attrs.get("encoding-type") == "csr_matrix" and obj.name == "/X":
                        write_csr_subset(obj, dgroup.create_group(name), cells)
                    else:
                        walk(obj, dgroup.create_group(name, track_order=False))
                    continue
                data = obj[()]
                on_obs_axis = (
                    obj.name.startswith("/obs/")
                    and "/__categories/" not in obj.name
                    and not obj.name.endswith("/categories")
                    and obj.shape[:1] == (n_obs,)
                )
                if on_obs_axis:
                    data = data[cells]
                ds = create_dataset(dgroup, name, data, obj.dtype)
                copy_attrs(obj, ds, deferred_refs)

        walk(src, dst)
        for holder, key, target in deferred_refs:
            dst[holder].attrs[key] = dst[target].ref


def write_csr_subset(src, dst, cells):
    shape = src.attrs["shape"]
    m = sp.csr_matrix((src["data"][:], src["indices"][:], src["indptr"][:]), shape=tuple(shape))
    m = m[cells]
    for key in src.attrs:
        dst.attrs.create(key, src.attrs[key], dtype=src.attrs.get_id(key).dtype)
    dst.attrs["shape"] = np.array(m.shape, dtype=src.attrs["shape"].dtype)
    create_dataset(dst, "data", m.data, src["data"].dtype)
    create_dataset(dst, "indices", m.indices, src["indices"].dtype)
    create_dataset(dst, "indptr", m.indptr, src["indptr"].dtype)


def decode(values):
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values]


def load_old_h5ad(path):
    """(X csr int64, barcodes, genes, {obs column: list of str}) of an old-encoding h5ad."""
    with h5py.File(path, "r") as f:
        x = f["X"]
        m = sp.csr_matrix(
            (x["data"][:], x["indices"][:], x["indptr"][:]), shape=tuple(x.attrs["shape"])
        )
        assert np.all(m.data == np.round(m.data)) and m.data.min() >= 0
        m = m.astype(np.int64)
        obs = f["obs"]
        barcodes = decode(obs[obs.attrs["_index"]][:])
        genes = decode(f["var"][f["var"].attrs["_index"]][:])
        columns = {}
        for name in decode(obs.attrs["column-order"]):
            codes = obs[name][:]
            cats = decode(f[obs[name].attrs["categories"]][:])
            columns[name] = [cats[c] if c >= 0 else "" for c in codes]
    return m, barcodes, genes, columns


def dataset_facts(m, genes, columns):
    types, counts = np.unique(columns["cell_type1"], return_counts=True)
    return {
        "n_cells": int(m.shape[0]),
        "n_genes": len(genes),
        "nnz": int(m.nnz),
        "total_counts": int(m.sum()),
        "cell_type1": {str(t): int(n) for t, n in zip(types, counts)},
    }


def write_10x(out_dir, m, barcodes, genes, columns):
    os.makedirs(out_dir, exist_ok=True)
    coo = m.T.tocoo()  # genes x cells
    order = np.lexsort((coo.row, coo.col))  # cell by cell, genes ascending
    lines = [
        "%%MatrixMarket matrix coordinate integer general",
        "%metadata_json: {\"source\": \"Baron et al. 2016 via came 0.1.13 (MIT); satlas fixture\"}",
        f"{m.shape[1]} {m.shape[0]} {m.nnz}",
    ]
    lines += [f"{r + 1} {c + 1} {v}" for r, c, v in zip(coo.row[order], coo.col[order], coo.data[order])]
    write_gzip(os.path.join(out_dir, "matrix.mtx.gz"), "\n".join(lines) + "\n")
    write_gzip(
        os.path.join(out_dir, "features.tsv.gz"),
        "".join(f"{g}\t{g}\tGene Expression\n" for g in genes),
    )
    write_gzip(os.path.join(out_dir, "barcodes.tsv.gz"), "".join(f"{b}\n" for b in barcodes))
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    names = list(columns)
    writer.writerow(["barcode"] + names)
    for i, b in enumerate(barcodes):
        writer.writerow([b] + [columns[n][i] for n in names])
    with open(os.path.join(out_dir, "obs.csv"), "w", encoding="utf-8") as f:
        f.write(buf.getvalue())


def proteome_facts(records):
    kept = [(h, s) for h, s in records if "*" not in s]
    return {
        "records": len(records),
        "kept": len(kept),
        "dropped": len(records) - len(kept),
        "distinct_genes": len({h.split()[0] for h, _ in kept}),
    }


def write_bad(out_dir, human_h5ad):
    os.makedirs(out_dir, exist_ok=True)
    with open(human_h5ad, "rb") as f:
        head = f.read(4096)
    with open(os.path.join(out_dir, "truncated.h5ad"), "wb") as f:
        f.write(head)
    # A log-normalised matrix (modern encoding): log1p(counts / total * 1e4).
    counts = np.array([[0, 3, 1], [2, 0, 0], [5, 1, 0], [0, 0, 4]], dtype=np.float64)
    lognorm = np.log1p(counts / counts.sum(1, keepdims=True) * 1e4).astype(np.float32)
    write_tiny_h5ad(os.path.join(out_dir, "lognorm.h5ad"), lognorm)
    # One fault each in an otherwise valid 4 cells x 3 genes file (see fixtures/README.md).
    for name, value in (("nan_counts", np.nan), ("inf_counts", np.inf), ("negative_counts", -2.0)):
        x = counts.copy()
        x[2, 1] = value
        write_tiny_h5ad(os.path.join(out_dir, f"{name}.h5ad"), x)
    write_tiny_h5ad(os.path.join(out_dir, "duplicate_cells.h5ad"), counts, cells=["c1", "c2", "c1", "c4"])
    write_tiny_h5ad(os.path.join(out_dir, "duplicate_genes.h5ad"), counts, genes=["INS", "GCG", "INS"])
    write_tiny_h5ad(os.path.join(out_dir, "all_na_labels.h5ad"), counts, codes=[-1, -1, -1, -1])
    write_tiny_h5ad(os.path.join(out_dir, "no_protein_genes.h5ad"), counts, genes=["NOPROT1", "NOPROT2", "NOPROT3"])
    write_tiny_h5ad(os.path.join(out_dir, "shape_mismatch.h5ad"), counts, genes=["INS", "GCG"])
    write_tiny_h5ad(os.path.join(out_dir, "no_cells.h5ad"), counts[:0], cells=[])
    write_tiny_h5ad(os.path.join(out_dir, "bad_indptr.h5ad"), counts, indptr=[0, 2, 1, 4, 6])
    write_tiny_h5ad(os.path.join(out_dir, "gene_index_out_of_range.h5ad"), counts, indices=[1, 7, 0, 0, 1, 2])
    with open(os.path.join(out_dir, "empty.fa"), "w") as f:
        pass
    with open(os.path.join(out_dir, "sequence_before_header.fa"), "w") as f:
        f.write("MALWMRLLPLLALLALWGPDPAAA\n>INS uniprot=P01308\nMALWMRLLPLL\n")
    tenx = os.path.join(out_dir, "truncated_10x")
    os.makedirs(tenx, exist_ok=True)
    with open(os.path.join(tenx, "matrix.mtx"), "w") as f:
        f.write("%%MatrixMarket matrix coordinate integer general\n3 2 5\n1 1 4\n2 1 1\n3 2 7\n")
    with open(os.path.join(tenx, "features.tsv"), "w") as f:
        f.write("INS\tINS\tGene Expression\nGCG\tGCG\tGene Expression\nSST\tSST\tGene Expression\n")
    with open(os.path.join(tenx, "barcodes.tsv"), "w") as f:
        f.write("AAAC-1\nAAAG-1\n")



def write_tiny_h5ad(path, x, cells=("c1", "c2", "c3", "c4"), genes=("INS", "GCG", "SST"),
                    codes=(0, 1, 0, 1), indptr=None, indices=None):
    """A tiny h5ad in the current encoding: X = CSR of `x` (float32; stored zeros dropped, NaN and
    Inf kept), obs index `cells` and a categorical `cell_type` with `codes` into [alpha, beta],
    var index `genes`. `indptr` / `indices` replace X's arrays to make it inconsistent."""
    csr = sp.csr_matrix(np.asarray(x, dtype=np.float32))
    with h5py.File(path, "w") as f:
        f.attrs["encoding-type"] = "anndata"
        f.attrs["encoding-version"] = "0.1.0"
        g = f.create_group("X")
        g.attrs["encoding-type"] = "csr_matrix"
        g.attrs["encoding-version"] = "0.1.0"
        g.attrs["shape"] = np.array(csr.shape, dtype=np.int64)
        arrays = {
            "data": csr.data,
            "indices": csr.indices if indices is None else np.array(indices, dtype=np.int32),
            "indptr": csr.indptr if indptr is None else np.array(indptr, dtype=np.int32),
        }
        for name, data in arrays.items():
            g.create_dataset(name, data=data, track_times=False)
        for axis, names in (("obs", list(cells)), ("var", list(genes))):
            frame = f.create_group(axis)
            frame.attrs["encoding-type"] = "dataframe"
            frame.attrs["encoding-version"] = "0.2.0"
            frame.attrs["_index"] = "_index"
            columns = ["cell_type"] if axis == "obs" else []
            frame.attrs.create("column-order", np.array(columns, dtype=object), dtype=h5py.string_dtype())
            ds = frame.create_dataset("_index", data=names, dtype=h5py.string_dtype(), track_times=False)
            ds.attrs["encoding-type"] = "string-array"
            ds.attrs["encoding-version"] = "0.2.0"
        obs = f["obs"]
        cat = obs.create_group("cell_type")
        cat.attrs["encoding-type"] = "categorical"
        cat.attrs["encoding-version"] = "0.2.0"
        cat.attrs["ordered"] = False
        cat.create_dataset("codes", data=np.array(codes[: len(cells)], dtype=np.int8), track_times=False)
        cats = cat.create_dataset("categories", data=["alpha", "beta"], dtype=h5py.string_dtype(), track_times=False)
        cats.attrs["encoding-type"] = "string-array"
        cats.attrs["encoding-version"] = "0.2.0"

def write_anndata06(path, m, barcodes, genes, columns, n_cells=8, n_genes=200):
    """The first `n_cells` x `n_genes` of a dataset in the anndata < 0.7 layout: obs and var as
    compound datasets (index in field `index`), categorical codes with categories in
    `uns/<col>_categories`, X as a group with `h5sparse_format`/`h5sparse_shape` attributes."""
    sub = m[:n_cells, :n_genes].tocsr()
    string = h5py.string_dtype()
    types = sorted(set(columns["cell_type1"][:n_cells]))
    obs = np.zeros(
        n_cells,
        dtype=[("index", string), ("cell_type1", np.int8), ("donor", string), ("n_counts", np.float32)],
    )
    obs["index"] = barcodes[:n_cells]
    obs["cell_type1"] = [types.index(t) for t in columns["cell_type1"][:n_cells]]
    obs["donor"] = columns["donor"][:n_cells]
    obs["n_counts"] = np.asarray(sub.sum(axis=1)).ravel()
    var = np.zeros(n_genes, dtype=[("index", string)])
    var["index"] = genes[:n_genes]
    with h5py.File(path, "w") as f:
        f.create_dataset("obs", data=obs, track_times=False)
        f.create_dataset("var", data=var, track_times=False)
        f.create_dataset("uns/cell_type1_categories", data=types, dtype=string, track_times=False)
        x = f.create_group("X")
        x.attrs["h5sparse_format"] = "csr"
        x.attrs["h5sparse_shape"] = np.array(sub.shape, dtype=np.int64)
        x.create_dataset("data", data=sub.data.astype(np.float32), track_times=False)
        x.create_dataset("indices", data=sub.indices.astype(np.int32), track_times=False)
        x.create_dataset("indptr", data=sub.indptr.astype(np.int32), track_times=False)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=os.path.join(here, "..", "..", "shared", "data"))
    parser.add_argument("--out", default=os.path.join(here, "..", "fixtures"))
    args = parser.parse_args()
    baron = os.path.join(args.data, "baron_pancreas")
    out = args.out
    for sub in ("baron", "proteins", "bad", "legacy"):
        shutil.rmtree(os.path.join(out, sub), ignore_errors=True)
        os.makedirs(os.path.join(out, sub))
    expected = {"datasets": {}, "proteomes": {}}

    # Datasets.
    human_src = os.path.join(baron, "raw-Baron_human.h5ad")
    mouse_src = os.path.join(baron, "raw-Baron_mouse.h5ad")
    human_cells = stratified_cells(human_src)
    mouse_cells = stratified_cells(mouse_src)
    subset_h5ad(human_src, os.path.join(out, "baron", "human.h5ad"), human_cells)
    subset_h5ad(mouse_src, os.path.join(out, "baron", "mouse.h5ad"), mouse_cells)
    h_m, h_barcodes, h_genes, h_obs = load_old_h5ad(os.path.join(out, "baron", "human.h5ad"))
    m_m, _, m_genes, m_obs = load_old_h5ad(os.path.join(out, "baron", "mouse.h5ad"))

    # The modern file holds the same cells, possibly in another order: select them by barcode.
    modern_src = os.path.join(baron, "Baron_human_modern.h5ad")
    with h5py.File(modern_src, "r") as f:
        modern_barcodes = decode(f["obs"][f["obs"].attrs["_index"]][:])
    position = {b: i for i, b in enumerate(modern_barcodes)}
    subset_h5ad(
        modern_src,
        os.path.join(out, "baron", "human_modern.h5ad"),
        np.array([position[b] for b in h_barcodes]),
    )
    write_10x(os.path.join(out, "baron", "human_10x"), h_m, h_barcodes, h_genes, h_obs)

    write_anndata06(os.path.join(out, "legacy", "anndata06.h5ad"), h_m, h_barcodes, h_genes, h_obs)

    human_facts = dataset_facts(h_m, h_genes, h_obs)
    for name in ("human.h5ad", "human_modern.h5ad", "human_10x"):
        expected["datasets"][f"baron/{name}"] = human_facts
    expected["datasets"]["baron/mouse.h5ad"] = dataset_facts(m_m, m_genes, m_obs)

    # Proteomes.
    detected = np.asarray((h_m > 0).sum(axis=0)).ravel() >= MIN_FRACTION_FOR_PROTEIN * h_m.shape[0]
    wanted = {g for g, d in zip(h_genes, detected) if d}
    human_records = [
        (h, s)
        for h, s in read_fasta(os.path.join(args.data, "proteins", "human_swissprot2014_baron_genes.fa"))
        if h.split()[0] in wanted
    ]
    write_gzip(os.path.join(out, "proteins", "human.fa.gz"), fasta_text(human_records))
    expected["proteomes"]["proteins/human.fa.gz"] = proteome_facts(human_records)

    table = os.path.join(baron, "gene_matches_1v1_human2mouse.csv")
    surrogate = surrogate_records(human_records, table, set(m_genes))
    write_gzip(os.path.join(out, "proteins", "mouse_surrogate.fa.gz"), fasta_text(surrogate))
    expected["proteomes"]["proteins/mouse_surrogate.fa.gz"] = proteome_facts(surrogate)

    write_bad(os.path.join(out, "bad"), os.path.join(out, "baron", "human.h5ad"))
    expected["parameters"] = {
        "cells_per_type": CELLS_PER_TYPE,
        "min_fraction_for_protein": MIN_FRACTION_FOR_PROTEIN,
    }
    with open(os.path.join(out, "expected.json"), "w", encoding="utf-8") as f:
        json.dump(expected, f, indent=2, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
