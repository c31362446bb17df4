//! Parity of satlas' SATURN core with the Python references in `scripts/reference/`.
//!
//! Fixtures under `fixtures/reference/` are made by
//! `~/.cache/satlas/refenv/bin/python scripts/reference/saturn_reference.py` (PyTorch 2.13) and
//! `.../hvg_reference.py` (scanpy 1.11.5, scikit-misc). Each test quotes the Python that made its
//! numbers and states its tolerance.

use crate::common::reference;
use ndarray::{Array2, ArrayView2};
use satlas::csr::CsrView;
use satlas::macrogene::{self, hvg::loess, HvgParams, ScoreFunction};
use satlas::model::{self, losses, Saturn, SaturnConfig, Triplet};
use std::collections::HashMap;
use std::path::Path;
use tch::{Kind, Tensor};

fn safetensors(name: &str) -> HashMap<String, Tensor> {
    crate::common::safetensors(&reference(name))
}

/// A `.npy` fixture as f64 values (integer fixtures are small enough to be exact).
fn npy(name: &str) -> Vec<f64> {
    let t = Tensor::read_npy(reference(name)).expect(name);
    Vec::try_from(&t.to_kind(Kind::Double).view([-1])).expect(name)
}

fn npy_usize(name: &str) -> Vec<usize> {
    npy(name).into_iter().map(|v| v as usize).collect()
}

/// max |a - b| / (atol + rtol |b|) <= 1, with a message naming the tensor.
fn assert_close(what: &str, a: &Tensor, b: &Tensor, rtol: f64, atol: f64) {
    assert_eq!(a.size(), b.size(), "{what}: shape");
    let a = a.to_kind(Kind::Double);
    let b = b.to_kind(Kind::Double);
    let excess = ((&a - &b).abs() - (b.abs() * rtol + atol))
        .max()
        .double_value(&[]);
    let worst = (&a - &b).abs().max().double_value(&[]);
    eprintln!("{what}: max |rust - python| = {worst:.2e}");
    assert!(
        excess <= 0.0,
        "{what}: differs beyond rtol {rtol}, atol {atol} (by {excess:e})\nrust {a}\npython {b}"
    );
}

fn to_array2(t: &Tensor) -> Array2<f64> {
    let s = t.size();
    let v: Vec<f64> = Vec::try_from(&t.to_kind(Kind::Double).view([-1])).unwrap();
    Array2::from_shape_vec((s[0] as usize, s[1] as usize), v).unwrap()
}

/// scvi-tools `log_zinb_positive` (x = 0 and x > 0, theta from 1e-3 to 1e4):
/// ```python
/// x = torch.tensor([0, 0, 0, 1, 3, 10, 100, 0, 7, 2500, 1, 0], dtype=torch.float32)
/// ll = log_zinb_positive(x, mu, theta, pi)          # eps = 1e-8
/// ```
/// Same float32 operations in the same order: rtol 1e-5, atol 1e-5.
#[test]
fn zinb_log_likelihood_matches_scvi() {
    let f = safetensors("zinb.safetensors");
    let ll = model::zinb_log_likelihood(
        &f["x"],
        &f["mu"],
        &f["theta"],
        &f["pi"],
        model::zinb::ZINB_EPS,
    );
    assert_close("ll", &ll, &f["ll"], 1e-5, 1e-5);
}

/// The fused loss used in training on the same 12 entries (one cell, 12 genes) with the decoder's
/// logits `ln mu`, so that `mu = x.sum() * softmax(logits)`: against the value and the autograd
/// gradients with respect to logits, theta and pi of `-log_zinb_positive(...).sum()` in PyTorch,
/// float64 (the fused form takes float32 inputs and evaluates the gamma-function terms and sums
/// in float64; PyTorch's float32 `lgamma(2501)` alone is off by ~1e-3): rtol 1e-5 on the loss,
/// 1e-4 on the gradients.
#[test]
fn fused_zinb_loss_and_gradients_match_pytorch_autograd() {
    let f = safetensors("zinb.safetensors");
    let row = |k: &str| f[k].reshape([1, -1]);
    let leaf = |t: Tensor| t.set_requires_grad(true);
    let (logits, theta, pi) = (
        leaf(row("logits")),
        leaf(f["theta"].copy()),
        leaf(row("pi")),
    );
    let (indptr, indices, data, cols) = csr_arrays(&row("x"));
    let counts = CsrView::new(cols, &indptr, &indices, &data).unwrap();
    let nll = model::zinb_nll_fused(&counts, &[0], &logits, &theta, &pi);
    assert_close("nll", &nll.reshape([1]), &f["nll_f64"], 1e-5, 0.0);
    let grads = Tensor::run_backward(&[nll], &[&logits, &theta, &pi], false, false);
    for (name, got) in ["d_logits", "d_theta", "d_pi"].iter().zip(&grads) {
        assert_close(name, &got.reshape([-1]), &f[*name], 1e-4, 1e-4);
    }
}

/// ```python
/// d = rng.integers(0, 5, size=(6, 9)).astype(np.float64)   # genes x centroids, many ties
/// ranks = rankdata(d, axis=1, method="average")
/// w_default = (2 * np.log(1 + 1 / ranks) ** 2).T ; w_one_hot = (ranks == 1).T ; w_smoothed = (1 / ranks).T
/// ```
/// Ranks exact; weights f32: rtol 1e-6.
#[test]
fn rank_weights_match_scipy_rankdata() {
    let f = safetensors("rank_weights.safetensors");
    let d = to_array2(&f["distances"]);
    assert_eq!(macrogene::ranks_average(d.view()), to_array2(&f["ranks"]));
    for (score, key) in [
        (ScoreFunction::Default, "w_default"),
        (ScoreFunction::OneHot, "w_one_hot"),
        (ScoreFunction::Smoothed, "w_smoothed"),
    ] {
        let w = macrogene::rank_weights(d.view(), score).unwrap();
        let got = to_array2(
            &Tensor::from_slice(w.as_slice().unwrap())
                .reshape([w.nrows() as i64, w.ncols() as i64]),
        );
        let want = to_array2(&f[key]);
        assert!(got.abs_diff_eq(&want, 1e-6), "{key}: {got} vs {want}");
    }
}

/// A dense float count matrix as CSR arrays (indptr, columns, counts) and its column count.
fn csr_arrays(counts: &Tensor) -> (Vec<u64>, Vec<u32>, Vec<u32>, usize) {
    let cols = counts.size()[1] as usize;
    let values: Vec<f32> = Vec::try_from(&counts.contiguous().view([-1])).unwrap();
    let (mut indptr, mut indices, mut data) = (vec![0u64], vec![], vec![]);
    for row in values.chunks(cols) {
        for (j, &v) in row.iter().enumerate() {
            if v > 0.0 {
                indices.push(j as u32);
                data.push(v as u32);
            }
        }
        indptr.push(indices.len() as u64);
    }
    (indptr, indices, data, cols)
}

/// The reference script's small network (species of 12 and 9 genes, 6 macrogenes, hidden 8,
/// latent 5; the VAE variant if `vae`) with the weights of `{name}_weights.safetensors`, and the
/// tensors of `{name}_io.safetensors`.
fn reference_network(vae: bool, name: &str) -> (Saturn, HashMap<String, Tensor>) {
    let weights: Vec<(String, Tensor)> = safetensors(&format!("{name}_weights.safetensors"))
        .into_iter()
        .collect();
    let mut config = SaturnConfig::new(vec!["a".into(), "b".into()], vec![12, 9], 6);
    config.hidden_dim = 8;
    config.latent_dim = 5;
    config.vae = vae;
    let mut net = Saturn::build(config).unwrap();
    assert_eq!(
        weights.len(),
        net.var_store().variables().len(),
        "every parameter is exported"
    );
    net.set_parameters(&weights).unwrap();
    (net, safetensors(&format!("{name}_io.safetensors")))
}

/// One eval-mode forward pass of species 1 through a small network (G = [12, 9], M = 6,
/// hidden 8, latent 5) with the weights of `forward_weights.safetensors`:
/// ```python
/// mg, z, px, mu, pi, theta = net(1, x)
/// zinb = -log_zinb_positive(x, mu, theta, pi).sum(-1).mean()
/// reg = regulariser(net.gene_vectors(), e, partners)
/// ```
/// float32 both sides, different kernels (LayerNorm, matmul order): rtol 1e-4, atol 1e-5.
#[test]
fn forward_pass_matches_pytorch() {
    let (net, io) = reference_network(false, "forward");
    let (indptr, indices, data, cols) = csr_arrays(&io["counts"]);
    let csr = CsrView::new(cols, &indptr, &indices, &data).unwrap();
    let f = tch::no_grad(|| net.forward_t(1, &csr, &[0, 1, 2, 3], false));
    assert_close("m", &f.macrogenes, &io["m"], 1e-4, 1e-5);
    assert_close("z", &f.z, &io["z"], 1e-4, 1e-5);
    assert_close("px", &f.px(), &io["px"], 1e-4, 1e-6);
    assert_close("mu", &f.mu(), &io["mu"], 1e-4, 1e-5);
    assert_close("pi", &f.pi, &io["pi"], 1e-4, 1e-5);
    assert_close("theta", &f.theta, &io["theta"], 1e-5, 1e-6);
    let zinb = model::zinb_nll(&io["counts"], &f.mu(), &f.theta, &f.pi);
    assert_close("zinb", &zinb.reshape([1]), &io["zinb"], 1e-5, 1e-4);
    // the loss as training computes it, from the logits and the sparse counts
    let fused = model::zinb_nll_fused(&csr, &[0, 1, 2, 3], &f.px_logits, &f.theta, &f.pi);
    assert_close("fused zinb", &fused.reshape([1]), &io["zinb"], 1e-5, 1e-4);
    let q = tch::no_grad(|| net.gene_vectors(&net.macrogene_layer().weights_t(), false));
    assert_close("q", &q, &io["q"], 1e-4, 1e-5);
    let reg = losses::protein_similarity_regulariser(&q, &io["e"], &io["partners"]);
    assert_close("reg", &reg.reshape([1]), &io["reg"], 1e-4, 1e-5);

    // the same network through the public embedding API (CSR in, ndarray out)
    let emb = net.embed("b", &csr).unwrap();
    let z = Tensor::from_slice(emb.z.as_slice().unwrap()).reshape([4, 5]);
    assert_close("embed z", &z, &io["z"], 1e-4, 1e-5);
}

/// SATURN's VAE variant (upstream `vae=True`) with the weights of `vae_weights.safetensors`, in
/// eval mode (the decoder gets `mu`): macrogenes, `mu`, the ZINB mean and logits, each cell's
/// KL divergence, and the pretraining loss of the batch at the KL weight of epoch 36
/// (`zinb + w * mean(kl)`); the KL weight over 120 epochs against `get_kld_cycle(epoch, 50)`.
#[test]
fn vae_variant_matches_pytorch() {
    let (net, io) = reference_network(true, "vae");
    let (indptr, indices, data, cols) = csr_arrays(&io["counts"]);
    let csr = CsrView::new(cols, &indptr, &indices, &data).unwrap();
    let f = tch::no_grad(|| net.forward_t(0, &csr, &[0, 1, 2, 3], false));
    assert_close("m", &f.macrogenes, &io["m"], 1e-4, 1e-5);
    assert_close("z = mu", &f.z, &io["z"], 1e-4, 1e-5);
    assert_close("mu", &f.mu(), &io["mu"], 1e-4, 1e-5);
    assert_close("pi", &f.pi, &io["pi"], 1e-4, 1e-5);
    let kl =
        f.kl.as_ref()
            .expect("the VAE variant gives the KL divergence");
    assert_close("kl", kl, &io["kl"], 1e-4, 1e-5);
    let w = io["kl_weight"].double_value(&[0]);
    assert_eq!(w, model::kl_weight(36));
    let zinb = model::zinb_nll(&io["counts"], &f.mu(), &f.theta, &f.pi);
    let loss = zinb + kl.mean(Kind::Float) * w;
    assert_close("loss", &loss.reshape([1]), &io["loss"], 1e-5, 1e-4);
    let cycle: Vec<f64> = (0..120).map(model::kl_weight).collect();
    assert_close(
        "cycle",
        &Tensor::from_slice(&cycle),
        &io["cycle"],
        0.0,
        1e-12,
    );
}

/// ```python
/// q, e = torch.randn(15, 8), torch.randn(15, 11); partners = torch.randint(15, (15,))
/// reg = ((F.cosine_similarity(q, q[partners], dim=1) - F.cosine_similarity(e, e[partners], dim=1)) ** 2).sum()
/// ```
/// rtol 1e-5; the fused form used in training also against PyTorch's gradient `d_q`.
#[test]
fn regulariser_matches_pytorch() {
    let f = safetensors("regulariser.safetensors");
    let reg = losses::protein_similarity_regulariser(&f["q"], &f["e"], &f["partners"]);
    assert_close("reg", &reg.reshape([1]), &f["reg"], 1e-5, 1e-6);

    let q = f["q"].copy().set_requires_grad(true);
    let e = losses::UnitRows::new(to_array2(&f["e"]).mapv(|v| v as f32).view());
    let partners: Vec<i64> = Vec::try_from(&f["partners"]).unwrap();
    let fused = losses::anchored_regulariser_fused(&q, &e, 0, &partners);
    assert_close("fused reg", &fused.reshape([1]), &f["reg"], 1e-5, 1e-6);
    let d_q = Tensor::run_backward(&[fused], &[&q], false, false).remove(0);
    assert_close("fused d_q", &d_q, &f["d_q"], 1e-4, 1e-6);
}

/// One mining step on 30 cells of 3 species with the reference's uniform draws:
/// ```python
/// triplets = mine(sim, labels, species, np.float32(0.2), draws)   # SATURN.md section 6
/// loss = triplet_loss(z, triplets, 0.2)
/// ```
/// Same similarity matrix and draws: the kept triplets are identical; loss rtol 1e-5.
#[test]
fn miner_keeps_the_reference_triplets() {
    let f = safetensors("mining.safetensors");
    let sim: Vec<f32> = Vec::try_from(&f["sim"].view([-1])).unwrap();
    let labels: Vec<usize> = Vec::<i64>::try_from(&f["labels"])
        .unwrap()
        .into_iter()
        .map(|v| v as usize)
        .collect();
    let species: Vec<usize> = Vec::<i64>::try_from(&f["species"])
        .unwrap()
        .into_iter()
        .map(|v| v as usize)
        .collect();
    let draws: Vec<f64> = Vec::try_from(&f["draws"]).unwrap();
    let mut it = draws.into_iter();
    let mut draw = || it.next().expect("enough draws");
    let got = model::mine_triplets(&sim, &labels, &species, 0.2, &mut draw);
    let want: Vec<Triplet> = Vec::<i64>::try_from(&f["triplets"].view([-1]))
        .unwrap()
        .chunks(3)
        .map(|t| Triplet {
            anchor: t[0] as usize,
            positive: t[1] as usize,
            negative: t[2] as usize,
        })
        .collect();
    assert!(!want.is_empty());
    assert_eq!(got, want);
    let loss = losses::triplet_loss(&f["z"], &got, 0.2);
    assert_close("loss", &loss.reshape([1]), &f["loss"], 1e-5, 1e-6);
}

/// The selection equals scanpy's up to exact ties at the boundary: numpy's unstable
/// `argsort(-variances_norm)` picks arbitrarily among genes with identical normalised variance
/// (typically genes with the same sparse count pattern, e.g. a single 1), satlas takes the lowest
/// gene indices. Every gene chosen by one side only must sit exactly at the boundary value.
fn assert_same_selection(got: &macrogene::HvgResult, want: &[usize]) -> usize {
    assert_eq!(got.selected.len(), want.len());
    let vn = &got.variances_norm;
    let boundary = got
        .selected
        .iter()
        .map(|&g| vn[g])
        .fold(f64::INFINITY, f64::min);
    let only_rust: Vec<usize> = got
        .selected
        .iter()
        .copied()
        .filter(|g| want.binary_search(g).is_err())
        .collect();
    let only_scanpy: Vec<usize> = want
        .iter()
        .copied()
        .filter(|g| got.selected.binary_search(g).is_err())
        .collect();
    for &g in only_rust.iter().chain(&only_scanpy) {
        assert!(
            (vn[g] - boundary).abs() <= 1e-12 * boundary.abs(),
            "gene {g} (variances_norm {}) is chosen by one side only but is not tied at the boundary {boundary}",
            vn[g]
        );
    }
    only_rust.len()
}

fn subset_counts() -> (Vec<u64>, Vec<u32>, Vec<u32>) {
    let indptr = npy_usize("hvg_subset_indptr.npy");
    let indices = npy_usize("hvg_subset_indices.npy");
    let data = npy_usize("hvg_subset_data.npy");
    (
        indptr.into_iter().map(|v| v as u64).collect(),
        indices.into_iter().map(|v| v as u32).collect(),
        data.into_iter().map(|v| v as u32).collect(),
    )
}

/// skmisc's loess (surface="interpolate", the default scanpy uses) on the subset's trend:
/// ```python
/// m = loess(np.log10(mean[nc]), np.log10(var[nc]), span=0.3, degree=2); m.fit()
/// ```
/// The same k-d tree and vertex fits, normal equations instead of QR+SVD: atol 1e-9.
#[test]
fn loess_matches_skmisc_interpolate() {
    let x = npy("hvg_subset_loess_x.npy");
    let y = npy("hvg_subset_loess_y.npy");
    let want = npy("hvg_subset_loess_fitted.npy");
    let got = loess(&x, &y, 0.3).unwrap();
    let worst = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    assert!(worst < 1e-9, "max |rust - skmisc| = {worst:e}");
}

/// scanpy on a 300-cell x 3000-gene subset of Baron human:
/// ```python
/// sc.pp.highly_variable_genes(ad, flavor="seurat_v3", n_top_genes=500)
/// ```
/// The same set up to exact ties at the boundary ([`assert_same_selection`]).
#[test]
fn hvg_matches_scanpy_on_subset() {
    let (indptr, indices, data) = subset_counts();
    let csr = CsrView::new(3000, &indptr, &indices, &data).unwrap();
    let got = macrogene::highly_variable_genes(
        &csr,
        &HvgParams {
            n_top_genes: 500,
            span: 0.3,
        },
    )
    .unwrap();
    let want = npy_usize("hvg_subset_top500.npy");
    let tie_swaps = assert_same_selection(&got, &want);
    eprintln!("subset: {tie_swaps} of 500 genes differ, all exact ties at the boundary");
}

/// scanpy on the full Baron human counts (2142 cells x 20125 genes), n_top_genes 2000 and 8000.
/// Reads `/work/shared/data/baron_pancreas/raw-Baron_human.h5ad` (or `$SATLAS_BARON_HUMAN`);
/// skipped with a message when the file is absent. The same sets up to exact ties at the boundary
/// (2000: 3 of the tied genes differ); for the record, the overlap with the `surface="direct"`
/// selection (what an exact loess would pick: 1994/2000, 7991/8000) is printed.
#[test]
fn hvg_matches_scanpy_on_baron_human() {
    let path = std::env::var("SATLAS_BARON_HUMAN")
        .unwrap_or_else(|_| "/work/shared/data/baron_pancreas/raw-Baron_human.h5ad".into());
    if !Path::new(&path).exists() {
        eprintln!("skipped: {path} not found");
        return;
    }
    let file = hdf5::File::open(&path).unwrap();
    let data: Vec<f32> = file.dataset("X/data").unwrap().read_raw().unwrap();
    let indices: Vec<i32> = file.dataset("X/indices").unwrap().read_raw().unwrap();
    let indptr: Vec<i32> = file.dataset("X/indptr").unwrap().read_raw().unwrap();
    let data: Vec<u32> = data.into_iter().map(|v| v as u32).collect();
    let indices: Vec<u32> = indices.into_iter().map(|v| v as u32).collect();
    let indptr: Vec<u64> = indptr.into_iter().map(|v| v as u64).collect();
    let csr = CsrView::new(20125, &indptr, &indices, &data).unwrap();
    for n_top in [2000, 8000] {
        let got = macrogene::highly_variable_genes(
            &csr,
            &HvgParams {
                n_top_genes: n_top,
                span: 0.3,
            },
        )
        .unwrap();
        let want = npy_usize(&format!("hvg_baron_human_top{n_top}.npy"));
        let direct = npy_usize(&format!("hvg_direct_baron_human_top{n_top}.npy"));
        let overlap =
            |a: &[usize], b: &[usize]| a.iter().filter(|g| b.binary_search(g).is_ok()).count();
        eprintln!(
            "n_top {n_top}: overlap with scanpy {}/{n_top}, with surface=direct {}/{n_top}",
            overlap(&got.selected, &want),
            overlap(&got.selected, &direct)
        );
        assert_same_selection(&got, &want);
    }
}

/// Distances through the public API agree with the direct formula (f64).
#[test]
fn gene_centroid_distances_are_euclidean() {
    let g = Array2::from_shape_fn((5, 3), |(i, j)| (i * 3 + j) as f32 * 0.5);
    let c = Array2::from_shape_fn((2, 3), |(i, j)| (i + j) as f32);
    let d = macrogene::gene_centroid_distances(g.view(), c.view()).unwrap();
    let direct = |a: ArrayView2<'_, f32>, i: usize, b: ArrayView2<'_, f32>, k: usize| {
        a.row(i)
            .iter()
            .zip(b.row(k))
            .map(|(x, y)| f64::from(x - y).powi(2))
            .sum::<f64>()
            .sqrt()
    };
    for i in 0..5 {
        for k in 0..2 {
            assert!((d[[i, k]] - direct(g.view(), i, c.view(), k)).abs() < 1e-9);
        }
    }
}
