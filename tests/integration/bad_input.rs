//! The bad-input corpus: every way a user can hand satlas broken files, unusable data or
//! out-of-range parameters, one table row each (arguments + the words the error must contain).
//!
//! Each case runs the `satlas` binary on one trained atlas (both Baron fixtures, ESM-2 t6 gene
//! embeddings, macrogenes, a 1-epoch pretrain and finetune, an HNSW index) and must fail with a
//! clear error naming the problem and where it is (no panic, no usage dump for data errors), and
//! leave the atlas content digest exactly as it was. Broken h5ad files come from
//! `scripts/make_fixtures.py` (`fixtures/bad/`); text and binary files are written here, so each
//! case shows its bytes.

use crate::common::{fixture_arg, satlas, satlas_ok, training_ready_atlas, Snapshot};
use std::path::Path;

/// One refused command.
struct Case {
    /// `satlas` arguments after `--atlas ATLAS`.
    args: Vec<String>,
    /// Substrings the error output must contain.
    expect: Vec<String>,
}

/// The table, built row by row.
#[derive(Default)]
struct Corpus(Vec<Case>);

impl Corpus {
    fn case(&mut self, args: &[&str], expect: &[&str]) {
        self.0.push(Case {
            args: args.iter().map(|s| s.to_string()).collect(),
            expect: expect.iter().map(|s| s.to_string()).collect(),
        });
    }

    /// `add-proteome --species rat FILE` (a new species: a refusal must not create it).
    fn fasta(&mut self, file: &str, expect: &[&str]) {
        self.case(&["add-proteome", "--species", "rat", file], expect);
    }

    /// `add-dataset --species human --label cell_type FILE extra...`.
    fn dataset(&mut self, file: &str, extra: &[&str], expect: &[&str]) {
        let mut args = vec!["add-dataset", "--species", "human", "--label", "cell_type"];
        args.extend_from_slice(extra);
        args.push(file);
        self.case(&args, expect);
    }

    /// `import-embeddings --species SPECIES [--genes GENES] FILE`.
    fn embeddings(&mut self, species: &str, file: &str, genes: Option<&str>, expect: &[&str]) {
        let mut args = vec!["import-embeddings", "--species", species];
        if let Some(genes) = genes {
            args.extend(["--genes", genes]);
        }
        args.push(file);
        self.case(&args, expect);
    }

    /// `sql -c SQL`.
    fn sql(&mut self, sql: &str, expect: &[&str]) {
        self.case(&["sql", "-c", sql], expect);
    }
}

/// Writes `bytes` to `dir/name` and returns the path.
fn write(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path.to_str().unwrap().to_string()
}

/// A 10x directory `dir/name` with `matrix.mtx` (unless `None`), two genes' features, the
/// barcodes (unless `None`) and an obs.csv labelling AAAC-1 only.
fn tenx(dir: &Path, name: &str, matrix: Option<&str>, barcodes: Option<&str>) -> String {
    let d = dir.join(name);
    std::fs::create_dir(&d).unwrap();
    if let Some(matrix) = matrix {
        std::fs::write(d.join("matrix.mtx"), matrix).unwrap();
    }
    std::fs::write(d.join("features.tsv"), "INS\tINS\nGCG\tGCG\nSST\tSST\n").unwrap();
    if let Some(barcodes) = barcodes {
        std::fs::write(d.join("barcodes.tsv"), barcodes).unwrap();
    }
    std::fs::write(d.join("obs.csv"), "barcode,cell_type\nAAAC-1,alpha\n").unwrap();
    d.to_str().unwrap().to_string()
}

/// A MatrixMarket file of 3 genes x 2 cells with the size line's entry count and entries.
fn mtx(entries_declared: &str, entries: &str) -> String {
    format!("%%MatrixMarket matrix coordinate integer general\n3 2 {entries_declared}\n{entries}")
}

/// A version-1.0 `.npy` of `rows x cols` little-endian float32 values.
fn npy(shape: &str, values: &[f32]) -> Vec<u8> {
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((header.len() as u16).to_le_bytes());
    out.extend(header.as_bytes());
    out.extend(values.iter().flat_map(|v| v.to_le_bytes()));
    out
}

fn fasta_cases(c: &mut Corpus, dir: &Path) {
    c.fasta(&fixture_arg("bad/empty.fa"), &["empty.fa", "empty"]);
    c.fasta(
        &fixture_arg("bad/sequence_before_header.fa"),
        &["sequence_before_header.fa:1", "before any header"],
    );
    let utf16: Vec<u8> = [0xFF, 0xFE]
        .into_iter()
        .chain(">INS\nMALW\n".encode_utf16().flat_map(u16::to_le_bytes))
        .collect();
    c.fasta(&write(dir, "utf16.fa", &utf16), &["utf16.fa:1", "UTF-16"]);
    c.fasta(
        &write(dir, "latin1.fa", b">INS caf\xe9\nMALW\n"),
        &["latin1.fa:1", "not UTF-8"],
    );
    let gz = std::fs::read(crate::common::fixture("proteins/human.fa.gz")).unwrap();
    c.fasta(
        &write(dir, "truncated.fa.gz", &gz[..gz.len() / 2]),
        &["truncated.fa.gz:", "gzip stream is truncated"],
    );
    c.fasta(
        &write(dir, "empty_id.fa", b">\nMALW\n"),
        &["empty_id.fa:1", "empty id"],
    );
    c.fasta(
        &write(dir, "no_sequence.fa", b">INS\nMALW\n>GCG\n"),
        &["no_sequence.fa:3", "\"GCG\" has no sequence"],
    );
    c.fasta(
        &write(dir, "residue.fa", b">INS\nMALW\nMA1W\n"),
        &["residue.fa:3", "invalid residue '1'"],
    );
    c.fasta(
        &write(dir, "all_stop.fa", b">INS\nMA*LW\n>GCG\nMK*\n"),
        &["all_stop.fa", "no protein", "stop"],
    );
    c.fasta(
        &write(
            dir,
            "dup_protein.fa",
            b">INS uniprot=P1\nMALW\n>INS uniprot=P1\nMKLW\n",
        ),
        &["dup_protein.fa", "\"P1 (INS)\" appears twice in the file"],
    );
    let binary: Vec<u8> = (0..=255).collect();
    c.fasta(&write(dir, "binary.fa", &binary), &["binary.fa:1"]);
    c.fasta(
        dir.join("missing.fa").to_str().unwrap(),
        &["missing.fa", "No such file"],
    );
    c.case(
        &[
            "add-proteome",
            "--species",
            "human",
            &fixture_arg("proteins/human.fa.gz"),
        ],
        &["already in the atlas"],
    );
    c.case(
        &[
            "add-proteome",
            "--species",
            "bad name",
            &fixture_arg("proteins/human.fa.gz"),
        ],
        &["invalid species name \"bad name\""],
    );
}

fn h5ad_cases(c: &mut Corpus, dir: &Path) {
    let bad = |name: &str| fixture_arg(&format!("bad/{name}"));
    c.dataset(
        &bad("truncated.h5ad"),
        &[],
        &["truncated.h5ad", "truncated, corrupt or not HDF5"],
    );
    c.dataset(&write(dir, "empty.h5ad", b""), &[], &["empty.h5ad"]);
    c.dataset(
        &write(dir, "text.h5ad", b"barcode,INS\nc1,3\n"),
        &[],
        &["text.h5ad", "not HDF5"],
    );
    c.dataset(
        &bad("lognorm.h5ad"),
        &[],
        &["lognorm.h5ad", "integer", "--layer"],
    );
    c.dataset(
        &bad("nan_counts.h5ad"),
        &[],
        &["nan_counts.h5ad", "NaN", "\"c3\"", "\"GCG\""],
    );
    c.dataset(
        &bad("inf_counts.h5ad"),
        &[],
        &["inf_counts.h5ad", "inf", "\"c3\"", "\"GCG\""],
    );
    c.dataset(
        &bad("negative_counts.h5ad"),
        &[],
        &["negative_counts.h5ad", "-2", "\"c3\""],
    );
    c.dataset(
        &bad("duplicate_cells.h5ad"),
        &[],
        &["duplicate cell \"c1\""],
    );
    c.dataset(
        &bad("duplicate_genes.h5ad"),
        &[],
        &["duplicate gene \"INS\""],
    );
    c.dataset(
        &bad("all_na_labels.h5ad"),
        &[],
        &["all_na_labels.h5ad", "\"cell_type\" holds no value"],
    );
    c.dataset(
        &bad("no_protein_genes.h5ad"),
        &[],
        &[
            "no_protein_genes.h5ad",
            "none of its 3 genes",
            "human",
            "proteome",
        ],
    );
    c.dataset(
        &bad("shape_mismatch.h5ad"),
        &[],
        &["shape_mismatch.h5ad", "shape [4, 3]", "2 var"],
    );
    c.dataset(&bad("no_cells.h5ad"), &[], &["no_cells.h5ad", "no cells"]);
    c.dataset(
        &bad("bad_indptr.h5ad"),
        &[],
        &["bad_indptr.h5ad", "indptr decreases"],
    );
    c.dataset(
        &bad("gene_index_out_of_range.h5ad"),
        &[],
        &["gene_index_out_of_range.h5ad", "index 7", "outside 0..3"],
    );
    let modern = fixture_arg("baron/human_modern.h5ad");
    c.dataset(
        &modern,
        &["--layer", "counts"],
        &["layers/counts", "no such matrix", "available: X"],
    );
    let labelled = |label: &str, species: &str, name: &str| {
        let args = [
            "add-dataset",
            "--species",
            species,
            "--label",
            label,
            "--name",
            name,
            &modern,
        ];
        args.map(str::to_string)
    };
    c.case(
        &labelled("no_such_column", "human", "x")
            .each_ref()
            .map(String::as_str),
        &["no_such_column", "available columns", "cell_type1"],
    );
    c.case(
        &labelled("cell_type1", "zebrafish", "x")
            .each_ref()
            .map(String::as_str),
        &["unknown species", "zebrafish", "add-proteome"],
    );
    c.case(
        &labelled("cell_type1", "human", "human")
            .each_ref()
            .map(String::as_str),
        &[
            "a dataset named \"human\" is already in the atlas",
            "--name",
        ],
    );
    c.case(
        &labelled("cell_type1", "human", "bad/name")
            .each_ref()
            .map(String::as_str),
        &["invalid dataset name \"bad/name\""],
    );
    c.case(
        &[
            "add-dataset",
            "--species",
            "human",
            "--label",
            "cell_type1",
            "--name",
            "again",
            &fixture_arg("baron/human.h5ad"),
        ],
        &["identical content", "as dataset \"human\""],
    );
}

fn mtx_cases(c: &mut Corpus, dir: &Path) {
    let barcodes = Some("AAAC-1\nAAAG-1\n");
    let entries = "1 1 4\n2 1 1\n3 2 7\n";
    let obs = |d: &str| format!("{d}/obs.csv");
    let mut tenx_case = |name: &str, matrix: Option<&str>, codes: Option<&str>, expect: &[&str]| {
        let d = tenx(dir, name, matrix, codes);
        c.dataset(&d, &["--obs", &obs(&d)], expect);
    };
    tenx_case(
        "truncated",
        Some(&mtx("5", entries)),
        barcodes,
        &[
            "truncated/matrix.mtx:",
            "declares 5 entries",
            "ends after 3",
        ],
    );
    tenx_case(
        "no_barcodes",
        Some(&mtx("3", entries)),
        None,
        &["no_barcodes", "barcodes.tsv"],
    );
    tenx_case("no_matrix", None, barcodes, &["no_matrix", "matrix.mtx"]);
    tenx_case(
        "array",
        Some("%%MatrixMarket matrix array real general\n3 2\n1\n2\n3\n4\n5\n6\n"),
        barcodes,
        &["array/matrix.mtx:1", "coordinate"],
    );
    tenx_case(
        "dims",
        Some("%%MatrixMarket matrix coordinate integer general\n3 3 1\n1 1 4\n"),
        barcodes,
        &["dims/matrix.mtx:2", "3 cells", "2 barcodes"],
    );
    tenx_case(
        "real",
        Some(&mtx("3", "1 1 4\n2 1 2.5\n3 2 7\n")),
        barcodes,
        &["real/matrix.mtx", "2.5", "\"AAAC-1\"", "\"GCG\""],
    );
    tenx_case(
        "negative",
        Some(&mtx("3", "1 1 4\n2 1 -1\n3 2 7\n")),
        barcodes,
        &["negative/matrix.mtx", "-1", "\"AAAC-1\""],
    );
    tenx_case(
        "outside",
        Some(&mtx("3", "1 1 4\n4 1 1\n3 2 7\n")),
        barcodes,
        &["outside/matrix.mtx:4", "(4, 1) is outside"],
    );
    tenx_case(
        "huge_size",
        Some(&mtx("99999999999999", entries)),
        barcodes,
        &["huge_size/matrix.mtx", "99999999999999"],
    );
    tenx_case(
        "dup_barcode",
        Some(&mtx("3", entries)),
        Some("AAAC-1\nAAAC-1\n"),
        &["duplicate cell \"AAAC-1\""],
    );
    tenx_case(
        "empty_matrix",
        Some(""),
        barcodes,
        &["empty_matrix/matrix.mtx", "empty"],
    );
    // obs.csv labels AAAC-1 only: AAAG-1 has no row.
    tenx_case(
        "obs_missing",
        Some(&mtx("3", entries)),
        barcodes,
        &["obs_missing/obs.csv", "no row for cell \"AAAG-1\""],
    );
    let no_obs = tenx(dir, "no_obs", Some(&mtx("3", entries)), barcodes);
    c.dataset(
        &no_obs,
        &[],
        &["\"cell_type\" is not there", "no cell annotations", "--obs"],
    );
}

fn embedding_cases(c: &mut Corpus, dir: &Path) {
    let genes = write(dir, "genes.txt", b"INS\nGCG\n");
    c.embeddings(
        "human",
        &write(dir, "text.npy", b"INS,0.1,0.2\n"),
        Some(&genes),
        &["text.npy", "not a .npy"],
    );
    let good = npy("(2, 4)", &[0.5; 8]);
    c.embeddings(
        "human",
        &write(dir, "truncated.npy", &good[..good.len() - 5]),
        Some(&genes),
        &["truncated.npy", "truncated"],
    );
    let mut nan = [0.5f32; 8];
    nan[5] = f32::NAN;
    c.embeddings(
        "human",
        &write(dir, "nan.npy", &npy("(2, 4)", &nan)),
        Some(&genes),
        &["nan.npy", "\"GCG\"", "finite"],
    );
    let three = write(dir, "three.txt", b"INS\nGCG\nSST\n");
    c.embeddings(
        "human",
        &write(dir, "rows.npy", &good),
        Some(&three),
        &["2 rows", "three.txt", "3 genes"],
    );
    c.embeddings(
        "human",
        &write(dir, "no_list.npy", &good),
        None,
        &["no_list.npy", "gene list"],
    );
    c.embeddings(
        "human",
        &write(dir, "vector.npy", &npy("(8,)", &[0.5; 8])),
        Some(&genes),
        &["vector.npy", "2-D"],
    );
    let twice = write(dir, "twice.txt", b"INS\nins\n");
    c.embeddings(
        "human",
        &write(dir, "twice.npy", &good),
        Some(&twice),
        &["twice.npy", "\"ins\"", "twice"],
    );
    c.embeddings(
        "human",
        &write(dir, "emb.csv", b"INS,0.1\n"),
        None,
        &["emb.csv", "unknown gene-embedding format"],
    );
    c.embeddings(
        "human",
        &write(dir, "garbage.pt", b"not a zip archive"),
        None,
        &["garbage.pt", "torch.save"],
    );
    c.embeddings(
        "zebrafish",
        &write(dir, "ok.npy", &good),
        Some(&genes),
        &["unknown species", "zebrafish"],
    );
}

fn parameter_cases(c: &mut Corpus) {
    c.case(
        &["build-macrogenes", "-n", "0"],
        &[
            "n_macrogenes = 0",
            "between 1 and the number of genes (2635)",
        ],
    );
    c.case(
        &["build-macrogenes", "-n", "100000"],
        &["n_macrogenes = 100000", "number of genes (2635)"],
    );
    c.case(
        &["build-macrogenes", "--n-top-genes", "0"],
        &["n_top_genes = 0", "between 1"],
    );
    c.case(
        &["build-macrogenes", "--score", "bogus"],
        &["score = bogus", "'default', 'one_hot' or 'smoothed'"],
    );
    c.case(
        &["pretrain", "--epochs", "0"],
        &["epochs = 0: must be at least 1"],
    );
    c.case(
        &["pretrain", "--batch-size", "0"],
        &["batch_size = 0: must be at least 2"],
    );
    c.case(
        &["pretrain", "--lr=-0.1"],
        &["lr = -0.1: must be a finite number > 0"],
    );
    c.case(
        &["pretrain", "--lr=NaN"],
        &["lr = NaN: must be a finite number > 0"],
    );
    c.case(
        &["finetune", "--epochs", "0"],
        &["epochs = 0: must be at least 1"],
    );
    c.case(
        &["finetune", "--margin=-1"],
        &["margin = -1: must be a finite number > 0"],
    );
    c.case(
        &["index", "build", "--m", "1"],
        &["m = 1", "between 2 and 256"],
    );
    c.case(
        &["index", "build", "--ef-construction", "4"],
        &["ef_construction = 4", "at least m"],
    );
    c.case(
        &["index", "build", "--ef-search", "0"],
        &["ef_search = 0", "between 1 and 10000"],
    );
    c.case(
        &["knn", "--cell", "1", "-k", "0"],
        &["k = 0: between 1 and 10000"],
    );
    c.case(
        &["knn", "--cell", "99999999"],
        &["cell 99999999 has no embedding"],
    );
    c.case(
        &["knn", "--cell", "1", "--dataset", "nope"],
        &["unknown dataset \"nope\" (known: human, mouse)"],
    );
    let transfer = ["transfer", "--reference", "human", "--query"];
    let with = |extra: &[&'static str]| [&transfer[..], extra].concat();
    c.case(
        &with(&["mouse", "--min-confidence", "1.5"]),
        &["min_confidence = 1.5: between 0 and 1"],
    );
    c.case(
        &with(&["mouse", "-k", "0"]),
        &["k = 0: between 1 and 10000"],
    );
    c.case(&with(&["nope"]), &["unknown dataset \"nope\""]);
    let eval = ["eval", "--a", "human", "--b"];
    c.case(
        &[&eval[..], &["mouse", "-k", "0"]].concat(),
        &["k = 0: at least 1"],
    );
    c.case(
        &[&eval[..], &["mouse", "--c=-1"]].concat(),
        &["c = -1: a positive number"],
    );
    c.case(
        &[&eval[..], &["rat"]].concat(),
        &["unknown species \"rat\""],
    );
    c.case(
        &["embed-dataset", "--dataset", "nope"],
        &["unknown dataset \"nope\"", "satlas add-dataset"],
    );
    c.case(
        &[
            "add-dataset",
            "-s",
            "human",
            "-l",
            "cell_type1",
            "--run",
            "1",
            "x.h5ad",
        ],
        &["required arguments were not provided", "--embed"],
    );
}

fn sql_cases(c: &mut Corpus) {
    c.sql(
        "CALL satlas_build_macrogenes(n := 0)",
        &["satlas_build_macrogenes: invalid parameter n_macrogenes = 0"],
    );
    c.sql(
        "CALL satlas_build_macrogenes(n := 100000)",
        &["n_macrogenes = 100000", "number of genes"],
    );
    c.sql(
        "CALL saturn_pretrain(epochs := 0)",
        &["saturn_pretrain: invalid parameter epochs = 0: must be at least 1"],
    );
    c.sql(
        "CALL saturn_pretrain(batch_size := 0)",
        &["batch_size = 0: must be at least 2"],
    );
    c.sql(
        "CALL saturn_pretrain(lr := -0.001)",
        &["lr = -0.001: must be a finite number > 0"],
    );
    c.sql(
        "SELECT * FROM knn_cells(cell_id := 1, k := 0)",
        &["knn_cells: invalid index parameter k = 0"],
    );
    c.sql(
        "SELECT * FROM knn_cells(cell_id := 99999999)",
        &["cell 99999999 has no embedding"],
    );
    c.sql(
        "SELECT * FROM knn_cells(cell_id := 'abc')",
        // DuckDB's own message (1.5.6; 2.0 also names the parameter).
        &["Could not convert string 'abc' to INT64"],
    );
    c.sql(
        "SELECT * FROM knn_vector(embedding := [1.0, 2.0]::FLOAT[])",
        &["query vector has 2 values", "256"],
    );
    c.sql(
        "SELECT * FROM transfer_labels(query := 'nope', reference := 'human')",
        &["transfer_labels: unknown dataset \"nope\""],
    );
    c.sql(
        "CALL satlas_import_embeddings(species := 'human', file := '/nonexistent/e.npy', genes := '/nonexistent/g.txt')",
        &["cannot read /nonexistent/g.txt", "No such file"],
    );
    c.sql(
        "CALL satlas_embed_dataset(dataset := 'nope')",
        &["unknown dataset \"nope\""],
    );
    c.sql(
        "CALL satlas_build_macrogenes(bogus := 1)",
        &["Invalid named parameter \"bogus\""],
    );
}

/// Every row of the corpus.
fn corpus(dir: &Path) -> Vec<Case> {
    let mut c = Corpus::default();
    fasta_cases(&mut c, dir);
    h5ad_cases(&mut c, dir);
    mtx_cases(&mut c, dir);
    embedding_cases(&mut c, dir);
    parameter_cases(&mut c);
    sql_cases(&mut c);
    c.0
}

/// What is wrong with one case's outcome, if anything.
fn check(atlas: &Path, before: &Snapshot, case: &Case) -> Option<String> {
    let args: Vec<&str> = case.args.iter().map(String::as_str).collect();
    let out = satlas(atlas, &args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let mut problems = Vec::new();
    // 1: a refused action; 2: clap's usage error. Anything else (101 = panic, no code = killed by a
    // signal such as an allocation failure's abort) is a crash.
    match out.status.code() {
        Some(1 | 2) if !stderr.contains("panicked") => {}
        Some(0) => problems.push("succeeded".to_string()),
        code => problems.push(format!("crashed (exit code {code:?})")),
    }
    for needle in &case.expect {
        if !stderr.contains(needle.as_str()) {
            problems.push(format!("error does not mention {needle:?}"));
        }
    }
    if !before.unchanged() {
        problems.push("changed the atlas".into());
    }
    (!problems.is_empty()).then(|| format!("{args:?}: {}\n{stderr}", problems.join("; ")))
}

#[test]
fn every_bad_input_is_refused_clearly_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let atlas = training_ready_atlas(dir.path());
    for step in [
        &["pretrain", "--epochs", "1", "--batch-size", "128"][..],
        &["finetune", "--epochs", "1", "--batch-size", "128"],
        &["index", "build"],
    ] {
        satlas_ok(&atlas, step);
    }
    let files = dir.path().join("files");
    std::fs::create_dir(&files).unwrap();
    let cases = corpus(&files);
    assert!(cases.len() >= 30, "{} cases", cases.len());
    let before = Snapshot::take(&atlas);
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|case| check(&atlas, &before, case))
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
