//! [`PackedHnsw`]: the HNSW graph of [`crate::hnsw::Hnsw`] (same construction: diversity
//! heuristic on reverse-link overflow, M links for a new node on layer 0, greedy descent of the
//! upper layers, insertion in a seeded random order) over L2-normalised `f32` vectors with the
//! distance `1 - a.b`, in a flat memory layout as hnswlib's:
//!
//! - the vectors in one row-major `Vec<f32>`, node `i` at `i * dim`;
//! - `u32` node numbers; layer 0 as one array of `1 + 2M` slots per node (count, links), the
//!   upper layers as `1 + M` slots per node and layer in a second array;
//! - links are atomics written under a per-node lock and read without one (a reader may see a
//!   list being rewritten, but only ever valid node numbers);
//! - a per-thread visited table of generation stamps and reusable heaps: no allocation per
//!   search or per candidate; the vectors of a node's unvisited neighbours are prefetched
//!   before their distances are computed;
//! - [`PackedHnsw::dump`] writes the graph and the data as two streams of contiguous
//!   little-endian blocks, [`PackedHnsw::load`] reads each block back in one pass.

use crate::filter::FilterT;
use crate::hnsw::{prefetch, shuffled};
use crate::simd::dot_f32;
use parking_lot::{Mutex, RwLock};
use rayon::prelude::*;
use std::cell::RefCell;
use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::fmt;
use std::io::{self, Write};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering as Atomic};

/// Highest layer a node can be on (16 layers, as hnsw_rs' default maximum).
const MAX_LEVEL: u8 = 15;
/// First bytes of a graph dump.
const GRAPH_MAGIC: &[u8; 8] = b"HNSWPKG\0";
/// First bytes of a data dump.
const DATA_MAGIC: &[u8; 8] = b"HNSWPKD\0";
/// Version of both dump layouts; [`PackedHnsw::load`] refuses any other.
pub const DUMP_VERSION: u32 = 1;

/// A search result: the caller's id of a point and its distance `1 - q.v` to the query.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Found {
    /// The id given to [`PackedHnsw::insert`].
    pub id: usize,
    /// `1 - q.v`, q and v normalised.
    pub distance: f32,
}

/// Why [`PackedHnsw::load`] refused a dump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadError {
    /// The bytes do not start as a packed graph or data dump (another format, or not a dump).
    NotADump {
        /// "graph" or "data".
        part: &'static str,
    },
    /// A packed dump of another layout version.
    Version {
        /// The version in the dump.
        found: u32,
    },
    /// The dump ends early or its blocks disagree with each other.
    Corrupt(String),
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::NotADump { part } => {
                write!(f, "the {part} bytes are not a packed HNSW {part} dump")
            }
            LoadError::Version { found } => write!(
                f,
                "packed HNSW dump version {found}, this build reads version {DUMP_VERSION}"
            ),
            LoadError::Corrupt(detail) => write!(f, "corrupt packed HNSW dump: {detail}"),
        }
    }
}

impl std::error::Error for LoadError {}

/// An HNSW index over unit vectors (see the module documentation).
pub struct PackedHnsw {
    dim: usize,
    m: usize,
    ef_construction: usize,
    /// Row-major normalised vectors.
    vectors: Vec<f32>,
    /// The caller's id of each node.
    ids: Vec<usize>,
    levels: Vec<u8>,
    /// `1 + 2M` slots per node: count, then links.
    layer0: Vec<AtomicU32>,
    /// Start in `upper` of each node's layer 1 (its layer `l` at `+ (l - 1) * (1 + M)`).
    upper_start: Vec<usize>,
    upper: Vec<AtomicU32>,
    locks: Vec<Mutex<()>>,
    /// Entry node and its level.
    entry: RwLock<Option<(u32, u8)>>,
}

/// A candidate: distance to the query and node.
#[derive(Clone, Copy, Debug)]
struct Cand(f32, u32);

impl PartialEq for Cand {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Cand {}
impl PartialOrd for Cand {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
/// Farther is greater (a max-heap of `Cand` pops the farthest).
impl Ord for Cand {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0).then(self.1.cmp(&other.1))
    }
}

/// Per-thread search state, reused by every search of the thread.
#[derive(Default)]
struct Scratch {
    epoch: u32,
    marks: Vec<u32>,
    near: BinaryHeap<std::cmp::Reverse<Cand>>,
    far: BinaryHeap<Cand>,
    fresh: Vec<u32>,
}

impl Scratch {
    /// Starts a search over `n` nodes: every node unvisited.
    fn start(&mut self, n: usize) {
        if self.marks.len() < n {
            self.marks.resize(n, 0);
        }
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == 0 {
            self.marks.fill(0);
            self.epoch = 1;
        }
        self.near.clear();
        self.far.clear();
    }

    /// Marks `node` visited; false if it already was in this search.
    #[inline(always)]
    fn visit(&mut self, node: u32) -> bool {
        let mark = &mut self.marks[node as usize];
        let fresh = *mark != self.epoch;
        *mark = self.epoch;
        fresh
    }
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

impl PackedHnsw {
    /// An empty index of `dim`-d vectors, `m` links per node and upper layer (2M on layer 0),
    /// `ef_construction` candidates per insertion.
    pub fn new(dim: usize, m: usize, ef_construction: usize) -> PackedHnsw {
        assert!(m >= 2 && dim > 0, "HNSW needs M >= 2 and dim > 0");
        PackedHnsw {
            dim,
            m,
            ef_construction,
            vectors: Vec::new(),
            ids: Vec::new(),
            levels: Vec::new(),
            layer0: Vec::new(),
            upper_start: Vec::new(),
            upper: Vec::new(),
            locks: Vec::new(),
            entry: RwLock::new(None),
        }
    }

    /// Number of points.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True when no point is indexed.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Vector dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// M.
    pub fn max_nb_connection(&self) -> usize {
        self.m
    }

    /// ef_construction.
    pub fn ef_construction(&self) -> usize {
        self.ef_construction
    }

    /// The caller's ids, in node order.
    pub fn ids(&self) -> &[usize] {
        &self.ids
    }

    /// The normalised vector of node `node` (`0..len()`, the position of its id in [`ids`](Self::ids)).
    pub fn vector(&self, node: usize) -> &[f32] {
        &self.vectors[node * self.dim..(node + 1) * self.dim]
    }

    /// Slots of node `node`'s list on `layer`: count, then links.
    #[inline(always)]
    fn slots(&self, node: u32, layer: u8) -> &[AtomicU32] {
        let node = node as usize;
        if layer == 0 {
            let w = 1 + 2 * self.m;
            &self.layer0[node * w..(node + 1) * w]
        } else {
            let w = 1 + self.m;
            let start = self.upper_start[node] + (layer as usize - 1) * w;
            &self.upper[start..start + w]
        }
    }

    /// The links of `node` on `layer` (a snapshot of the count, then each link).
    #[inline(always)]
    fn links(&self, node: u32, layer: u8) -> impl Iterator<Item = u32> + '_ {
        let slots = self.slots(node, layer);
        let count = (slots[0].load(Atomic::Acquire) as usize).min(slots.len() - 1);
        slots[1..=count].iter().map(|s| s.load(Atomic::Relaxed))
    }

    /// Replaces the links of `node` on `layer` (caller holds the node's lock).
    fn set_links(&self, node: u32, layer: u8, links: impl ExactSizeIterator<Item = u32>) {
        let slots = self.slots(node, layer);
        let count = links.len().min(slots.len() - 1);
        for (slot, link) in slots[1..].iter().zip(links) {
            slot.store(link, Atomic::Relaxed);
        }
        slots[0].store(count as u32, Atomic::Release);
    }

    #[inline(always)]
    fn distance(&self, query: &[f32], node: u32) -> f32 {
        1.0 - dot_f32(query, self.vector(node as usize))
    }

    /// Inserts `rows` (`ids.len()` row-major vectors, finite and not all zero; normalised here)
    /// with the caller's `ids`, in parallel on the current rayon pool.
    ///
    /// The graph does not depend on the order of the rows: they are linked in a seeded random
    /// permutation (seeded by the number of points already indexed and of rows), handed out one
    /// at a time by a shared counter, so the threads follow the permuted order closely. A
    /// node's level is drawn from a hash of its node number (reproducible, no shared generator).
    pub fn insert(&mut self, rows: &[f32], ids: &[usize]) {
        assert_eq!(rows.len(), ids.len() * self.dim, "rows and ids disagree");
        let first = self.len();
        let n = ids.len();
        if n == 0 {
            return;
        }
        assert!(
            first + n < u32::MAX as usize,
            "PackedHnsw holds fewer than 2^32 - 1 points"
        );
        self.append(rows, ids);
        let order = shuffled(n, (first as u64) << 32 ^ n as u64);
        let mut next = 0;
        if first == 0 {
            // The first point alone: two racing first insertions could not link to each other.
            self.link(order[0] as u32);
            next = 1;
        }
        let next = AtomicUsize::new(next);
        let this = &*self;
        rayon::broadcast(|_| {
            loop {
                let i = next.fetch_add(1, Atomic::Relaxed);
                if i >= n {
                    break;
                }
                this.link((first + order[i]) as u32);
            }
        });
    }

    /// Stores the normalised rows, their ids and levels, and empty lists for them.
    fn append(&mut self, rows: &[f32], ids: &[usize]) {
        let first = self.len();
        self.vectors.reserve(rows.len());
        for row in rows.chunks_exact(self.dim) {
            let norm = dot_f32(row, row).sqrt();
            self.vectors.extend(row.iter().map(|x| x / norm));
        }
        self.ids.extend_from_slice(ids);
        let w0 = 1 + 2 * self.m;
        self.layer0
            .resize_with((first + ids.len()) * w0, || AtomicU32::new(0));
        let scale = 1.0 / (self.m as f64).ln();
        for node in first..first + ids.len() {
            let level = level_of(node as u64, scale);
            self.levels.push(level);
            self.upper_start.push(self.upper.len());
            let slots = self.upper.len() + level as usize * (1 + self.m);
            self.upper.resize_with(slots, || AtomicU32::new(0));
            self.locks.push(Mutex::new(()));
        }
    }

    /// Links node `node` (stored by [`append`](Self::append)) into the graph (hnswlib's
    /// `addPoint`): greedy descent of the layers above its level, then on each of its layers
    /// the diversity heuristic's M among `ef_construction` candidates, and links back.
    fn link(&self, node: u32) {
        let level = self.levels[node as usize];
        let current = *self.entry.read();
        let Some((entry, top)) = current else {
            *self.entry.write() = Some((node, level));
            return;
        };
        let query = self.vector(node as usize);
        let mut cur = Cand(self.distance(query, entry), entry);
        for layer in ((level + 1)..=top).rev() {
            cur = self.greedy_closest(query, cur, layer);
        }
        let mut chosen = Vec::with_capacity(level.min(top) as usize + 1);
        for layer in (0..=level.min(top)).rev() {
            let mut found = self.search_layer(query, cur, self.ef_construction, layer, None);
            found.retain(|c| c.1 != node);
            let Some(&nearest) = found.first() else {
                continue;
            };
            let selected = self.select_neighbours(&found, self.m);
            {
                let _lock = self.locks[node as usize].lock();
                self.set_links(node, layer, selected.iter().map(|c| c.1));
            }
            chosen.push((layer, selected));
            cur = nearest;
        }
        // The node becomes reachable only now, after all its own lists are written.
        for (layer, selected) in &chosen {
            for c in selected {
                self.link_back(c.1, node, c.0, *layer);
            }
        }
        if level > top {
            let mut entry = self.entry.write();
            if entry.is_none_or(|(_, l)| level > l) {
                *entry = Some((node, level));
            }
        }
    }

    /// Adds `new` (at `dist` from it) to the list of `node` on `layer`. A full list (M links, 2M
    /// on layer 0) is chosen again by the diversity heuristic among its links and `new`
    /// (hnswlib's `mutuallyConnectNewElement`).
    fn link_back(&self, node: u32, new: u32, dist: f32, layer: u8) {
        let _lock = self.locks[node as usize].lock();
        let cap = self.slots(node, layer).len() - 1;
        let old: Vec<u32> = self.links(node, layer).collect();
        if old.contains(&new) {
            return;
        }
        if old.len() < cap {
            let slots = self.slots(node, layer);
            slots[1 + old.len()].store(new, Atomic::Relaxed);
            slots[0].store(old.len() as u32 + 1, Atomic::Release);
            return;
        }
        let base = self.vector(node as usize);
        let mut all: Vec<Cand> = old
            .iter()
            .map(|&o| Cand(self.distance(base, o), o))
            .collect();
        all.push(Cand(dist, new));
        all.sort_unstable();
        let kept = self.select_neighbours(&all, cap);
        self.set_links(node, layer, kept.iter().map(|c| c.1));
    }

    /// The diversity heuristic (Malkov & Yashunin's algorithm 4, hnswlib's
    /// `getNeighborsByHeuristic2`): walking `candidates` (sorted, nearest first), keep one
    /// unless it is strictly closer to an already kept point than to the base point, until `m`
    /// are kept.
    fn select_neighbours(&self, candidates: &[Cand], m: usize) -> Vec<Cand> {
        if candidates.len() <= m {
            return candidates.to_vec();
        }
        let mut selected: Vec<Cand> = Vec::with_capacity(m);
        for &c in candidates {
            if selected.len() >= m {
                break;
            }
            let v = self.vector(c.1 as usize);
            if selected.iter().all(|s| self.distance(v, s.1) >= c.0) {
                selected.push(c);
            }
        }
        selected
    }

    /// Greedy walk on `layer`: move to the nearest neighbour while that gets closer to
    /// `query`; returns the local minimum.
    fn greedy_closest(&self, query: &[f32], mut cur: Cand, layer: u8) -> Cand {
        loop {
            let mut best = cur;
            for n in self.links(cur.1, layer) {
                let d = self.distance(query, n);
                if d < best.0 {
                    best = Cand(d, n);
                }
            }
            if best.1 == cur.1 {
                return cur;
            }
            cur = best;
        }
    }

    /// Algorithm 2 of Malkov & Yashunin (hnswlib's `searchBaseLayer`): the `ef` nodes of
    /// `layer` nearest to `query` reachable from `entry`, nearest first. With a filter, only
    /// points passing it are returned, and the walk goes on until `ef` of them are found or the
    /// reachable candidates run out.
    fn search_layer(
        &self,
        query: &[f32],
        entry: Cand,
        ef: usize,
        layer: u8,
        filter: Option<&dyn FilterT>,
    ) -> Vec<Cand> {
        let allowed = |node: u32| filter.is_none_or(|f| f.hnsw_filter(&self.ids[node as usize]));
        SCRATCH.with(|cell| {
            // A filter that searches an index itself would re-enter: it gets a fresh scratch.
            let mut borrowed = cell.try_borrow_mut().ok();
            let mut own = Scratch::default();
            let s: &mut Scratch = borrowed.as_deref_mut().unwrap_or(&mut own);
            s.start(self.len());
            s.visit(entry.1);
            s.near.push(std::cmp::Reverse(entry));
            let mut bound = f32::MAX;
            if allowed(entry.1) {
                s.far.push(entry);
                bound = entry.0;
            }
            while let Some(std::cmp::Reverse(c)) = s.near.pop() {
                if c.0 > bound && (s.far.len() >= ef || filter.is_none()) {
                    break;
                }
                s.fresh.clear();
                for n in self.links(c.1, layer) {
                    if s.visit(n) {
                        prefetch(self.vector(n as usize));
                        s.fresh.push(n);
                    }
                }
                for i in 0..s.fresh.len() {
                    let n = s.fresh[i];
                    let d = self.distance(query, n);
                    if s.far.len() < ef || d < bound {
                        s.near.push(std::cmp::Reverse(Cand(d, n)));
                        if allowed(n) {
                            s.far.push(Cand(d, n));
                            if s.far.len() > ef {
                                s.far.pop();
                            }
                            bound = s.far.peek().map_or(f32::MAX, |f| f.0);
                        }
                    }
                }
            }
            let mut sorted: Vec<Cand> = s.far.drain().collect();
            sorted.sort_unstable();
            sorted
        })
    }

    /// The `k` points nearest to `query` (normalised here), nearest first: greedy descent of
    /// the upper layers, then a layer-0 search with `max(ef, k)` candidates. With a filter
    /// (on the caller's ids), only points passing it are returned; the graph is still walked
    /// through the others.
    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        filter: Option<&dyn FilterT>,
    ) -> Vec<Found> {
        assert_eq!(query.len(), self.dim, "query of the wrong dimension");
        let current = *self.entry.read();
        let Some((entry, top)) = current else {
            return Vec::new();
        };
        let norm = dot_f32(query, query).sqrt();
        let query: Vec<f32> = query.iter().map(|x| x / norm).collect();
        let mut cur = Cand(self.distance(&query, entry), entry);
        for layer in (1..=top).rev() {
            cur = self.greedy_closest(&query, cur, layer);
        }
        let mut found = self.search_layer(&query, cur, ef.max(k), 0, filter);
        found.truncate(k);
        found
            .into_iter()
            .map(|c| Found {
                id: self.ids[c.1 as usize],
                distance: c.0.max(0.0),
            })
            .collect()
    }

    /// Writes the index as two streams of little-endian blocks: `graph` (header, levels,
    /// layer-0 slots, upper-layer slots) and `data` (header, ids, vectors).
    pub fn dump(&self, graph: &mut impl Write, data: &mut impl Write) -> io::Result<()> {
        let (entry, top) = self.entry.read().unwrap_or((u32::MAX, 0));
        graph.write_all(GRAPH_MAGIC)?;
        for v in [
            DUMP_VERSION,
            self.dim as u32,
            self.m as u32,
            self.ef_construction as u32,
            entry,
            u32::from(top),
        ] {
            graph.write_all(&v.to_le_bytes())?;
        }
        graph.write_all(&(self.len() as u64).to_le_bytes())?;
        graph.write_all(&(self.upper.len() as u64).to_le_bytes())?;
        graph.write_all(&self.levels)?;
        write_block(graph, &self.layer0, |s| {
            s.load(Atomic::Relaxed).to_le_bytes()
        })?;
        write_block(graph, &self.upper, |s| {
            s.load(Atomic::Relaxed).to_le_bytes()
        })?;
        data.write_all(DATA_MAGIC)?;
        data.write_all(&DUMP_VERSION.to_le_bytes())?;
        data.write_all(&(self.dim as u32).to_le_bytes())?;
        data.write_all(&(self.len() as u64).to_le_bytes())?;
        write_block(data, &self.ids, |&id| (id as u64).to_le_bytes())?;
        write_block(data, &self.vectors, |x| x.to_le_bytes())
    }

    /// Reads an index written by [`dump`](Self::dump), checking that its blocks agree; the
    /// blocks are decoded and checked in parallel.
    pub fn load(graph: &[u8], data: &[u8]) -> Result<PackedHnsw, LoadError> {
        let mut g = Reader::new(graph, GRAPH_MAGIC, "graph")?;
        let [dim, m, ef_construction, entry, top] = g.u32s()?;
        let n = g.u64()? as usize;
        let upper_len = g.u64()? as usize;
        let corrupt = |what: String| LoadError::Corrupt(what);
        if dim == 0 || m < 2 || top > u32::from(MAX_LEVEL) {
            return Err(corrupt(format!(
                "header: dim {dim}, M {m}, top level {top}"
            )));
        }
        let (dim, m) = (dim as usize, m as usize);
        let levels = g.take(n, "levels")?.to_vec();
        let layer0 = g.words(n * (1 + 2 * m), "layer-0 links")?;
        let upper = g.words(upper_len, "upper-layer links")?;
        g.end()?;
        let mut d = Reader::new(data, DATA_MAGIC, "data")?;
        let [data_dim] = d.u32s()?;
        let data_n = d.u64()? as usize;
        if (data_dim as usize, data_n) != (dim, n) {
            return Err(corrupt(format!(
                "the graph has {n} {dim}-d points, the data {data_n} {data_dim}-d"
            )));
        }
        let ids: Vec<usize> = d
            .block(n, 8, "ids")?
            .par_chunks_exact(8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")) as usize)
            .collect();
        let vectors: Vec<f32> = d
            .block(n * dim, 4, "vectors")?
            .par_chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
            .collect();
        d.end()?;
        let mut upper_start = Vec::with_capacity(n);
        let mut next = 0usize;
        for &level in &levels {
            if level > MAX_LEVEL {
                return Err(corrupt(format!("a level of {level}")));
            }
            upper_start.push(next);
            next += level as usize * (1 + m);
        }
        if next != upper_len {
            return Err(corrupt(format!(
                "the levels need {next} upper-layer slots, the dump has {upper_len}"
            )));
        }
        let entry = match (entry, n) {
            (u32::MAX, 0) => None,
            (e, _) if (e as usize) < n && u32::from(levels[e as usize]) == top => {
                Some((e, top as u8))
            }
            _ => return Err(corrupt(format!("entry point {entry} at level {top}"))),
        };
        let index = PackedHnsw {
            dim,
            m,
            ef_construction: ef_construction as usize,
            vectors,
            ids,
            levels,
            layer0,
            upper_start,
            upper,
            locks: (0..n).map(|_| Mutex::new(())).collect(),
            entry: RwLock::new(entry),
        };
        index.check_links()?;
        Ok(index)
    }

    /// Every count within its list and every link to an existing node.
    fn check_links(&self) -> Result<(), LoadError> {
        let n = self.len() as u32;
        let bad = |node: u32| {
            (0..=self.levels[node as usize]).find(|&layer| {
                let slots = self.slots(node, layer);
                slots[0].load(Atomic::Relaxed) as usize >= slots.len()
                    || self.links(node, layer).any(|l| l >= n)
            })
        };
        match (0..n)
            .into_par_iter()
            .find_map_first(|node| bad(node).map(|l| (node, l)))
        {
            Some((node, layer)) => Err(LoadError::Corrupt(format!(
                "the list of node {node} on layer {layer}"
            ))),
            None => Ok(()),
        }
    }
}

/// Level of node `node`: `floor(-ln(u) * scale)`, `u` uniform from a hash of the node number,
/// capped at [`MAX_LEVEL`].
fn level_of(node: u64, scale: f64) -> u8 {
    let u = ((splitmix64(node ^ 0x005E_ED1E_7E15) >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    (-u.ln() * scale).floor().min(f64::from(MAX_LEVEL)) as u8
}

fn splitmix64(mut state: u64) -> u64 {
    state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Writes `items` as one block, each as `bytes(item)`, through a 1 MiB buffer.
fn write_block<T, const B: usize>(
    out: &mut impl Write,
    items: &[T],
    bytes: impl Fn(&T) -> [u8; B],
) -> io::Result<()> {
    let mut buf = Vec::with_capacity(1 << 20);
    for chunk in items.chunks((1 << 20) / B) {
        buf.clear();
        buf.extend(chunk.iter().flat_map(&bytes));
        out.write_all(&buf)?;
    }
    Ok(())
}

/// A cursor over a dump's bytes.
struct Reader<'a> {
    rest: &'a [u8],
    part: &'static str,
}

impl<'a> Reader<'a> {
    /// Checks the magic and version.
    fn new(bytes: &'a [u8], magic: &[u8; 8], part: &'static str) -> Result<Self, LoadError> {
        if bytes.len() < 12 || &bytes[..8] != magic {
            return Err(LoadError::NotADump { part });
        }
        let mut r = Reader {
            rest: &bytes[8..],
            part,
        };
        let [version] = r.u32s()?;
        if version != DUMP_VERSION {
            return Err(LoadError::Version { found: version });
        }
        Ok(r)
    }

    fn take(&mut self, len: usize, what: &str) -> Result<&'a [u8], LoadError> {
        if self.rest.len() < len {
            return Err(LoadError::Corrupt(format!(
                "the {} dump ends inside its {what} ({} bytes left, {len} needed)",
                self.part,
                self.rest.len()
            )));
        }
        let (head, rest) = self.rest.split_at(len);
        self.rest = rest;
        Ok(head)
    }

    fn u32s<const N: usize>(&mut self) -> Result<[u32; N], LoadError> {
        let bytes = self.take(4 * N, "header")?;
        Ok(std::array::from_fn(|i| {
            u32::from_le_bytes(bytes[4 * i..4 * i + 4].try_into().expect("4 bytes"))
        }))
    }

    fn u64(&mut self) -> Result<u64, LoadError> {
        let bytes = self.take(8, "header")?;
        Ok(u64::from_le_bytes(bytes.try_into().expect("8 bytes")))
    }

    /// `count` items of `width` bytes.
    fn block(&mut self, count: usize, width: usize, what: &str) -> Result<&'a [u8], LoadError> {
        let len = count
            .checked_mul(width)
            .ok_or_else(|| LoadError::Corrupt(format!("{what}: {count} items")))?;
        self.take(len, what)
    }

    fn words(&mut self, count: usize, what: &str) -> Result<Vec<AtomicU32>, LoadError> {
        Ok(self
            .block(count, 4, what)?
            .par_chunks_exact(4)
            .map(|b| AtomicU32::new(u32::from_le_bytes(b.try_into().expect("4 bytes"))))
            .collect())
    }

    /// Nothing may follow the last block.
    fn end(&self) -> Result<(), LoadError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(LoadError::Corrupt(format!(
                "{} bytes after the end of the {} dump",
                self.rest.len(),
                self.part
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` `dim`-d points around 10 fixed centres (uniform in [-1, 1)), sorted by centre,
    /// noise (+-0.5 uniform) drawn from `seed`.
    fn clustered(n: usize, dim: usize, seed: u64) -> Vec<f32> {
        let mut state = 0;
        let mut uniform = || {
            state = splitmix64(state);
            (state >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        };
        let centres: Vec<f32> = (0..10 * dim).map(|_| uniform()).collect();
        let mut state = seed;
        let mut uniform = || {
            state = splitmix64(state);
            (state >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        };
        (0..n)
            .flat_map(|i| {
                let c = i * 10 / n;
                (0..dim)
                    .map(|d| centres[c * dim + d] + 0.5 * uniform())
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    fn brute_force(index: &PackedHnsw, q: &[f32], k: usize) -> Vec<usize> {
        let norm = dot_f32(q, q).sqrt();
        let q: Vec<f32> = q.iter().map(|x| x / norm).collect();
        let mut all: Vec<(f32, usize)> = (0..index.len())
            .map(|i| (1.0 - dot_f32(&q, index.vector(i)), index.ids()[i]))
            .collect();
        all.sort_by(|a, b| a.0.total_cmp(&b.0));
        all.into_iter().take(k).map(|(_, id)| id).collect()
    }

    fn recall(index: &PackedHnsw, queries: &[f32], ef: usize) -> f64 {
        let (mut hits, mut total) = (0, 0);
        for q in queries.chunks(index.dim()) {
            let truth = brute_force(index, q, 10);
            let found = index.search(q, 10, ef, None);
            hits += found.iter().filter(|f| truth.contains(&f.id)).count();
            total += 10;
        }
        hits as f64 / total as f64
    }

    fn build(n: usize, dim: usize) -> (PackedHnsw, Vec<f32>) {
        let rows = clustered(n, dim, 1);
        let ids: Vec<usize> = (100..100 + n).collect();
        let mut index = PackedHnsw::new(dim, 8, 64);
        index.insert(&rows, &ids);
        (index, rows)
    }

    #[test]
    fn clustered_points_in_cluster_order_are_found() {
        let (mut index, _) = build(3000, 32);
        let queries = clustered(100, 32, 2);
        let before = recall(&index, &queries, 32);
        assert!(before > 0.95, "recall@10 {before}");
        // Insert more into the same index: still found.
        let more = clustered(1000, 32, 3);
        index.insert(&more, &(10_000..11_000).collect::<Vec<_>>());
        assert_eq!(index.len(), 4000);
        let after = recall(&index, &queries, 32);
        assert!(after > 0.95, "recall@10 after inserting more {after}");
    }

    #[test]
    fn a_filter_keeps_only_its_points() {
        let (index, rows) = build(2000, 16);
        let even: Vec<usize> = (100..2100).filter(|id| id % 2 == 0).collect();
        let found = index.search(&rows[..16], 10, 64, Some(&even));
        assert_eq!(found.len(), 10);
        assert!(found.iter().all(|f| f.id % 2 == 0));
        assert!(found.windows(2).all(|w| w[0].distance <= w[1].distance));
    }

    #[test]
    fn dump_and_load_give_the_same_index() {
        let (index, rows) = build(1500, 16);
        let (mut graph, mut data) = (Vec::new(), Vec::new());
        index.dump(&mut graph, &mut data).unwrap();
        let back = PackedHnsw::load(&graph, &data).unwrap();
        assert_eq!(back.ids(), index.ids());
        for q in rows.chunks(16).take(50) {
            assert_eq!(back.search(q, 10, 32, None), index.search(q, 10, 32, None));
        }
        let empty = PackedHnsw::new(4, 4, 8);
        let (mut g, mut d) = (Vec::new(), Vec::new());
        empty.dump(&mut g, &mut d).unwrap();
        assert!(PackedHnsw::load(&g, &d).unwrap().is_empty());
    }

    #[test]
    fn load_refuses_other_formats_and_damage() {
        let (index, _) = build(300, 8);
        let (mut graph, mut data) = (Vec::new(), Vec::new());
        index.dump(&mut graph, &mut data).unwrap();
        let load = |g: &[u8], d: &[u8]| PackedHnsw::load(g, d).err();
        assert_eq!(
            load(&data, &graph),
            Some(LoadError::NotADump { part: "graph" })
        );
        let mut old = graph.clone();
        old[8] = 0;
        assert_eq!(load(&old, &data), Some(LoadError::Version { found: 0 }));
        assert!(matches!(
            load(&graph[..graph.len() - 3], &data),
            Some(LoadError::Corrupt(_))
        ));
        let mut bad_link = graph.clone();
        let first_link = 8 + 6 * 4 + 2 * 8 + 300 + 4;
        bad_link[first_link..first_link + 4].copy_from_slice(&1_000_000u32.to_le_bytes());
        assert!(matches!(
            load(&bad_link, &data),
            Some(LoadError::Corrupt(_))
        ));
        let mut short_data = data.clone();
        short_data.push(0);
        assert!(matches!(
            load(&graph, &short_data),
            Some(LoadError::Corrupt(_))
        ));
    }
}
