//! `worker tiny-model`: a small random Qwen2 checkpoint and a small byte-level BPE tokenizer with
//! the ChatML special tokens, trained in code, for tests and the devnet.

use std::path::Path;

use rand::{rngs::StdRng, Rng, SeedableRng};
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, TokenizerBuilder};

use crate::checkpoint::{hf_tensors, write_safetensors};
use crate::config::Qwen2Config;
use crate::error::EngineError;

/// The special tokens of the tiny tokenizer, ids 0, 1, 2 (as in Qwen: endoftext, im_start, im_end).
pub const SPECIAL_TOKENS: [&str; 3] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];

/// Target vocabulary size of the tiny tokenizer.
pub const TINY_VOCAB: usize = 640;

/// The architecture of the tiny model for a vocabulary size.
pub fn tiny_config(vocab_size: usize) -> Qwen2Config {
    Qwen2Config {
        vocab_size,
        hidden_size: 64,
        intermediate_size: 128,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        num_key_value_heads: 2,
        rope_theta: 10_000.0,
        rms_norm_eps: 1e-6,
        tie_word_embeddings: true,
        max_position_embeddings: 4096,
        hidden_act: "silu".into(),
        model_type: "qwen2".into(),
        rope_parameters: None,
        rope_scaling: None,
    }
}

/// Text the tiny tokenizer is trained on: common English, the task words of the default eval
/// set, digits and ChatML scaffolding.
fn corpus() -> Vec<String> {
    const WORDS: &str = "the of and to a in is it you that he was for on are as with his they I at be \
        this have from or one had by word but not what all were we when your can said there use an \
        each which she do how their if will up other about out many then them these so some her would \
        make like him into time has look two more write go see number no way could people my than first \
        water been call who oil its now find long down day did get come made may part answer question \
        What is plus minus times multiplied divided by remainder when sorted sort list numbers ascending \
        descending order reverse word letters letter vowels count how many binary decimal convert \
        kilometers meters grams kilograms hours minutes seconds days after before Monday Tuesday \
        Wednesday Thursday Friday Saturday Sunday larger smaller greater less than equal compare \
        which bigger result The answer Answer: You are a helpful assistant careful calculator \
        solve compute please give only tell me red blue green yellow purple orange colour color \
        animal cat dog horse bird fish cook bake boil pan oven salt sugar flour bread soup garden \
        flower tree river mountain sea sky sun moon star poem song story happy quiet gentle bright";
    let mut lines: Vec<String> = WORDS
        .split_whitespace()
        .map(|w| format!("{w} {w}. "))
        .collect();
    lines.push(WORDS.to_string());
    for n in 0..400 {
        lines.push(format!(
            "{n} + {} = {} ; {n} * 3 = {} ; {n:b}",
            n % 17,
            n + n % 17,
            n * 3
        ));
    }
    for name in ["system", "user", "assistant"] {
        lines.push(format!("<|im_start|>{name}\nhello<|im_end|>\n"));
    }
    lines.push("?!.,:;()[]-'\"\n".to_string());
    lines
}

/// Trains the tiny byte-level BPE tokenizer and returns its `tokenizer.json` text.
pub fn tiny_tokenizer_json() -> Result<String, EngineError> {
    let special: Vec<AddedToken> = SPECIAL_TOKENS
        .iter()
        .map(|t| AddedToken::from(t.to_string(), true))
        .collect();
    let mut trainer = BpeTrainerBuilder::new()
        .vocab_size(TINY_VOCAB)
        .min_frequency(1)
        .show_progress(false)
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .special_tokens(special)
        .build();
    let mut tokenizer = TokenizerBuilder::new()
        .with_model(BPE::default())
        .with_normalizer(None::<tokenizers::normalizers::Sequence>)
        .with_pre_tokenizer(Some(ByteLevel::new(false, true, true)))
        .with_post_processor(None::<tokenizers::processors::sequence::Sequence>)
        .with_decoder(Some(ByteLevelDecoder::default()))
        .build()
        .map_err(|e| EngineError::Tokenizer(format!("cannot build the tiny tokenizer: {e}")))?;
    tokenizer
        .train(&mut trainer, corpus().into_iter())
        .map_err(|e| EngineError::Tokenizer(format!("cannot train the tiny tokenizer: {e}")))?;
    let tokenizer: tokenizers::Tokenizer = tokenizer.into();
    tokenizer
        .to_string(false)
        .map_err(|e| EngineError::Tokenizer(format!("cannot serialise the tiny tokenizer: {e}")))
}

/// Writes `config.json`, `model.safetensors` (f32, normal(0, 0.02) weights, unit norms, zero
/// biases, drawn from `seed`) and `tokenizer.json` to `out`.
pub fn write_tiny_model(out: &Path, seed: u64) -> Result<(), EngineError> {
    std::fs::create_dir_all(out).map_err(|e| EngineError::io(out, e))?;
    let tokenizer_json = tiny_tokenizer_json()?;
    let tokenizer = tokenizers::Tokenizer::from_bytes(tokenizer_json.as_bytes())
        .map_err(|e| EngineError::Tokenizer(e.to_string()))?;
    let vocab = tokenizer.get_vocab_size(true).div_ceil(8) * 8;
    let config = tiny_config(vocab);
    let mut rng = StdRng::seed_from_u64(seed);
    let tensors = hf_tensors(&config, |name, shape| {
        let n: usize = shape.iter().product();
        if name.ends_with("norm.weight") {
            vec![1.0; n]
        } else if name.ends_with(".bias") {
            vec![0.0; n]
        } else {
            (0..n).map(|_| 0.02 * standard_normal(&mut rng)).collect()
        }
    });
    write_safetensors(&out.join("model.safetensors"), &tensors, false)?;
    let config_path = out.join("config.json");
    let text = serde_json::to_string_pretty(&config.to_hf_json())
        .map_err(|e| EngineError::io(&config_path, e))?;
    std::fs::write(&config_path, text).map_err(|e| EngineError::io(&config_path, e))?;
    let tokenizer_path = out.join("tokenizer.json");
    std::fs::write(&tokenizer_path, tokenizer_json).map_err(|e| EngineError::io(&tokenizer_path, e))
}

/// Writes a model of architecture `config` with random weights to `out`: `config.json`,
/// `model.safetensors` (uniform weights of standard deviation 0.02, unit norms, zero biases,
/// drawn from `seed`; bf16 when `bf16`) and the tiny tokenizer, for benchmarks of real shapes
/// (its ids cover only the first few hundred rows of the vocabulary; the shapes are what
/// count).
pub fn write_random_model(
    out: &Path,
    config: &Qwen2Config,
    seed: u64,
    bf16: bool,
) -> Result<(), EngineError> {
    std::fs::create_dir_all(out).map_err(|e| EngineError::io(out, e))?;
    let mut rng = StdRng::seed_from_u64(seed);
    // U(−a, a) has standard deviation a/√3
    let bound = 0.02 * 3f32.sqrt();
    let tensors = hf_tensors(config, |name, shape| {
        let n: usize = shape.iter().product();
        if name.ends_with("norm.weight") {
            vec![1.0; n]
        } else if name.ends_with(".bias") {
            vec![0.0; n]
        } else {
            (0..n).map(|_| rng.random_range(-bound..bound)).collect()
        }
    });
    write_safetensors(&out.join("model.safetensors"), &tensors, bf16)?;
    drop(tensors);
    let config_path = out.join("config.json");
    let text = serde_json::to_string_pretty(&config.to_hf_json())
        .map_err(|e| EngineError::io(&config_path, e))?;
    std::fs::write(&config_path, text).map_err(|e| EngineError::io(&config_path, e))?;
    let tokenizer_path = out.join("tokenizer.json");
    std::fs::write(&tokenizer_path, tiny_tokenizer_json()?)
        .map_err(|e| EngineError::io(&tokenizer_path, e))
}

/// One draw of N(0, 1) by the Box–Muller transform.
pub fn standard_normal(rng: &mut StdRng) -> f32 {
    let u1: f64 = rng.random_range(f64::EPSILON..1.0);
    let u2: f64 = rng.random();
    ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::ChatTokenizer;

    #[test]
    fn tiny_tokenizer_has_chatml_tokens_and_round_trips_text() {
        let json = tiny_tokenizer_json().expect("trains");
        let tokenizer = tokenizers::Tokenizer::from_bytes(json.as_bytes()).expect("loads");
        assert_eq!(tokenizer.token_to_id("<|im_start|>"), Some(1));
        assert_eq!(tokenizer.token_to_id("<|im_end|>"), Some(2));
        let chat = ChatTokenizer::new(tokenizer.clone()).expect("has ChatML tokens");
        let ids = chat
            .encode_segment("<|im_start|>user\nWhat is 12 plus 30?<|im_end|>\n")
            .expect("encodes");
        assert_eq!(ids[0], 1);
        assert!(ids.contains(&2));
        let text = "Größe 東京 🙂 and plain words";
        let encoded = tokenizer.encode(text, false).expect("encodes");
        assert_eq!(
            tokenizer.decode(encoded.get_ids(), false).expect("decodes"),
            text
        );
    }

    #[test]
    fn tiny_model_is_deterministic_in_its_seed() {
        let a = tempfile::tempdir().expect("tempdir");
        let b = tempfile::tempdir().expect("tempdir");
        write_tiny_model(a.path(), 3).expect("writes");
        write_tiny_model(b.path(), 3).expect("writes");
        for file in ["model.safetensors", "config.json", "tokenizer.json"] {
            let x = std::fs::read(a.path().join(file)).expect("read");
            let y = std::fs::read(b.path().join(file)).expect("read");
            assert!(x == y, "{file} differs between two runs with one seed");
        }
    }
}
