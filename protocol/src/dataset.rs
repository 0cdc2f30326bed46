//! Miner and evaluation datasets: the JSONL row format, validation with limits, canonical rows and
//! the dataset content hash (DESIGN.md §4).
//!
//! A dataset is rejected at its first bad row, with the file line, the field and the reason; the
//! validator moves on to the next miner.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Who wrote a message in a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The human side; always first in a pair.
    User,
    /// The model side; the only tokens that carry loss.
    Assistant,
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Who wrote it.
    pub role: Role,
    /// The text, untrimmed as written in the file.
    pub content: String,
}

/// One dataset row: an optional system prompt and alternating user/assistant messages.
///
/// A validated row's conversations alternate user, assistant, user, ... and may end with an unpaired
/// user message (the tokenizer drops it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Row {
    /// `null`, absent or empty means no system block.
    #[serde(default)]
    pub system: Option<String>,
    /// The messages, in order.
    pub conversations: Vec<Message>,
}

/// Size limits applied while reading a dataset (the `[dataset]` table of cluster.toml).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatasetLimits {
    /// Largest accepted file.
    pub max_file_bytes: u64,
    /// Longest accepted line.
    pub max_line_bytes: usize,
    /// Rows used: the first ones in file order; later lines are not read.
    pub max_rows: usize,
    /// Deepest accepted JSON nesting.
    pub max_json_depth: usize,
}

impl Default for DatasetLimits {
    fn default() -> Self {
        Self {
            max_file_bytes: 64 * 1024 * 1024,
            max_line_bytes: 1024 * 1024,
            max_rows: 250,
            max_json_depth: 16,
        }
    }
}

/// Why a dataset was rejected: where (line, field) and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub struct DatasetError {
    /// 1-based file line, when the problem is in one line.
    pub line: Option<usize>,
    /// The JSON field, e.g. `conversations[2].role`.
    pub field: Option<String>,
    /// What is wrong.
    pub reason: String,
}

impl std::fmt::Display for DatasetError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.line, &self.field) {
            (Some(line), Some(field)) => write!(f, "line {line}, field {field}: {}", self.reason),
            (Some(line), None) => write!(f, "line {line}: {}", self.reason),
            (None, Some(field)) => write!(f, "field {field}: {}", self.reason),
            (None, None) => write!(f, "file: {}", self.reason),
        }
    }
}

impl DatasetError {
    fn file(reason: impl Into<String>) -> Self {
        Self {
            line: None,
            field: None,
            reason: reason.into(),
        }
    }

    fn line(line: usize, reason: impl Into<String>) -> Self {
        Self {
            line: Some(line),
            field: None,
            reason: reason.into(),
        }
    }

    fn field(line: usize, field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            line: Some(line),
            field: Some(field.into()),
            reason: reason.into(),
        }
    }
}

/// A validated dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dataset {
    /// The rows used, in file order.
    pub rows: Vec<Row>,
    /// The file line of each row.
    pub lines: Vec<usize>,
    /// The canonical form of each row (see [`canonical_row`]).
    pub canonical: Vec<String>,
    /// SHA-256 (hex) of the sorted canonical rows (see [`content_hash`]).
    pub content_hash: String,
}

/// Reads and validates a JSONL dataset.
///
/// Checks, in order: file size; then per line (blank lines skipped, numbering kept): length,
/// UTF-8, JSON nesting depth (before parsing), the row schema — an object with only `system`
/// (string, null or absent) and `conversations` (a non-empty array of `{role, content}` objects,
/// roles alternating user, assistant, ...; a trailing unpaired user message is allowed). Only the
/// first `max_rows` rows are read. A file without rows is rejected.
pub fn parse_dataset(bytes: &[u8], limits: &DatasetLimits) -> Result<Dataset, DatasetError> {
    if bytes.len() as u64 > limits.max_file_bytes {
        return Err(DatasetError::file(format!(
            "{} bytes exceeds the limit of {} bytes",
            bytes.len(),
            limits.max_file_bytes
        )));
    }
    let mut rows = Vec::new();
    let mut lines = Vec::new();
    for (index, raw) in bytes.split(|b| *b == b'\n').enumerate() {
        if rows.len() >= limits.max_rows {
            break;
        }
        let line_no = index + 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.len() > limits.max_line_bytes {
            return Err(DatasetError::line(
                line_no,
                format!(
                    "{} bytes exceeds the line limit of {} bytes",
                    raw.len(),
                    limits.max_line_bytes
                ),
            ));
        }
        let text = std::str::from_utf8(raw).map_err(|e| {
            DatasetError::line(
                line_no,
                format!("not valid UTF-8 (byte {})", e.valid_up_to()),
            )
        })?;
        if text.trim().is_empty() {
            continue;
        }
        let depth = json_depth(text);
        if depth > limits.max_json_depth {
            return Err(DatasetError::line(
                line_no,
                format!(
                    "JSON nesting depth {depth} exceeds the limit of {}",
                    limits.max_json_depth
                ),
            ));
        }
        let value: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| DatasetError::line(line_no, format!("invalid JSON: {e}")))?;
        rows.push(row_from_json(&value, line_no)?);
        lines.push(line_no);
    }
    if rows.is_empty() {
        return Err(DatasetError::file("no rows"));
    }
    let canonical: Vec<String> = rows.iter().map(canonical_row).collect();
    let content_hash = content_hash(&canonical);
    Ok(Dataset {
        rows,
        lines,
        canonical,
        content_hash,
    })
}

/// The deepest nesting of objects and arrays in `text`, ignoring brackets inside strings. Runs
/// before parsing, so a depth bomb never reaches the JSON parser.
fn json_depth(text: &str) -> usize {
    let (mut depth, mut max, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for b in text.bytes() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                max = max.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// Checks one parsed line against the row schema.
fn row_from_json(value: &serde_json::Value, line: usize) -> Result<Row, DatasetError> {
    let object = value
        .as_object()
        .ok_or_else(|| DatasetError::line(line, "a row must be a JSON object"))?;
    if let Some(key) = object
        .keys()
        .find(|k| *k != "system" && *k != "conversations")
    {
        return Err(DatasetError::field(
            line,
            key.as_str(),
            "unknown field (allowed: system, conversations)",
        ));
    }
    let system = match object.get("system") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(_) => {
            return Err(DatasetError::field(
                line,
                "system",
                "must be a string or null",
            ))
        }
    };
    let conversations = object
        .get("conversations")
        .ok_or_else(|| DatasetError::field(line, "conversations", "missing"))?
        .as_array()
        .ok_or_else(|| DatasetError::field(line, "conversations", "must be an array"))?;
    if conversations.is_empty() {
        return Err(DatasetError::field(
            line,
            "conversations",
            "must not be empty",
        ));
    }
    let mut messages = Vec::with_capacity(conversations.len());
    for (i, message) in conversations.iter().enumerate() {
        let at = |what: &str| format!("conversations[{i}]{what}");
        let message = message.as_object().ok_or_else(|| {
            DatasetError::field(line, at(""), "must be an object with role and content")
        })?;
        if let Some(key) = message.keys().find(|k| *k != "role" && *k != "content") {
            return Err(DatasetError::field(
                line,
                at(&format!(".{key}")),
                "unknown field (allowed: role, content)",
            ));
        }
        let role = match message.get("role") {
            None => return Err(DatasetError::field(line, at(".role"), "missing")),
            Some(serde_json::Value::String(r)) if r == "user" => Role::User,
            Some(serde_json::Value::String(r)) if r == "assistant" => Role::Assistant,
            Some(other) => {
                return Err(DatasetError::field(
                    line,
                    at(".role"),
                    format!("{other} is not \"user\" or \"assistant\""),
                ))
            }
        };
        let expected = if i % 2 == 0 {
            Role::User
        } else {
            Role::Assistant
        };
        if role != expected {
            let want = if expected == Role::User {
                "user"
            } else {
                "assistant"
            };
            return Err(DatasetError::field(
                line,
                at(".role"),
                format!("expected \"{want}\" (roles must alternate user, assistant, ...)"),
            ));
        }
        let content = match message.get("content") {
            None => return Err(DatasetError::field(line, at(".content"), "missing")),
            Some(serde_json::Value::String(c)) => c.clone(),
            Some(_) => {
                return Err(DatasetError::field(
                    line,
                    at(".content"),
                    "must be a string",
                ))
            }
        };
        messages.push(Message { role, content });
    }
    Ok(Row {
        system,
        conversations: messages,
    })
}

/// The canonical form of a row: JSON with sorted keys and no insignificant whitespace; a null,
/// absent or empty `system` is written as `null`, so the three spellings compare equal.
pub fn canonical_row(row: &Row) -> String {
    let system = row.system.as_deref().filter(|s| !s.is_empty());
    let conversations: Vec<serde_json::Value> = row
        .conversations
        .iter()
        .map(|m| {
            serde_json::json!({
                "content": m.content,
                "role": match m.role { Role::User => "user", Role::Assistant => "assistant" },
            })
        })
        .collect();
    // serde_json's map is ordered by key (no preserve_order feature), so keys come out sorted.
    serde_json::json!({ "conversations": conversations, "system": system }).to_string()
}

/// SHA-256 (hex) of the canonical rows sorted and joined with `\n`: reordering the rows of a
/// dataset does not change it.
pub fn content_hash(canonical: &[String]) -> String {
    let mut sorted: Vec<&String> = canonical.iter().collect();
    sorted.sort();
    let mut hasher = Sha256::new();
    for (i, row) in sorted.iter().enumerate() {
        if i > 0 {
            hasher.update(b"\n");
        }
        hasher.update(row.as_bytes());
    }
    hex::encode(hasher.finalize())
}

/// How many distinct canonical rows two datasets share (intersection of their row sets).
pub fn row_overlap(a: &[String], b: &[String]) -> usize {
    let (small, large) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    let large: HashSet<&String> = large.iter().collect();
    small
        .iter()
        .collect::<HashSet<_>>()
        .into_iter()
        .filter(|r| large.contains(r))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"system":"s","conversations":[{"role":"user","content":"q"},{"role":"assistant","content":"a"}]}"#;

    fn limits() -> DatasetLimits {
        DatasetLimits::default()
    }

    fn err(text: &str) -> DatasetError {
        parse_dataset(text.as_bytes(), &limits()).expect_err("should be rejected")
    }

    #[test]
    fn good_rows_parse_and_blank_lines_keep_numbering() {
        let text = format!("{GOOD}\n\n  \n{GOOD}\n");
        let d = parse_dataset(text.as_bytes(), &limits()).expect("valid");
        assert_eq!(d.rows.len(), 2);
        assert_eq!(d.lines, vec![1, 4]);
        assert_eq!(d.rows[0].system.as_deref(), Some("s"));
    }

    #[test]
    fn system_may_be_absent_null_or_empty_and_trailing_user_is_allowed() {
        let text = concat!(
            r#"{"conversations":[{"role":"user","content":"q"},{"role":"assistant","content":"a"},{"role":"user","content":"more?"}]}"#,
            "\n",
            r#"{"system":null,"conversations":[{"role":"user","content":"q"}]}"#,
            "\n",
            r#"{"system":"","conversations":[{"role":"user","content":"q"}]}"#
        );
        let d = parse_dataset(text.as_bytes(), &limits()).expect("valid");
        assert_eq!(d.rows.len(), 3);
        assert_eq!(
            d.canonical[1], d.canonical[2],
            "null and empty system are the same row"
        );
    }

    #[test]
    fn each_malformed_row_kind_names_line_field_and_reason() {
        let cases: &[(&str, Option<&str>, &str)] = &[
            ("not json", None, "invalid JSON"),
            ("[1,2]", None, "must be a JSON object"),
            (
                r#"{"conversations":[{"role":"user","content":"q"}],"extra":1}"#,
                Some("extra"),
                "unknown field",
            ),
            (
                r#"{"system":5,"conversations":[{"role":"user","content":"q"}]}"#,
                Some("system"),
                "string or null",
            ),
            (r#"{"system":"s"}"#, Some("conversations"), "missing"),
            (
                r#"{"conversations":[]}"#,
                Some("conversations"),
                "must not be empty",
            ),
            (
                r#"{"conversations":"hi"}"#,
                Some("conversations"),
                "must be an array",
            ),
            (
                r#"{"conversations":["hi"]}"#,
                Some("conversations[0]"),
                "must be an object",
            ),
            (
                r#"{"conversations":[{"role":"system","content":"q"}]}"#,
                Some("conversations[0].role"),
                "is not \"user\"",
            ),
            (
                r#"{"conversations":[{"content":"q"}]}"#,
                Some("conversations[0].role"),
                "missing",
            ),
            (
                r#"{"conversations":[{"role":"user","content":3}]}"#,
                Some("conversations[0].content"),
                "must be a string",
            ),
            (
                r#"{"conversations":[{"role":"user"}]}"#,
                Some("conversations[0].content"),
                "missing",
            ),
            (
                r#"{"conversations":[{"role":"assistant","content":"a"}]}"#,
                Some("conversations[0].role"),
                "expected \"user\"",
            ),
            (
                r#"{"conversations":[{"role":"user","content":"a"},{"role":"user","content":"b"}]}"#,
                Some("conversations[1].role"),
                "expected \"assistant\"",
            ),
            (
                r#"{"conversations":[{"role":"user","content":"q","name":"x"}]}"#,
                Some("conversations[0].name"),
                "unknown field",
            ),
        ];
        for (bad, field, reason) in cases {
            let text = format!("{GOOD}\n{GOOD}\n{bad}\n");
            let e = err(&text);
            assert_eq!(e.line, Some(3), "{bad}");
            assert_eq!(e.field.as_deref(), *field, "{bad}");
            assert!(e.reason.contains(reason), "{bad}: {e}");
            assert!(e.to_string().starts_with("line 3"), "{e}");
        }
    }

    #[test]
    fn file_size_limit_is_checked_first() {
        let l = DatasetLimits {
            max_file_bytes: 10,
            ..limits()
        };
        let e = parse_dataset(GOOD.as_bytes(), &l).expect_err("too big");
        assert_eq!(e.line, None);
        assert!(
            e.to_string().contains("exceeds the limit of 10 bytes"),
            "{e}"
        );
    }

    #[test]
    fn line_length_limit() {
        let l = DatasetLimits {
            max_line_bytes: 20,
            ..limits()
        };
        let e = parse_dataset(GOOD.as_bytes(), &l).expect_err("too long");
        assert_eq!(e.line, Some(1));
        assert!(e.reason.contains("line limit of 20"), "{e}");
    }

    #[test]
    fn invalid_utf8_is_rejected_with_its_line() {
        let mut bytes = format!("{GOOD}\n").into_bytes();
        bytes.extend_from_slice(b"{\"conversations\":[{\"role\":\"user\",\"content\":\"\xff\"}]}");
        let e = parse_dataset(&bytes, &limits()).expect_err("bad utf-8");
        assert_eq!(e.line, Some(2));
        assert!(e.reason.contains("UTF-8"), "{e}");
    }

    #[test]
    fn depth_bomb_is_rejected_before_parsing() {
        let bomb = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let e = err(&bomb);
        assert!(e.reason.contains("nesting depth 100000"), "{e}");
        // Brackets inside strings do not count.
        let text = r#"{"conversations":[{"role":"user","content":"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\"{{{{{{{{"}]}"#;
        assert!(parse_dataset(text.as_bytes(), &limits()).is_ok());
    }

    #[test]
    fn max_rows_stops_reading_before_later_garbage() {
        let l = DatasetLimits {
            max_rows: 2,
            ..limits()
        };
        let text = format!("{GOOD}\n{GOOD}\nthis line is garbage\n");
        let d = parse_dataset(text.as_bytes(), &l).expect("only two rows read");
        assert_eq!(d.rows.len(), 2);
    }

    #[test]
    fn empty_file_has_no_rows() {
        assert_eq!(err("").reason, "no rows");
        assert_eq!(err("\n \n").reason, "no rows");
    }

    #[test]
    fn content_hash_ignores_row_order_but_not_content() {
        let a = format!("{GOOD}\n{}", GOOD.replace("\"q\"", "\"q2\""));
        let b = format!("{}\n{GOOD}", GOOD.replace("\"q\"", "\"q2\""));
        let c = format!("{GOOD}\n{}", GOOD.replace("\"q\"", "\"q3\""));
        let h = |t: &str| {
            parse_dataset(t.as_bytes(), &limits())
                .expect("valid")
                .content_hash
        };
        assert_eq!(h(&a), h(&b));
        assert_ne!(h(&a), h(&c));
        assert_eq!(h(&a).len(), 64);
    }

    #[test]
    fn canonical_rows_sort_keys_and_drop_whitespace() {
        let spaced =
            r#"{ "conversations" : [ { "content" : "q", "role" : "user" } ], "system" : "s" }"#;
        let d = parse_dataset(spaced.as_bytes(), &limits()).expect("valid");
        assert_eq!(
            d.canonical[0],
            r#"{"conversations":[{"content":"q","role":"user"}],"system":"s"}"#
        );
    }

    #[test]
    fn overlap_counts_shared_distinct_rows() {
        let a: Vec<String> = ["x", "y", "z", "z"].iter().map(|s| s.to_string()).collect();
        let b: Vec<String> = ["z", "y", "w"].iter().map(|s| s.to_string()).collect();
        assert_eq!(row_overlap(&a, &b), 2);
        assert_eq!(row_overlap(&b, &a), 2);
        assert_eq!(row_overlap(&a, &[]), 0);
    }
}
