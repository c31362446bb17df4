#!/usr/bin/env python3
"""Opens a satlas atlas with the PyPI `duckdb` package, read-only, and queries it as any DuckDB
client can: cells per species, and one cell's embedding in the newest model run that has
embeddings. No satlas code is involved: the atlas is a plain DuckDB database.

    pip install duckdb==1.5.6        # or 2.0.x; see README "Use the atlas from Python / R"
    python scripts/query_atlas.py ATLAS [CELL_ID]

Prints one JSON object: the client's DuckDB version, {species: cells}, and the cell's
model run, dataset, cell type and embedding. Exit status 1 with a message on a missing atlas or
an unknown cell.
"""

import json
import os
import sys

import duckdb


def main(argv):
    if len(argv) not in (2, 3):
        sys.exit(__doc__)
    path = argv[1]
    if not os.path.exists(path):
        sys.exit(f"no atlas at {path}: create one with `satlas --atlas {path} init`")
    con = duckdb.connect(path, read_only=True)
    per_species = dict(
        con.execute(
            "SELECT species, count(*) FROM cell_info GROUP BY species ORDER BY species"
        ).fetchall()
    )
    cell = con.execute(
        """
        SELECT e.model_run_id, e.cell_id, c.dataset, c.cell_type, e.embedding
        FROM cell_embeddings e JOIN cell_info c USING (cell_id)
        WHERE e.model_run_id = (SELECT max(model_run_id) FROM cell_embeddings)
          AND (? IS NULL OR e.cell_id = ?)
        ORDER BY e.cell_id
        LIMIT 1
        """,
        [cell_id(argv), cell_id(argv)],
    ).fetchone()
    if cell is None:
        sys.exit(f"{path}: no embedded cell {argv[2] if len(argv) == 3 else ''}".rstrip())
    run, cid, dataset, cell_type, embedding = cell
    print(
        json.dumps(
            {
                "duckdb": duckdb.__version__,
                "cells_per_species": per_species,
                "cell": {
                    "model_run_id": run,
                    "cell_id": cid,
                    "dataset": dataset,
                    "cell_type": cell_type,
                    "embedding": embedding,
                },
            }
        )
    )


def cell_id(argv):
    return int(argv[2]) if len(argv) == 3 else None


if __name__ == "__main__":
    main(sys.argv)
