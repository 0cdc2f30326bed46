//! Rows → ChatML token ids and the assistant-only loss mask (docs/training.md).
//!
//! Each segment is encoded on its own, without special-token insertion, and the pieces are
//! concatenated: system `<|im_start|>system\n{c}<|im_end|>\n`; user
//! `<|im_start|>user\n{c}<|im_end|>\n<|im_start|>assistant\n`; assistant `{c}<|im_end|>\n`.
//! Contents are trimmed; only assistant segments (with their `<|im_end|>\n`) are in the loss; a
//! trailing unpaired message is dropped; the result is right-truncated to `max_seq_len`.

use std::path::Path;

use protocol::dataset::{Role, Row};
use tokenizers::Tokenizer;

use crate::error::EngineError;

/// The ChatML start-of-message token.
pub const IM_START: &str = "<|im_start|>";
/// The ChatML end-of-message token.
pub const IM_END: &str = "<|im_end|>";

/// One tokenised row: ids and, per position, whether that token is a training target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    /// Token ids.
    pub ids: Vec<u32>,
    /// 1 where the token is supervised (assistant text), 0 elsewhere.
    pub mask: Vec<u8>,
}

impl Example {
    /// Supervised tokens that actually enter the loss: a target at position t is predicted from
    /// position t−1, so position 0 never counts.
    pub fn supervised(&self) -> usize {
        self.mask.iter().skip(1).filter(|m| **m == 1).count()
    }

    /// Sequence length.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether the row produced no tokens.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// A `tokenizer.json` that has the ChatML tokens.
#[derive(Clone)]
pub struct ChatTokenizer {
    tokenizer: Tokenizer,
}

impl std::fmt::Debug for ChatTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTokenizer")
            .field("vocab", &self.tokenizer.get_vocab_size(true))
            .finish()
    }
}

impl ChatTokenizer {
    /// Reads `tokenizer.json` and checks that `<|im_start|>` and `<|im_end|>` are special tokens.
    pub fn load(path: &Path) -> Result<Self, EngineError> {
        let bytes = std::fs::read(path).map_err(|e| EngineError::io(path, e))?;
        let tokenizer = Tokenizer::from_bytes(&bytes)
            .map_err(|e| EngineError::Tokenizer(format!("{}: {e}", path.display())))?;
        Self::new(tokenizer).map_err(|e| match e {
            EngineError::Tokenizer(reason) => {
                EngineError::Tokenizer(format!("{}: {reason}", path.display()))
            }
            other => other,
        })
    }

    /// Wraps a tokenizer after checking its ChatML tokens.
    pub fn new(tokenizer: Tokenizer) -> Result<Self, EngineError> {
        for token in [IM_START, IM_END] {
            let special = tokenizer
                .get_added_tokens_decoder()
                .values()
                .any(|added| added.content == token && added.special);
            if !special {
                return Err(EngineError::Tokenizer(format!(
                    "the ChatML token {token} is not a special token of this tokenizer"
                )));
            }
        }
        Ok(Self { tokenizer })
    }

    /// Ids of one segment, encoded without special-token insertion.
    pub fn encode_segment(&self, text: &str) -> Result<Vec<u32>, EngineError> {
        self.tokenizer
            .encode(text, false)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| EngineError::Tokenizer(format!("cannot encode text: {e}")))
    }

    /// The ids and loss mask of a row, truncated to `max_seq_len`.
    pub fn encode_row(&self, row: &Row, max_seq_len: usize) -> Result<Example, EngineError> {
        let mut example = Example {
            ids: Vec::new(),
            mask: Vec::new(),
        };
        let push = |example: &mut Example, ids: Vec<u32>, supervised: bool| {
            example
                .mask
                .extend(std::iter::repeat_n(u8::from(supervised), ids.len()));
            example.ids.extend(ids);
        };
        if let Some(system) = row
            .system
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            let ids = self.encode_segment(&format!("{IM_START}system\n{system}{IM_END}\n"))?;
            push(&mut example, ids, false);
        }
        for (index, pair) in row.conversations.chunks(2).enumerate() {
            let [user, assistant] = pair else {
                break; // a trailing unpaired message is dropped
            };
            if user.role != Role::User || assistant.role != Role::Assistant {
                return Err(EngineError::Data(format!(
                    "conversations[{}..{}]: expected a user message then an assistant message",
                    2 * index,
                    2 * index + 1
                )));
            }
            let ids = self.encode_segment(&format!(
                "{IM_START}user\n{}{IM_END}\n{IM_START}assistant\n",
                user.content.trim()
            ))?;
            push(&mut example, ids, false);
            let ids = self.encode_segment(&format!("{}{IM_END}\n", assistant.content.trim()))?;
            push(&mut example, ids, true);
            if example.ids.len() >= max_seq_len {
                break;
            }
        }
        example.ids.truncate(max_seq_len);
        example.mask.truncate(max_seq_len);
        Ok(example)
    }
}
