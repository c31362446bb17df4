//! HNSW parameters, checked before any work (`IndexParams` → `check()` → [`ValidIndexParams`]).

use super::IndexError;
use serde::{Deserialize, Serialize};

/// HNSW parameters as given by a user (CLI flags, SQL arguments, library callers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexParams {
    /// Neighbours kept per node and layer (hnsw_rs `max_nb_connection`, the paper's M).
    pub m: usize,
    /// Candidate list size while building (higher: better graph, slower build).
    pub ef_construction: usize,
    /// Candidate list size while searching (raised to k when k is larger).
    pub ef_search: usize,
}

impl Default for IndexParams {
    /// M = 16, ef_construction = 200, ef_search = 128 (the vendored hnsw_rs, whose graph is
    /// hnswlib's): recall@10 0.983 on 5 000 uniform 64-d points (0.905 at ef_search 64;
    /// `tests/integration/index.rs`), 0.997 on 100 000 noisy-clustered 256-d points stored in
    /// cluster order and 0.82 at 1M, where ef_search = 512 buys 0.98
    /// (`vendor/hnsw_rs/PATCHES.md`).
    fn default() -> Self {
        IndexParams {
            m: 16,
            ef_construction: 200,
            ef_search: 128,
        }
    }
}

/// Parameters that passed [`IndexParams::check`]: the only kind an index is built with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "IndexParams", into = "IndexParams")]
pub struct ValidIndexParams(IndexParams);

impl IndexParams {
    /// Checks the ranges hnsw_rs supports: 2 ≤ M ≤ 256, M ≤ ef_construction ≤ 10 000,
    /// 1 ≤ ef_search ≤ 10 000.
    pub fn check(self) -> Result<ValidIndexParams, IndexError> {
        let invalid = |name, value: usize, rule| IndexError::InvalidParam {
            name,
            value: value.to_string(),
            rule,
        };
        if !(2..=256).contains(&self.m) {
            return Err(invalid("m", self.m, "between 2 and 256 (hnsw_rs limit)"));
        }
        if self.ef_construction < self.m || self.ef_construction > 10_000 {
            return Err(invalid(
                "ef_construction",
                self.ef_construction,
                "at least m and at most 10000",
            ));
        }
        if !(1..=10_000).contains(&self.ef_search) {
            return Err(invalid("ef_search", self.ef_search, "between 1 and 10000"));
        }
        Ok(ValidIndexParams(self))
    }
}

impl TryFrom<IndexParams> for ValidIndexParams {
    type Error = IndexError;
    fn try_from(params: IndexParams) -> Result<Self, IndexError> {
        params.check()
    }
}

impl From<ValidIndexParams> for IndexParams {
    fn from(valid: ValidIndexParams) -> Self {
        valid.0
    }
}

impl ValidIndexParams {
    /// The checked parameters.
    pub fn get(&self) -> &IndexParams {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_ranges_are_enforced() {
        assert!(IndexParams::default().check().is_ok());
        let bad = [
            IndexParams {
                m: 1,
                ..Default::default()
            },
            IndexParams {
                m: 300,
                ef_construction: 400,
                ..Default::default()
            },
            IndexParams {
                ef_construction: 8,
                ..Default::default()
            },
            IndexParams {
                ef_search: 0,
                ..Default::default()
            },
        ];
        for params in bad {
            assert!(
                matches!(params.check(), Err(IndexError::InvalidParam { .. })),
                "{params:?}"
            );
        }
    }

    #[test]
    fn stored_params_are_rechecked_when_read() {
        let json = r#"{"m":1,"ef_construction":200,"ef_search":64}"#;
        assert!(serde_json::from_str::<ValidIndexParams>(json).is_err());
        let valid = IndexParams::default().check().unwrap();
        let back: ValidIndexParams =
            serde_json::from_str(&serde_json::to_string(&valid).unwrap()).unwrap();
        assert_eq!(back, valid);
    }
}
