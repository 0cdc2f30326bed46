//! Miner and evaluation datasets: the JSONL row format, validation with limits, canonical rows and
//! the dataset content hash (DESIGN.md §4).

use serde::{Deserialize, Serialize};

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
