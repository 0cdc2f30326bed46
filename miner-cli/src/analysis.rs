//! What a miner can learn about a dataset without the validator: the validator's own row rules,
//! a summary (rows, tokens, repeats, eval-set overlap), and the duplicate rule against other
//! miners' fetched datasets.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use protocol::config::ClusterConfig;
use protocol::dataset::{parse_dataset, row_overlap, Dataset, DatasetLimits};
use protocol::scoring::{content_duplicates, DatasetIdentity};

use crate::ctx::Ctx;
use crate::fetch::{read_index, IndexEntry};

/// Reads and validates `file` with the validator's limits; errors name the file and the line,
/// field and reason.
pub fn load_dataset(file: &Path, limits: &DatasetLimits) -> Result<(Dataset, Vec<u8>)> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let dataset = parse_dataset(&bytes, limits).map_err(|e| anyhow!("{}: {e}", file.display()))?;
    Ok((dataset, bytes))
}

/// The canonical rows of the eval set `spec` and where they came from, as the validator resolves
/// it (a local file, or `org/name@sha` through the Hub when the config uses the Hugging Face Hub).
pub async fn eval_canonical(ctx: &Ctx, spec: &str) -> Result<(Vec<String>, PathBuf)> {
    let path = ctx.eval_set_path_of(spec).await?;
    let limits = DatasetLimits {
        max_rows: usize::MAX,
        max_file_bytes: u64::MAX,
        ..ctx.config.dataset.clone()
    };
    let bytes = std::fs::read(&path).with_context(|| format!("eval set {}", path.display()))?;
    let eval =
        parse_dataset(&bytes, &limits).map_err(|e| anyhow!("eval set {}: {e}", path.display()))?;
    Ok((eval.canonical, path))
}

/// The competitions scored on the eval set `spec`, for labels: "" when the config has one eval
/// set, else " (competitions 1, 2)" or " (no competition)".
fn competitions_on(ctx: &Ctx, spec: &str) -> String {
    let config = &ctx.config;
    if config.eval_sets().len() < 2 {
        return String::new();
    }
    let ids: Vec<&str> = config
        .competitions
        .iter()
        .filter(|c| config.eval_set_for(&c.id) == spec)
        .map(|c| c.id.as_str())
        .collect();
    match ids.len() {
        0 => " (no competition)".into(),
        1 => format!(" (competition {})", ids[0]),
        _ => format!(" (competitions {})", ids.join(", ")),
    }
}

/// The model's `tokenizer.json` when it is on this machine: the devnet's generated tiny model
/// under the state directory, or a local model directory.
pub fn tokenizer_path(ctx: &Ctx) -> PathBuf {
    let config = &ctx.config;
    if config.model.source == "tiny" {
        ctx.paths.state_dir.join("tiny-model/tokenizer.json")
    } else {
        ctx.paths
            .resolve(&config.model.source)
            .join("tokenizer.json")
    }
}

/// Rows that repeat an earlier row of the same file (by canonical row): (line, first line).
pub fn repeats(dataset: &Dataset) -> Vec<(usize, usize)> {
    let mut first: HashMap<&str, usize> = HashMap::new();
    let mut out = Vec::new();
    for (row, line) in dataset.canonical.iter().zip(&dataset.lines) {
        match first.get(row.as_str()) {
            Some(earlier) => out.push((*line, *earlier)),
            None => {
                first.insert(row, *line);
            }
        }
    }
    out
}

/// Lines of `dataset` whose canonical row is in `eval`.
pub fn eval_rows_in(dataset: &Dataset, eval: &[String]) -> Vec<usize> {
    let eval: HashSet<&str> = eval.iter().map(String::as_str).collect();
    dataset
        .canonical
        .iter()
        .zip(&dataset.lines)
        .filter(|(row, _)| eval.contains(row.as_str()))
        .map(|(_, line)| *line)
        .collect()
}

fn lines_preview(lines: &[usize]) -> String {
    let shown: Vec<String> = lines.iter().take(8).map(|l| l.to_string()).collect();
    let more = if lines.len() > 8 { ", ..." } else { "" };
    format!("{}{more}", shown.join(", "))
}

fn percent(part: usize, whole: usize) -> f64 {
    if whole == 0 {
        0.0
    } else {
        100.0 * part as f64 / whole as f64
    }
}

/// `validate FILE`.
pub async fn validate(ctx: &Ctx, file: &Path) -> Result<()> {
    let config = &ctx.config;
    let (dataset, bytes) = load_dataset(file, &config.dataset)?;
    let n = dataset.rows.len();
    println!("{}: valid ({} bytes)", file.display(), bytes.len());
    println!(
        "rows used: {n} (limit {}; the validator trains on the first {})",
        config.dataset.max_rows,
        config.training.max_rows.min(n)
    );
    let repeated = repeats(&dataset);
    if repeated.is_empty() {
        println!("duplicate rows inside the file: 0");
    } else {
        let pairs: Vec<String> = repeated
            .iter()
            .take(8)
            .map(|(line, first)| format!("line {line} repeats line {first}"))
            .collect();
        println!(
            "duplicate rows inside the file: {} ({}{})",
            repeated.len(),
            pairs.join(", "),
            if repeated.len() > 8 { ", ..." } else { "" }
        );
    }
    println!("content hash: {}", dataset.content_hash);
    for spec in ctx.config.eval_sets() {
        match eval_canonical(ctx, spec).await {
            Ok((eval, path)) => {
                let lines = eval_rows_in(&dataset, &eval);
                println!(
                    "rows also in the eval set ({}){}: {} of {n} ({:.1} %){}",
                    path.display(),
                    competitions_on(ctx, spec),
                    lines.len(),
                    percent(lines.len(), n),
                    if lines.is_empty() {
                        String::new()
                    } else {
                        format!(", lines {}", lines_preview(&lines))
                    }
                );
            }
            Err(e) => println!("eval-set overlap not measured: {e:#}"),
        }
    }
    let tokenizer = tokenizer_path(ctx);
    match worker::chat::ChatTokenizer::load(&tokenizer) {
        Ok(chat) => {
            let (mut tokens, mut supervised, mut truncated) = (0usize, 0usize, 0usize);
            for (row, line) in dataset.rows.iter().zip(&dataset.lines) {
                let full = chat
                    .encode_row(row, usize::MAX)
                    .map_err(|e| anyhow!("{}: line {line}: tokenizing: {e}", file.display()))?;
                let ex = chat
                    .encode_row(row, config.training.max_seq_len)
                    .map_err(|e| anyhow!("{}: line {line}: tokenizing: {e}", file.display()))?;
                if full.len() > ex.len() {
                    truncated += 1;
                }
                tokens += ex.len();
                supervised += ex.supervised();
            }
            println!(
                "tokens ({}; rows cut to {}): {tokens}, of which trained on: {supervised}; rows truncated: {truncated}",
                tokenizer.display(),
                config.training.max_seq_len
            );
        }
        Err(_) => println!(
            "tokens: not counted (no tokenizer at {}; on the devnet it appears after the first `coordinator run`)",
            tokenizer.display()
        ),
    }
    Ok(())
}

/// One other dataset the overlap check compares with.
struct Other {
    entry: IndexEntry,
    dataset: Dataset,
}

/// `overlap FILE --dir DIR`.
pub async fn overlap(ctx: &Ctx, file: &Path, dir: &Path) -> Result<()> {
    let config: &ClusterConfig = &ctx.config;
    let (mine, _) = load_dataset(file, &config.dataset)?;
    let index = read_index(dir)?;
    let me = ctx.hotkey_ss58();
    let mut others = Vec::new();
    let mut my_commit: Option<IndexEntry> = None;
    for entry in index.entries {
        if me.as_deref() == Some(entry.hotkey.as_str()) {
            my_commit = Some(entry);
            continue;
        }
        let Some(name) = entry.file.as_ref() else {
            continue;
        };
        let path = dir.join(name);
        match std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|b| parse_dataset(&b, &config.dataset).map_err(|e| e.to_string()))
        {
            Ok(dataset) => others.push(Other { entry, dataset }),
            Err(e) => println!(
                "skipping uid {} ({}): {}: {e}",
                entry.uid.map_or("-".into(), |u| u.to_string()),
                entry.repo,
                path.display()
            ),
        }
    }
    // My place in commit order: my current commitment's block if it already holds this very
    // dataset, else a new commit, later than everything on chain.
    let my_block = match &my_commit {
        Some(c) if c.content_hash.as_deref() == Some(mine.content_hash.as_str()) => {
            println!(
                "this file is what your hotkey already committed ({} at block {})",
                c.commitment, c.commit_block
            );
            c.commit_block
        }
        Some(c) => {
            println!(
                "your hotkey's current commitment ({} at block {}) holds different content; a new commit lands after every commitment below",
                c.commitment, c.commit_block
            );
            u64::MAX
        }
        None => u64::MAX,
    };
    let my_uid = my_commit.as_ref().and_then(|c| c.uid).unwrap_or(u16::MAX);
    let threshold = config.scoring.duplicate_overlap;
    let mine_distinct: HashSet<&str> = mine.canonical.iter().map(String::as_str).collect();
    println!(
        "{}: {} rows ({} distinct); duplicate rule: equal content hash, or shared distinct rows >= {threshold} x the smaller dataset",
        file.display(),
        mine.rows.len(),
        mine_distinct.len()
    );
    for spec in config.eval_sets() {
        match eval_canonical(ctx, spec).await {
            Ok((eval, path)) => {
                let lines = eval_rows_in(&mine, &eval);
                println!(
                    "eval set ({}){}: {} of {} rows also in it ({:.1} %)",
                    path.display(),
                    competitions_on(ctx, spec),
                    lines.len(),
                    mine.rows.len(),
                    percent(lines.len(), mine.rows.len())
                );
            }
            Err(e) => println!("eval-set overlap not measured: {e:#}"),
        }
    }
    println!(
        "{:>4}  {:<48}  {:<40}  {:>7}  {:>6}  {:>7}  linked",
        "uid", "hotkey", "repo", "commit", "shared", "of min"
    );
    for o in &others {
        let theirs: HashSet<&str> = o.dataset.canonical.iter().map(String::as_str).collect();
        let shared = row_overlap(&mine.canonical, &o.dataset.canonical);
        let smaller = mine_distinct.len().min(theirs.len());
        let same = o.dataset.content_hash == mine.content_hash;
        let linked = same || (shared > 0 && shared as f64 >= threshold * smaller as f64);
        println!(
            "{:>4}  {:<48}  {:<40}  {:>7}  {:>6}  {:>6.1}%  {}",
            o.entry.uid.map_or("-".into(), |u| u.to_string()),
            o.entry.hotkey,
            o.entry.repo,
            o.entry.commit_block,
            shared,
            percent(shared, smaller),
            if same {
                "yes (same content)"
            } else if linked {
                "yes"
            } else {
                "no"
            }
        );
    }
    // The validator's rule over everyone, me included (links are transitive).
    let mut identities: Vec<DatasetIdentity<'_>> = others
        .iter()
        .filter_map(|o| {
            o.entry.uid.map(|uid| DatasetIdentity {
                uid,
                commit_block: o.entry.commit_block,
                content_hash: &o.dataset.content_hash,
                rows: &o.dataset.canonical,
            })
        })
        .collect();
    identities.push(DatasetIdentity {
        uid: my_uid,
        commit_block: my_block,
        content_hash: &mine.content_hash,
        rows: &mine.canonical,
    });
    let duplicates = content_duplicates(&identities, threshold);
    let by_uid: BTreeMap<u16, &Other> = others
        .iter()
        .filter_map(|o| o.entry.uid.map(|u| (u, o)))
        .collect();
    match duplicates.get(&my_uid) {
        Some(original) => {
            let o = by_uid.get(original);
            println!(
                "verdict: DUPLICATE of uid {original} (hotkey {}, repo {}, committed at block {}): the validator would give you weight 0; its commit is earlier than yours",
                o.map_or("?", |o| o.entry.hotkey.as_str()),
                o.map_or("?", |o| o.entry.repo.as_str()),
                o.map_or(0, |o| o.entry.commit_block)
            );
        }
        None => {
            let copies: Vec<String> = duplicates
                .iter()
                .filter(|(_, orig)| **orig == my_uid)
                .map(|(uid, _)| format!("uid {uid}"))
                .collect();
            if copies.is_empty() {
                println!("verdict: not a duplicate of any fetched dataset");
            } else {
                println!(
                    "verdict: not a duplicate; your commit is the earliest of its group, so {} would be scored as duplicates of you",
                    copies.join(", ")
                );
            }
        }
    }
    if index.failed > 0 {
        println!(
            "note: {} committed dataset(s) could not be fetched (see `fetch-all`); they are not compared",
            index.failed
        );
    }
    Ok(())
}
