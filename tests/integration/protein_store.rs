//! Protein and gene embeddings in the atlas (`satlas::protein::store`): ESM-2 runs with the tiny
//! checkpoint (`fixtures/esm2/tiny`) on an in-memory atlas, sequence reuse, resume, imports of the
//! shipped demo embeddings, and refused inputs leaving the atlas unchanged.

use crate::common::fixture;
use satlas::io::FastaOptions;
use satlas::macrogene::{
    build_macrogenes, highly_variable_genes_with_protein, BuildParams, MacrogeneSet,
};
use satlas::protein::store::{
    embed_species, float_list, import_embeddings, read_gene_matrix, EmbeddingReport,
};
use satlas::protein::{embed_proteins, EmbedOptions, Esm2};
use satlas::sql::with_procedures;
use satlas::Atlas;
use std::path::{Path, PathBuf};

const INS: &str = "MALWMRLLPLLALLALWGPDPAAAFVNQHLCGSHLVEALYLVCGERGFFYTPKTRREAEDLQVGQVELGGGPGAGSLQPLALEGSLQKRGIVEQCCTSICSLYQLENYCN";
const INS_SHORT: &str = "MALWMRLLPLLALLALWGPDPAAAFVNQHLCGSHLVEALYLVCGERGFFYTPKT";
const GCG: &str =
    "MKSIYFVAGLFVMLVQGSWQRSLQDTEEKSRSFSASQADPLSDPDQMNEDKRHSQGTFTSDYSKYLDSRRAQDFVQWLMNTKRNRNNIA";
const SST: &str = "MLSCRLQCALAALSIVLALGCVTGAPSDPRLRQFLQKSLAAAAGKQELAKYFLAELLSEPNQTENDALEPEDLSQAAEQDEMRLELQRSANSNPAMAPRERKAGCKNFFWKTFTSC";
const PPY: &str = "MAAARLCLSLLLLSTCVALLLQPLLGAQGAPLEPVYPGDNATPEQMAQYAADLRRYINMLTRPRYGKRHKEDTLAFSEWGSPHAAVPRELSPLDL";
const NOVEL: &str = "MSTNPKPQRKTKRNTNRRPQDVKFPGG";

/// Human: INS with two isoforms, GCG, SST, PPY, and SSTX whose sequence repeats SST's.
const HUMAN: [(&str, &str, &str); 6] = [
    ("INS", "P01308", INS),
    ("INS", "P01308-2", INS_SHORT),
    ("GCG", "P01275", GCG),
    ("SST", "P61278", SST),
    ("PPY", "P01298", PPY),
    ("SSTX", "X00001", SST),
];

/// Mouse: two sequences repeat human ones, one is new.
const MOUSE: [(&str, &str, &str); 3] = [
    ("Ins1", "P01325", INS),
    ("Gcg", "P55095", GCG),
    ("Novel", "X00002", NOVEL),
];

fn tiny() -> PathBuf {
    fixture("esm2/tiny")
}

/// An in-memory atlas with `proteins` added for `species` from a FASTA file.
fn add(atlas: &mut Atlas, species: &str, proteins: &[(&str, &str, &str)]) {
    let dir = tempfile::tempdir().unwrap();
    let fasta = dir.path().join(format!("{species}.fa"));
    let text: String = proteins
        .iter()
        .map(|(gene, acc, seq)| format!(">{gene} uniprot={acc}\n{seq}\n"))
        .collect();
    std::fs::write(&fasta, text).unwrap();
    satlas::ingest::add_proteome(atlas, species, &fasta, &FastaOptions::default()).unwrap();
}

fn embed(atlas: &mut Atlas, species: &str) -> EmbeddingReport {
    embed_species(atlas, species, &tiny(), &EmbedOptions::default(), None).unwrap()
}

/// `accession -> embedding` of the species' proteins.
fn protein_embeddings(atlas: &Atlas, species: &str) -> Vec<(String, Vec<f32>)> {
    let mut stmt = atlas
        .connection()
        .prepare(
            "SELECT p.accession, e.embedding FROM protein_embeddings e
             JOIN proteins p USING (protein_id) JOIN species s USING (species_id)
             WHERE s.name = ? ORDER BY p.accession",
        )
        .unwrap();
    stmt.query_map([species], |r| Ok((r.get(0)?, float_list(r.get_ref(1)?))))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn gene_ids(atlas: &Atlas, species: &str, symbols: &[&str]) -> Vec<i32> {
    symbols
        .iter()
        .map(|g| {
            atlas
                .connection()
                .query_row(
                    "SELECT gene_id FROM genes JOIN species USING (species_id)
                     WHERE name = ? AND symbol = ?",
                    [species, g],
                    |r| r.get(0),
                )
                .unwrap()
        })
        .collect()
}

fn assert_close(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (j, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= 1e-5, "{what}[{j}]: {g} vs {w}");
    }
}

#[test]
fn embeds_pools_resumes_and_reuses_identical_sequences() {
    let mut atlas = Atlas::in_memory().unwrap();
    add(&mut atlas, "human", &HUMAN);
    add(&mut atlas, "mouse", &MOUSE);

    // (a) One embedding per protein; SSTX repeats SST's sequence and is computed once.
    let report = embed(&mut atlas, "human");
    assert_eq!(
        (
            report.proteins_embedded,
            report.proteins_reused,
            report.proteins_skipped,
            report.genes
        ),
        (6, 1, 0, 5),
        "{report}"
    );
    assert!(
        report.to_string().contains("5 computed, 1 reused"),
        "{report}"
    );
    let model = Esm2::load_dir(&tiny(), tch::Device::Cpu).unwrap();
    let sequences: Vec<&str> = HUMAN.iter().map(|p| p.2).collect();
    let direct = embed_proteins(&model, &sequences, &EmbedOptions::default()).unwrap();
    let stored = protein_embeddings(&atlas, "human");
    assert_eq!(stored.len(), HUMAN.len());
    for (i, (_, acc, _)) in HUMAN.iter().enumerate() {
        let (_, got) = stored.iter().find(|(a, _)| a == acc).unwrap();
        assert_close(acc, got, &direct[i]);
    }
    let sst = |acc: &str| &stored.iter().find(|(a, _)| a == acc).unwrap().1;
    assert_eq!(
        sst("P61278"),
        sst("X00001"),
        "a repeated sequence gets the same vector"
    );

    // Gene embedding = mean of the gene's protein embeddings (INS: two isoforms).
    let genes = ["INS", "GCG", "SST", "PPY", "SSTX"];
    let matrix = read_gene_matrix(
        atlas.connection(),
        report.embedding_model_id,
        &gene_ids(&atlas, "human", &genes),
    )
    .unwrap();
    for (row, gene) in genes.iter().enumerate() {
        let members: Vec<&Vec<f32>> = HUMAN
            .iter()
            .zip(&direct)
            .filter(|((g, _, _), _)| g == gene)
            .map(|(_, e)| e)
            .collect();
        let mean: Vec<f32> = (0..matrix.ncols())
            .map(|j| {
                (members.iter().map(|e| f64::from(e[j])).sum::<f64>() / members.len() as f64) as f32
            })
            .collect();
        assert_close(gene, matrix.row(row).as_slice().unwrap(), &mean);
    }

    // (b) A second run embeds nothing and changes nothing.
    let before = atlas.content_digest().unwrap();
    let again = embed(&mut atlas, "human");
    assert_eq!(
        (
            again.proteins_embedded,
            again.proteins_reused,
            again.proteins_skipped
        ),
        (0, 0, 6),
        "{again}"
    );
    assert_eq!(atlas.content_digest().unwrap(), before);

    // (c) Mouse repeats two human sequences: copied, identical vectors; one new one computed.
    let mouse = embed(&mut atlas, "mouse");
    assert_eq!(mouse.embedding_model_id, report.embedding_model_id);
    assert_eq!(
        (
            mouse.proteins_embedded,
            mouse.proteins_reused,
            mouse.proteins_skipped,
            mouse.genes
        ),
        (3, 2, 0, 3),
        "{mouse}"
    );
    let mouse_stored = protein_embeddings(&atlas, "mouse");
    let get = |rows: &[(String, Vec<f32>)], acc: &str| {
        rows.iter().find(|(a, _)| a == acc).unwrap().1.clone()
    };
    assert_eq!(get(&mouse_stored, "P01325"), get(&stored, "P01308"));
    assert_eq!(get(&mouse_stored, "P55095"), get(&stored, "P01275"));
    let novel = embed_proteins(&model, &[NOVEL], &EmbedOptions::default()).unwrap();
    assert_close("Novel", &get(&mouse_stored, "X00002"), &novel[0]);
}

/// Reads a float16 `.npy` (version 1, C order) arithmetically, independently of satlas' reader.
fn read_f16_npy(path: &Path) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap();
    let header = &bytes[10..10 + u16::from_le_bytes([bytes[8], bytes[9]]) as usize];
    assert!(String::from_utf8_lossy(header).contains("'descr': '<f2'"));
    bytes[10 + header.len()..]
        .chunks_exact(2)
        .map(|b| {
            let bits = u16::from_le_bytes([b[0], b[1]]);
            let sign = if bits >> 15 == 1 { -1.0 } else { 1.0 };
            let exponent = i32::from((bits >> 10) & 0x1f);
            let mantissa = f64::from(bits & 0x3ff);
            let magnitude = if exponent == 0 {
                mantissa * 2f64.powi(-24)
            } else {
                (1.0 + mantissa / 1024.0) * 2f64.powi(exponent - 15)
            };
            (sign * magnitude) as f32
        })
        .collect()
}

#[test]
fn shipped_demo_embeddings_round_trip_exactly() {
    let mut atlas = Atlas::in_memory().unwrap();
    add(&mut atlas, "human", &HUMAN[..1]);
    add(&mut atlas, "mouse", &MOUSE[..1]);
    for (species, stem, n_genes) in [("human", "human", 1447), ("mouse", "mouse_surrogate", 1188)] {
        let npy = fixture(&format!("embeddings/esm2_t6_{stem}.npy"));
        let list = fixture(&format!("embeddings/esm2_t6_{stem}.genes.txt"));
        let report =
            import_embeddings(&mut atlas, species, &npy, Some(&list), Some("esm2_t6")).unwrap();
        assert_eq!(report.genes, n_genes, "{report}");
        let symbols: Vec<String> = std::fs::read_to_string(&list)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect();
        let symbols: Vec<&str> = symbols.iter().map(String::as_str).collect();
        let matrix = read_gene_matrix(
            atlas.connection(),
            report.embedding_model_id,
            &gene_ids(&atlas, species, &symbols),
        )
        .unwrap();
        assert_eq!(matrix.dim(), (n_genes, 320));
        let expected = read_f16_npy(&npy);
        let got = matrix.as_slice().unwrap();
        assert_eq!(got.len(), expected.len());
        assert!(
            got.iter()
                .zip(&expected)
                .all(|(g, e)| g.to_bits() == e.to_bits()),
            "{species}: the atlas holds exactly the float16 values of the file"
        );
    }
}

#[test]
fn refused_inputs_leave_the_atlas_unchanged() {
    let mut atlas = Atlas::in_memory().unwrap();
    add(&mut atlas, "human", &HUMAN);
    import_embeddings(
        &mut atlas,
        "human",
        &fixture("embeddings/saturn_genes.torch"),
        None,
        None,
    )
    .unwrap();
    let before = atlas.content_digest().unwrap();
    let conn = &mut atlas;
    let options = EmbedOptions::default();
    let errors = [
        (
            embed_species(conn, "zebrafish", &tiny(), &options, None).unwrap_err(),
            "zebrafish",
        ),
        (
            embed_species(
                conn,
                "human",
                Path::new("/nonexistent/esm2"),
                &options,
                None,
            )
            .unwrap_err(),
            "/nonexistent/esm2",
        ),
        (
            import_embeddings(
                conn,
                "zebrafish",
                &fixture("embeddings/saturn_genes.torch"),
                None,
                None,
            )
            .unwrap_err(),
            "zebrafish",
        ),
        (
            import_embeddings(conn, "human", &fixture("embeddings/bad_dim.pt"), None, None)
                .unwrap_err(),
            "dimension 5",
        ),
        (
            import_embeddings(conn, "human", &fixture("embeddings/bad_nan.pt"), None, None)
                .unwrap_err(),
            "NaN",
        ),
        (
            import_embeddings(
                conn,
                "human",
                &fixture("embeddings/esm2_t6_human.npy"),
                None,
                None,
            )
            .unwrap_err(),
            "gene list",
        ),
    ];
    for (error, needle) in errors {
        let chain = std::iter::successors(Some(&error as &dyn std::error::Error), |e| e.source())
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(": ");
        assert!(chain.contains(needle), "{needle:?} not in {chain}");
        assert_eq!(atlas.content_digest().unwrap(), before, "after: {chain}");
    }
}

/// Gene symbol -> embedding of one embedding model.
fn gene_embeddings(atlas: &Atlas, model_id: i32) -> Vec<(String, Vec<f32>)> {
    let mut stmt = atlas
        .connection()
        .prepare(
            "SELECT g.symbol, e.embedding FROM gene_embeddings e JOIN genes g USING (gene_id)
             WHERE e.embedding_model_id = ? ORDER BY g.symbol",
        )
        .unwrap();
    stmt.query_map([model_id], |r| Ok((r.get(0)?, float_list(r.get_ref(1)?))))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn parquet_import_equals_the_npy_import_of_the_same_embeddings() {
    let mut atlas = with_procedures(Atlas::in_memory().unwrap()).unwrap();
    add(&mut atlas, "human", &HUMAN);
    let conn = &mut atlas;
    let npy = import_embeddings(
        conn,
        "human",
        &fixture("embeddings/genes.npy"),
        Some(&fixture("embeddings/genes.txt")),
        Some("npy"),
    )
    .unwrap();
    let list = import_embeddings(
        conn,
        "human",
        &fixture("embeddings/genes.parquet"),
        None,
        None,
    )
    .unwrap();
    assert_eq!((list.genes, list.model.as_str()), (4, "genes"), "{list}");
    let from_npy = gene_embeddings(&atlas, npy.embedding_model_id);
    assert_eq!(from_npy.len(), 4);
    assert_eq!(gene_embeddings(&atlas, list.embedding_model_id), from_npy);
    // The fixed-size float64 layout, through SQL.
    let file = fixture("embeddings/genes_f64_fixed.parquet");
    let model: i32 = atlas
        .connection()
        .query_row(
            "SELECT embedding_model_id FROM satlas_import_embeddings(species := 'human', file := ?, model := 'f64')",
            [file.to_str().unwrap()],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(gene_embeddings(&atlas, model), from_npy);
}

#[test]
fn refused_parquet_imports_and_dimension_mismatches_leave_the_atlas_unchanged() {
    let mut atlas = Atlas::in_memory().unwrap();
    add(&mut atlas, "human", &HUMAN);
    let shared = Some("shared");
    let conn = &mut atlas;
    import_embeddings(
        conn,
        "human",
        &fixture("embeddings/genes.parquet"),
        None,
        shared,
    )
    .unwrap();
    let before = atlas.content_digest().unwrap();
    let conn = &mut atlas;
    let mismatch = import_embeddings(
        conn,
        "human",
        &fixture("embeddings/esm2_t6_human.npy"),
        Some(&fixture("embeddings/esm2_t6_human.genes.txt")),
        shared,
    )
    .unwrap_err()
    .to_string();
    for needle in ["dimension 320", "\"shared\"", "dimension 6", "--model"] {
        assert!(mismatch.contains(needle), "{needle:?} not in {mismatch}");
    }
    assert_eq!(atlas.content_digest().unwrap(), before);
    for (name, needle) in [
        ("bad_null_embedding.parquet", "null embedding"),
        ("bad_ragged.parquet", "dimension 5"),
        ("bad_duplicate.parquet", "duplicate gene"),
        ("bad_no_embedding.parquet", "no column"),
    ] {
        let file = fixture(&format!("embeddings/{name}"));
        let e = import_embeddings(&mut atlas, "human", &file, None, shared)
            .unwrap_err()
            .to_string();
        assert!(e.contains(needle) && e.contains(name), "{e}");
        assert_eq!(atlas.content_digest().unwrap(), before, "after {name}");
    }
}

#[test]
fn cli_import_prints_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cli.satlas");
    let satlas = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_satlas"))
            .arg("--atlas")
            .arg(&path)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "satlas {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    satlas(&["init"]);
    let fasta = fixture("proteins/human.fa.gz");
    satlas(&[
        "add-proteome",
        "--species",
        "human",
        fasta.to_str().unwrap(),
    ]);
    let genes = fixture("embeddings/esm2_t6_human.genes.txt");
    let npy = fixture("embeddings/esm2_t6_human.npy");
    let out = satlas(&[
        "import-embeddings",
        "--species",
        "human",
        "--genes",
        genes.to_str().unwrap(),
        npy.to_str().unwrap(),
    ]);
    assert_eq!(
        out.trim(),
        "human: imported 1447 gene embeddings from esm2_t6_human (model #1)"
    );
}

/// `embed-proteins --highly-variable N`: only the proteins of the species' N highly variable genes
/// (among its dataset genes with a protein) are embedded, and `build-macrogenes --n-top-genes N`
/// then selects exactly those genes, for both species (the mouse surrogate reuses human
/// sequences only where its own selection asks for them).
#[test]
fn highly_variable_embedding_is_what_macrogenes_select() {
    let mut atlas = with_procedures(Atlas::in_memory().unwrap()).unwrap();
    for (species, fasta, h5ad) in [
        ("human", "proteins/human.fa.gz", "baron/human.h5ad"),
        (
            "mouse",
            "proteins/mouse_surrogate.fa.gz",
            "baron/mouse.h5ad",
        ),
    ] {
        satlas::ingest::add_proteome(
            &mut atlas,
            species,
            &fixture(fasta),
            &FastaOptions::default(),
        )
        .unwrap();
        let spec = satlas::ingest::DatasetSpec {
            path: fixture(h5ad),
            species: species.into(),
            name: Some(format!("baron_{species}")),
            label_column: "cell_type1".into(),
            read: satlas::io::ReadOptions::default(),
        };
        satlas::ingest::add_dataset(&mut atlas, &spec).unwrap();
    }
    const N: usize = 40;
    let mut selections = Vec::new();
    for species in ["human", "mouse"] {
        let genes = highly_variable_genes_with_protein(&atlas, species, N).unwrap();
        assert_eq!(genes.len(), N, "{species}");
        let report = embed_species(
            &mut atlas,
            species,
            &tiny(),
            &EmbedOptions::default(),
            Some(&genes),
        )
        .unwrap();
        // One protein per gene in the fixture proteomes.
        assert_eq!(
            (report.proteins_embedded, report.genes),
            (N, N),
            "{species}"
        );
        let embedded: Vec<i32> = satlas_query(
            &atlas,
            &format!(
                "SELECT DISTINCT p.gene_id FROM protein_embeddings e JOIN proteins p USING (protein_id)
                 JOIN species s USING (species_id) WHERE s.name = '{species}' ORDER BY 1"
            ),
        );
        assert_eq!(
            embedded, genes,
            "{species}: embedded genes are the selection"
        );
        selections.push(genes);
    }
    let params = BuildParams {
        n_macrogenes: 8,
        n_top_genes: N,
        ..BuildParams::default()
    };
    build_macrogenes(&mut atlas, &params).unwrap();
    let set = MacrogeneSet::read(atlas.connection(), None).unwrap();
    let chosen: Vec<&Vec<i32>> = set.species.iter().map(|s| &s.gene_ids).collect();
    assert_eq!(chosen, selections.iter().collect::<Vec<_>>());
}

fn satlas_query(atlas: &Atlas, sql: &str) -> Vec<i32> {
    let mut stmt = atlas.connection().prepare(sql).unwrap();
    let rows = stmt.query_map([], |r| r.get(0)).unwrap();
    rows.map(Result::unwrap).collect()
}

#[test]
fn another_species_file_is_refused_by_its_exact_symbols() {
    let mut atlas = Atlas::in_memory().unwrap();
    add(&mut atlas, "human", &HUMAN);
    add(&mut atlas, "mouse", &MOUSE);
    let before = atlas.content_digest().unwrap();
    let mouse_file = || {
        (
            fixture("embeddings/esm2_t6_mouse_surrogate.npy"),
            fixture("embeddings/esm2_t6_mouse_surrogate.genes.txt"),
        )
    };
    let (npy, genes) = mouse_file();
    // Case-insensitively, the mouse file's Gcg is human GCG: only exact symbols tell them apart.
    let e = import_embeddings(&mut atlas, "human", &npy, Some(&genes), None)
        .unwrap_err()
        .to_string();
    for needle in [
        "esm2_t6_mouse_surrogate.npy",
        "look like mouse's genes, not human's",
        "1 of its 1188",
        "only 0 are human genes",
        "--species mouse",
    ] {
        assert!(e.contains(needle), "{needle:?} not in {e}");
    }
    assert_eq!(atlas.content_digest().unwrap(), before);
    let report = import_embeddings(&mut atlas, "mouse", &npy, Some(&genes), None).unwrap();
    assert_eq!(report.genes, 1188);
}
