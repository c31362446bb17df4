//! Training behaviour on a small synthetic two-species data set (seconds in debug builds):
//! pretraining lowers the loss, fine-tuning lowers the triplet loss of a fixed set of triplets
//! and keeps cross-species label agreement high, the same seed gives the same losses, and
//! checkpoints round-trip.

use ndarray::Array2;
use rand::{rngs::StdRng, Rng, SeedableRng};
use satlas::csr::Csr;
use satlas::macrogene::{self, KMeansParams, ScoreFunction};
use satlas::model::{
    self, EpochLog, FinetuneParams, ModelError, PretrainParams, Saturn, SaturnConfig, SpeciesData,
    Triplet,
};
use std::sync::{Mutex, MutexGuard};

/// libtorch's RNG (dropout, partners, `manual_seed`) is process-global: tests that train take
/// this lock so parallel test threads do not interleave their draws.
static TORCH_RNG: Mutex<()> = Mutex::new(());

fn torch_rng() -> MutexGuard<'static, ()> {
    TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner())
}

const TYPES: [&str; 3] = ["alpha", "beta", "delta"];
const PROGRAMS: usize = 6;
const DIM: usize = 10;

/// One species: genes belong to programs (their embedding is the program's prototype plus
/// noise); each cell type switches two programs on.
struct Species {
    counts: Csr,
    labels: Vec<String>,
    embeddings: Array2<f32>,
}

fn species(rng: &mut StdRng, prototypes: &Array2<f32>, n_genes: usize, n_cells: usize) -> Species {
    let program: Vec<usize> = (0..n_genes).map(|g| g % PROGRAMS).collect();
    let embeddings = Array2::from_shape_fn((n_genes, DIM), |(g, d)| {
        prototypes[[program[g], d]] + 0.3 * rng.random::<f32>()
    });
    let (mut indptr, mut indices, mut data, mut labels) = (vec![0u64], vec![], vec![], vec![]);
    for c in 0..n_cells {
        let t = c % TYPES.len();
        for (g, &p) in program.iter().enumerate() {
            let rate: f64 = if p / 2 == t { 6.0 } else { 0.3 };
            // Poisson by inversion
            let (mut k, mut prob, u) = (0u32, (-rate).exp(), rng.random::<f64>());
            let mut cdf = prob;
            while u > cdf && k < 100 {
                k += 1;
                prob *= rate / f64::from(k);
                cdf += prob;
            }
            if k > 0 {
                indices.push(g as u32);
                data.push(k);
            }
        }
        indptr.push(indices.len() as u64);
        labels.push(TYPES[t].to_string());
    }
    Species {
        counts: Csr {
            n_cols: n_genes,
            indptr,
            indices,
            data,
        },
        labels,
        embeddings,
    }
}

struct Setup {
    a: Species,
    b: Species,
    config: SaturnConfig,
    weights: Array2<f32>,
    embeddings: Array2<f32>,
}

fn setup() -> Setup {
    let mut rng = StdRng::seed_from_u64(11);
    let prototypes = Array2::from_shape_fn((PROGRAMS, DIM), |_| 4.0 * rng.random::<f32>());
    let a = species(&mut rng, &prototypes, 30, 90);
    let b = species(&mut rng, &prototypes, 24, 90);
    let embeddings = ndarray::concatenate(
        ndarray::Axis(0),
        &[a.embeddings.view(), b.embeddings.view()],
    )
    .unwrap();
    let fit = macrogene::kmeans(
        embeddings.view(),
        &KMeansParams {
            n_clusters: 8,
            seed: 1,
            ..Default::default()
        },
    )
    .unwrap();
    let dist = macrogene::gene_centroid_distances(embeddings.view(), fit.centroids.view()).unwrap();
    let weights = macrogene::rank_weights(dist.view(), ScoreFunction::Default).unwrap();
    let mut config = SaturnConfig::new(vec!["human".into(), "mouse".into()], vec![30, 24], 8);
    config.hidden_dim = 32;
    config.latent_dim = 16;
    Setup {
        a,
        b,
        config,
        weights,
        embeddings,
    }
}

fn data<'a>(s: &'a Setup) -> Vec<SpeciesData<'a>> {
    vec![
        SpeciesData {
            species: "human",
            counts: s.a.counts.view().unwrap(),
            labels: &s.a.labels,
        },
        SpeciesData {
            species: "mouse",
            counts: s.b.counts.view().unwrap(),
            labels: &s.b.labels,
        },
    ]
}

fn pretrained(s: &Setup, seed: u64, epochs: usize) -> (Saturn, Vec<EpochLog>) {
    pretrained_with(s, s.config.clone(), seed, epochs)
}

fn pretrained_with(
    s: &Setup,
    config: SaturnConfig,
    seed: u64,
    epochs: usize,
) -> (Saturn, Vec<EpochLog>) {
    tch::manual_seed(seed as i64);
    let mut net = Saturn::new(config, s.weights.view()).unwrap();
    let params = PretrainParams {
        epochs,
        batch_size: 64,
        lr: 5e-3,
        seed,
        ..Default::default()
    };
    let logs = model::pretrain(&mut net, &data(s), s.embeddings.view(), &params, |_, _| {
        Ok::<_, ModelError>(())
    })
    .unwrap();
    (net, logs)
}

/// The L2-normalised eval-mode embedding of every cell: the human cells, then the mouse cells.
fn unit_embeddings(net: &Saturn, s: &Setup) -> Array2<f32> {
    let za = net.embed("human", &s.a.counts.view().unwrap()).unwrap().z;
    let zb = net.embed("mouse", &s.b.counts.view().unwrap()).unwrap().z;
    let mut z = ndarray::concatenate(ndarray::Axis(0), &[za.view(), zb.view()]).unwrap();
    for mut r in z.rows_mut() {
        let n = r.dot(&r).sqrt().max(1e-12);
        r /= n;
    }
    z
}

/// Fraction of mouse cells whose nearest human cell (cosine) has the same cell type.
fn agreement(net: &Saturn, s: &Setup) -> f64 {
    let z = unit_embeddings(net, s);
    let (za, zb) = z.view().split_at(ndarray::Axis(0), s.a.labels.len());
    let sim = zb.dot(&za.t());
    let hits = sim
        .rows()
        .into_iter()
        .enumerate()
        .filter(|(i, row)| {
            let best = row
                .iter()
                .enumerate()
                .fold(
                    (0, f32::MIN),
                    |acc, (j, &v)| if v > acc.1 { (j, v) } else { acc },
                )
                .0;
            s.a.labels[best] == s.b.labels[*i]
        })
        .count();
    hits as f64 / zb.nrows() as f64
}

/// Fixed cross-species triplets over all cells: every cell is an anchor four times, with a
/// positive of its cell type from the other species and a negative of another type.
fn all_cell_triplets(s: &Setup) -> Vec<Triplet> {
    let labels: Vec<&String> = s.a.labels.iter().chain(&s.b.labels).collect();
    let n_a = s.a.labels.len();
    let species = |i: usize| i >= n_a;
    let mut rng = StdRng::seed_from_u64(5);
    let mut pick = |ok: &dyn Fn(usize) -> bool| loop {
        let j = rng.random_range(0..labels.len());
        if ok(j) {
            return j;
        }
    };
    (0..labels.len() * 4)
        .map(|k| {
            let anchor = k % labels.len();
            let positive = pick(&|j| species(j) != species(anchor) && labels[j] == labels[anchor]);
            let negative = pick(&|j| labels[j] != labels[anchor]);
            Triplet {
                anchor,
                positive,
                negative,
            }
        })
        .collect()
}

/// Mean `S(a, p) - S(a, n)` of fixed triplets on a normalised embedding: what the triplet loss
/// pushes above its margin.
fn triplet_gap(z: &Array2<f32>, triplets: &[Triplet]) -> f64 {
    let s = |u: usize, v: usize| f64::from(z.row(u).dot(&z.row(v)));
    let sum: f64 = triplets
        .iter()
        .map(|t| s(t.anchor, t.positive) - s(t.anchor, t.negative))
        .sum();
    sum / triplets.len() as f64
}

#[test]
fn pretraining_lowers_the_loss_and_is_reproducible() {
    let _rng = torch_rng();
    let s = setup();
    let (_, logs) = pretrained(&s, 5, 8);
    let (first, last) = (logs[0].loss, logs[logs.len() - 1].loss);
    assert!(
        last < first,
        "pretraining loss did not fall: {first} -> {last}"
    );
    let (_, again) = pretrained(&s, 5, 8);
    let a: Vec<f64> = logs.iter().map(|l| l.loss).collect();
    let b: Vec<f64> = again.iter().map(|l| l.loss).collect();
    assert_eq!(a, b, "same seed, different losses");
}

/// SATURN's VAE variant end to end: pretraining adds `kl_weight(epoch) * mean KL` (0 in epoch 0,
/// then positive: KL >= 0), its loss falls and is reproducible; embeddings are the latent mean
/// (deterministic); fine-tuning trains the encoder and `fc_mu`.
#[test]
fn vae_variant_pretrains_with_the_kl_term_and_finetunes() {
    let _rng = torch_rng();
    let s = setup();
    let config = SaturnConfig {
        vae: true,
        ..s.config.clone()
    };
    let (net, logs) = pretrained_with(&s, config.clone(), 6, 8);
    let kl_part = |l: &EpochLog| l.loss - l.zinb - 0.2 * l.regulariser;
    assert!(
        kl_part(&logs[0]).abs() < 1e-6 * logs[0].loss.abs(),
        "epoch 0 has KL weight 0: {}",
        kl_part(&logs[0])
    );
    for l in &logs[1..] {
        assert!(
            kl_part(l) > 0.0,
            "epoch {}: KL part {}",
            l.epoch,
            kl_part(l)
        );
    }
    assert!(logs[7].zinb < logs[0].zinb, "the ZINB term fell: {logs:?}");
    let (_, again) = pretrained_with(&s, config, 6, 8);
    let losses = |l: &[EpochLog]| l.iter().map(|l| l.loss).collect::<Vec<_>>();
    assert_eq!(losses(&logs), losses(&again), "same seed, same losses");
    assert_eq!(
        unit_embeddings(&net, &s),
        unit_embeddings(&net, &s),
        "embeddings are the mean, not a sample"
    );
    // fine-tuning (from 2 epochs of pretraining: after 8 the species agree so well that no
    // semi-hard triplet is left) trains the encoder and `fc_mu`
    let (mut net, _) = pretrained_with(
        &s,
        SaturnConfig {
            vae: true,
            ..s.config.clone()
        },
        6,
        2,
    );
    let before = unit_embeddings(&net, &s);
    let params = FinetuneParams {
        epochs: 3,
        batch_size: 90,
        seed: 6,
        ..Default::default()
    };
    let logs =
        model::finetune(&mut net, &data(&s), &params, |_, _| Ok::<_, ModelError>(())).unwrap();
    assert!(logs.iter().all(|l| l.n_triplets > 0), "{logs:?}");
    assert_ne!(
        before,
        unit_embeddings(&net, &s),
        "fine-tuning moved the embeddings"
    );
}

#[test]
fn finetuning_aligns_species() {
    let _rng = torch_rng();
    let s = setup();
    let (mut net, _) = pretrained(&s, 3, 5);
    // fine-tuning minimises a triplet loss: on a fixed set of cross-species triplets, positives
    // must end up more similar to their anchors than negatives by more than before (the
    // per-batch losses it logs are over fresh semi-hard triplets each batch and need not fall)
    let triplets = all_cell_triplets(&s);
    let gap_before = triplet_gap(&unit_embeddings(&net, &s), &triplets);
    let params = FinetuneParams {
        epochs: 15,
        batch_size: 90,
        lr: 1e-3,
        seed: 3,
        ..Default::default()
    };
    let mut seen = Vec::new();
    model::finetune(&mut net, &data(&s), &params, |log, _| {
        seen.push(log.epoch);
        Ok::<_, ModelError>(())
    })
    .unwrap();
    assert_eq!(seen, (0..15).collect::<Vec<_>>());
    let gap_after = triplet_gap(&unit_embeddings(&net, &s), &triplets);
    assert!(
        gap_after > gap_before,
        "S(anchor, positive) - S(anchor, negative) over {} fixed triplets did not grow: \
         {gap_before} -> {gap_after}",
        triplets.len()
    );
    let after = agreement(&net, &s);
    assert!(after >= 0.5, "cross-species label agreement {after}");
}

#[test]
fn unfrozen_finetuning_changes_the_macrogene_weights() {
    let _rng = torch_rng();
    let s = setup();
    let (mut net, _) = pretrained(&s, 4, 2);
    let w0 = net.macrogene_weights().unwrap();
    let params = FinetuneParams {
        epochs: 3,
        batch_size: 90,
        unfreeze_macrogenes: true,
        seed: 4,
        ..Default::default()
    };
    model::finetune(&mut net, &data(&s), &params, |_, _| Ok::<_, ModelError>(())).unwrap();
    assert_ne!(w0, net.macrogene_weights().unwrap());
}

#[test]
fn checkpoint_round_trips_and_callback_errors_stop_training() {
    let _rng = torch_rng();
    let s = setup();
    let (net, _) = pretrained(&s, 6, 1);
    let bytes = net.save_bytes().unwrap();
    let back = Saturn::load_bytes(s.config.clone(), &bytes).unwrap();
    let counts = s.b.counts.view().unwrap();
    assert_eq!(
        net.embed("mouse", &counts).unwrap().z,
        back.embed("mouse", &counts).unwrap().z
    );

    // a species added later: its own weights against the same macrogenes
    let w_new = s.weights.slice(ndarray::s![.., 30..]).to_owned();
    let late = back.embed_with_weights(&counts, w_new.view()).unwrap();
    assert_eq!(late.z.dim(), (90, 16));

    let mut again = Saturn::load_bytes(s.config.clone(), &bytes).unwrap();
    let params = PretrainParams {
        epochs: 3,
        batch_size: 64,
        ..Default::default()
    };
    let stopped: Result<_, ModelError> = model::pretrain(
        &mut again,
        &data(&s),
        s.embeddings.view(),
        &params,
        |log, _| {
            if log.epoch == 1 {
                Err(ModelError::Checkpoint {
                    reason: "disk full".into(),
                })
            } else {
                Ok(())
            }
        },
    );
    assert!(matches!(stopped, Err(ModelError::Checkpoint { .. })));
}

#[test]
fn bad_inputs_are_refused_before_training() {
    let _rng = torch_rng();
    let s = setup();
    let mut net = Saturn::new(s.config.clone(), s.weights.view()).unwrap();
    let bad = PretrainParams {
        lr: 0.0,
        ..Default::default()
    };
    let r = model::pretrain(&mut net, &data(&s), s.embeddings.view(), &bad, |_, _| {
        Ok::<_, ModelError>(())
    });
    assert!(matches!(
        r,
        Err(ModelError::InvalidParameter { name: "lr", .. })
    ));
    let wrong = vec![SpeciesData {
        species: "zebrafish",
        counts: s.a.counts.view().unwrap(),
        labels: &s.a.labels,
    }];
    let r = model::pretrain(
        &mut net,
        &wrong,
        s.embeddings.view(),
        &PretrainParams::default(),
        |_, _| Ok::<_, ModelError>(()),
    );
    assert!(matches!(r, Err(ModelError::UnknownSpecies { .. })));
}
