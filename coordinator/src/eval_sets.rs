//! The eval sets a validator scores on: `[eval] set`, and the `eval_set` of each
//! `[[competitions]]` entry that names its own. Each is read once at start; a job carries the set
//! of its miner's competition, in-process workers evaluate on its rows, remote workers are sent
//! its file once per connection and keep it by hash.

use std::collections::BTreeMap;
use std::sync::Arc;

use protocol::config::ClusterConfig;
use protocol::dataset::Row;
use protocol::wire::EvalSetData;
use worker::runner::EvalRows;

/// One eval set, as a job carries it.
#[derive(Debug, Clone)]
pub struct EvalSet {
    /// How the config names it (`org/name@sha` or a path), for logs.
    pub spec: String,
    /// Its rows and their content hash: what in-process workers evaluate on.
    pub rows: EvalRows,
    /// Its file and the same hash: what remote workers are sent, parse and check.
    pub file: Arc<EvalSetData>,
}

impl EvalSet {
    /// The set named `spec`, read as `rows` with content hash `hash` from the file `bytes`.
    pub fn new(spec: &str, rows: Vec<Row>, hash: String, bytes: Vec<u8>) -> Self {
        Self {
            spec: spec.to_string(),
            rows: EvalRows {
                hash: hash.clone(),
                rows: Arc::new(rows),
            },
            file: Arc::new(EvalSetData { hash, data: bytes }),
        }
    }

    /// SHA-256 of its canonical rows: the name workers know it by, and part of the loss cache
    /// key.
    pub fn hash(&self) -> &str {
        &self.rows.hash
    }

    /// Its rows, which a worker's report must account for.
    pub fn row_count(&self) -> usize {
        self.rows.rows.len()
    }
}

/// Every eval set of a validator, and which competition is scored on which.
#[derive(Debug, Clone)]
pub struct EvalSets {
    default: Arc<EvalSet>,
    by_competition: BTreeMap<String, Arc<EvalSet>>,
}

impl EvalSets {
    /// The sets of `config`: `read` gives the set of each spec in
    /// [`ClusterConfig::eval_sets`] (each spec is read once, `[eval] set` first); a competition
    /// without its own `eval_set` is scored on `[eval] set`.
    pub fn from_config<E>(
        config: &ClusterConfig,
        mut read: impl FnMut(&str) -> Result<EvalSet, E>,
    ) -> Result<Self, E> {
        let mut by_spec: BTreeMap<&str, Arc<EvalSet>> = BTreeMap::new();
        for spec in config.eval_sets() {
            by_spec.insert(spec, Arc::new(read(spec)?));
        }
        let default = by_spec[config.eval.set.as_str()].clone();
        let by_competition = config
            .competitions
            .iter()
            .filter(|c| !c.eval_set.is_empty())
            .map(|c| (c.id.clone(), by_spec[c.eval_set.as_str()].clone()))
            .collect();
        Ok(Self {
            default,
            by_competition,
        })
    }

    /// The set submissions to competition `id` are scored on.
    pub fn for_competition(&self, id: &str) -> &Arc<EvalSet> {
        self.by_competition.get(id).unwrap_or(&self.default)
    }

    /// Each distinct set once (by hash), `[eval] set` first.
    pub fn distinct(&self) -> Vec<&Arc<EvalSet>> {
        let mut sets = vec![&self.default];
        for set in self.by_competition.values() {
            if !sets.iter().any(|s| s.hash() == set.hash()) {
                sets.push(set);
            }
        }
        sets
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(spec: &str, n: usize) -> EvalSet {
        EvalSet::new(spec, Vec::new(), format!("{spec}-{n}"), vec![b'x'; n])
    }

    #[test]
    fn competitions_get_their_own_set_or_the_default_and_each_spec_is_read_once() {
        let config = ClusterConfig::from_toml_str(
            "[eval]\nset = \"main.jsonl\"\n\n[[competitions]]\nid = \"1\"\n\n\
             [[competitions]]\nid = \"2\"\neval_set = \"two.jsonl\"\n\n\
             [[competitions]]\nid = \"3\"\neval_set = \"two.jsonl\"\n\n\
             [[competitions]]\nid = \"4\"\neval_set = \"main.jsonl\"\n",
            "test.toml",
        )
        .expect("config");
        let mut read = Vec::new();
        let sets = EvalSets::from_config(&config, |spec| {
            read.push(spec.to_string());
            Ok::<_, String>(set(spec, read.len()))
        })
        .expect("sets");
        assert_eq!(read, ["main.jsonl", "two.jsonl"]);
        assert_eq!(sets.for_competition("1").spec, "main.jsonl");
        assert_eq!(sets.for_competition("2").spec, "two.jsonl");
        assert_eq!(
            sets.for_competition("3").hash(),
            sets.for_competition("2").hash()
        );
        assert_eq!(sets.for_competition("4").hash(), sets.distinct()[0].hash());
        assert_eq!(sets.for_competition("unlisted").spec, "main.jsonl");
        let distinct: Vec<&str> = sets.distinct().iter().map(|s| s.spec.as_str()).collect();
        assert_eq!(distinct, ["main.jsonl", "two.jsonl"]);
    }

    #[test]
    fn a_set_that_cannot_be_read_fails_the_whole() {
        let config = ClusterConfig::from_toml_str(
            "[[competitions]]\nid = \"1\"\neval_set = \"missing.jsonl\"\n",
            "test.toml",
        )
        .expect("config");
        let err = EvalSets::from_config(&config, |spec| {
            if spec == "missing.jsonl" {
                Err(format!("{spec}: no such file"))
            } else {
                Ok(set(spec, 1))
            }
        })
        .expect_err("missing set");
        assert_eq!(err, "missing.jsonl: no such file");
    }
}
