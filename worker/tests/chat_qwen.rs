//! Our ChatML encoding against the reference algorithm (scripts/chatml_reference.py, Python
//! `tokenizers`) on the exact Qwen2.5 tokenizer from shared/fixtures (read in place, not copied).

use std::path::PathBuf;

use protocol::dataset::Row;
use worker::chat::ChatTokenizer;

fn qwen_tokenizer() -> ChatTokenizer {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/fixtures/qwen2.5-tokenizer/tokenizer.json");
    ChatTokenizer::load(&path)
        .unwrap_or_else(|e| panic!("the Qwen2.5 tokenizer fixture is required: {e}"))
}

#[test]
fn chatml_ids_and_mask_match_the_reference_on_real_text() {
    let tokenizer = qwen_tokenizer();
    let fixture: serde_json::Value =
        serde_json::from_str(include_str!("fixtures/chatml_qwen.json")).expect("fixture is JSON");
    let cases = fixture["cases"].as_array().expect("cases");
    assert_eq!(cases.len(), 4);
    for (i, case) in cases.iter().enumerate() {
        let row: Row = serde_json::from_value(case["row"].clone()).expect("row");
        let max_seq_len = case["max_seq_len"].as_u64().expect("max_seq_len") as usize;
        let want_ids: Vec<u32> = serde_json::from_value(case["ids"].clone()).expect("ids");
        let want_mask: Vec<u8> = serde_json::from_value(case["mask"].clone()).expect("mask");
        let got = tokenizer.encode_row(&row, max_seq_len).expect("encodes");
        assert_eq!(got.ids, want_ids, "case {i}: ids");
        assert_eq!(got.mask, want_mask, "case {i}: mask");
    }
}

#[test]
fn chatml_special_tokens_have_the_qwen_ids() {
    let tokenizer = qwen_tokenizer();
    // Fixture README: `<|im_start|>user\nHello world<|im_end|>\n` → these ids.
    let ids = tokenizer
        .encode_segment("<|im_start|>user\nHello world<|im_end|>\n")
        .expect("encodes");
    assert_eq!(ids, vec![151644, 872, 198, 9707, 1879, 151645, 198]);
}

#[test]
fn assistant_prefix_is_not_in_the_loss_but_im_end_newline_is() {
    let tokenizer = qwen_tokenizer();
    let row: Row = serde_json::from_str(
        r#"{"conversations":[{"role":"user","content":"Hi"},{"role":"assistant","content":"Yo"}]}"#,
    )
    .expect("row");
    let ex = tokenizer.encode_row(&row, 4096).expect("encodes");
    // ... <|im_start|> assistant \n | Yo <|im_end|> \n
    let n = ex.ids.len();
    assert_eq!(&ex.ids[n - 2..], &[151645, 198]);
    assert_eq!(&ex.mask[n - 3..], &[1, 1, 1]);
    let prefix_end = ex
        .ids
        .iter()
        .rposition(|id| *id == 151644)
        .expect("im_start");
    assert!(ex.mask[..=prefix_end + 2].iter().all(|m| *m == 0));
}
