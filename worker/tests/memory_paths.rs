//! The training paths that bound memory against the plain one, on the CPU:
//!
//! - the recomputing backward pass (blocks recomputed around their attention, attention
//!   gradients a query chunk at a time, the head's gradient by hand) gives the plain path's loss
//!   and gradients within 1e-5 relative, with dropout on;
//! - padding a micro-batch to its length bucket changes neither;
//! - the bf16 base (flex holds bf16 on the CPU) gives the f32 losses within bf16 tolerance, keeps
//!   the LoRA factors and their gradients in f32, and a bf16 × f32 product is refused.

use std::path::Path;

use burn::tensor::{backend::Backend, DType, Distribution, Tensor};
use worker::batch::Batch;
use worker::chat::Example;
use worker::checkpoint::{load_model_with, LoadOptions};
use worker::dropout::Dropout;
use worker::lora::Adapter;
use worker::model::{AttentionKernel, Lift, Qwen2};
use worker::train::{plain_grads, recompute_grads};
use worker::{CpuBackend as B, Precision};

fn model(dir: &Path, precision: Precision) -> Qwen2<B> {
    load_model_with::<B>(
        dir,
        &Default::default(),
        LoadOptions {
            precision,
            attention: AttentionKernel::Native,
            fuse: true,
        },
    )
    .expect("model loads")
    .model
}

fn tiny_model_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    worker::write_tiny_model(dir.path(), 3).expect("tiny model");
    dir
}

/// A fresh adapter whose B factors are random too, so every factor gets a non-zero gradient.
fn adapter(model: &Qwen2<B>) -> Adapter<B> {
    let mut adapter = Adapter::init(&model.config, 4, 8.0, 11, &Default::default());
    B::seed(&Default::default(), 5);
    for (i, p) in adapter.params.iter_mut().enumerate() {
        if i % 2 == 1 {
            *p = Tensor::random(
                p.dims(),
                Distribution::Normal(0.0, 0.05),
                &Default::default(),
            );
        }
    }
    adapter
}

/// Two rows of different lengths, prompt tokens out of the loss.
fn examples(vocab: u32) -> Vec<Example> {
    let row = |len: usize, prompt: usize, salt: u32| Example {
        ids: (0..len as u32)
            .map(|t| 3 + (t * 7 + salt) % (vocab - 3))
            .collect(),
        mask: (0..len).map(|t| u8::from(t >= prompt)).collect(),
    };
    vec![row(37, 9, 1), row(22, 5, 4)]
}

fn values(t: &Tensor<B, 2>) -> Vec<f32> {
    t.clone()
        .into_data()
        .convert::<f32>()
        .to_vec()
        .expect("f32")
}

/// Max |got − want| within `rel` × max |want|, per tensor.
fn assert_close(got: &[Tensor<B, 2>], want: &[Tensor<B, 2>], rel: f32, what: &str) {
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let (g, w) = (values(g), values(w));
        let scale = w.iter().fold(0f32, |m, v| m.max(v.abs()));
        let worst = g
            .iter()
            .zip(&w)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(scale > 0.0, "{what}: factor {i} has a zero gradient");
        assert!(
            worst <= rel * scale,
            "{what}: factor {i}: max diff {worst:e} > {rel:e} × {scale:e}"
        );
    }
}

fn assert_rel(got: f64, want: f64, rel: f64, what: &str) {
    assert!(
        (got - want).abs() <= rel * want.abs(),
        "{what}: {got} vs {want} (relative {:e})",
        (got - want).abs() / want.abs()
    );
}

#[test]
fn recomputing_backward_matches_the_plain_path_with_dropout() {
    let dir = tiny_model_dir();
    let model = model(dir.path(), Precision::F32);
    let adapter = adapter(&model);
    let examples = examples(model.config.vocab_size as u32);
    let batch = Batch::new(&examples.iter().collect::<Vec<_>>(), false);
    let dropout = Dropout::<B>::new(0.1, 42, &Default::default())
        .expect("dropout")
        .for_micro_batch(0, 0);

    let mut lifted = model.lift();
    lifted.attention = AttentionKernel::Chunked;
    let (plain_loss, plain) = plain_grads(&lifted, &adapter, &batch, Some(&dropout), 50.0);
    let (loss, grads) = recompute_grads(
        &model,
        &model.lift(),
        &adapter,
        &batch,
        Some(&dropout),
        50.0,
    );
    assert_rel(loss, plain_loss, 1e-5, "loss");
    assert_close(&grads, &plain, 1e-5, "recompute vs plain");

    // the masks matter: without dropout the gradients are different
    let (_, undropped) = recompute_grads(&model, &model.lift(), &adapter, &batch, None, 50.0);
    let differs = undropped
        .iter()
        .zip(&grads)
        .any(|(a, b)| values(a) != values(b));
    assert!(differs, "dropout did not change any gradient");
}

#[test]
fn padding_to_a_length_bucket_changes_nothing() {
    let dir = tiny_model_dir();
    let model = model(dir.path(), Precision::F32);
    let adapter = adapter(&model);
    let examples = examples(model.config.vocab_size as u32);
    let rows: Vec<&Example> = examples.iter().collect();
    let (exact, padded) = (Batch::new(&rows, false), Batch::new(&rows, true));
    assert_eq!((exact.seq, padded.seq), (37, 64));
    let dropout = Dropout::<B>::new(0.1, 1, &Default::default())
        .expect("dropout")
        .for_micro_batch(2, 1);
    let lifted = model.lift();
    let (loss, grads) = recompute_grads(&model, &lifted, &adapter, &exact, Some(&dropout), 40.0);
    let (padded_loss, padded_grads) =
        recompute_grads(&model, &lifted, &adapter, &padded, Some(&dropout), 40.0);
    assert_rel(padded_loss, loss, 1e-5, "loss");
    assert_close(&padded_grads, &grads, 1e-5, "bucketed vs exact");
}

#[test]
fn bf16_base_stays_within_bf16_tolerance_of_f32_and_keeps_lora_in_f32() {
    let dir = tiny_model_dir();
    let full = model(dir.path(), Precision::F32);
    let mixed = model(dir.path(), Precision::Bf16);
    assert_eq!(mixed.embed_tokens.dtype(), DType::BF16);
    assert_eq!(
        mixed.layers[0].self_attn.qkv_proj.weights()[0].dtype(),
        DType::BF16
    );
    assert_eq!(mixed.layers[0].input_layernorm.weight.dtype(), DType::F32);

    let adapter = adapter(&full);
    let examples = examples(full.config.vocab_size as u32);
    let batch = Batch::new(&examples.iter().collect::<Vec<_>>(), false);
    let (loss, grads) = recompute_grads(&full, &full.lift(), &adapter, &batch, None, 50.0);
    let (mixed_loss, mixed_grads) =
        recompute_grads(&mixed, &mixed.lift(), &adapter, &batch, None, 50.0);
    assert!(mixed_grads.iter().all(|g| g.dtype() == DType::F32));
    assert_rel(mixed_loss, loss, 2e-2, "bf16 loss");
    assert_close(&mixed_grads, &grads, 0.1, "bf16 vs f32 gradients");
}

#[test]
#[should_panic(expected = "a cast is missing")]
fn a_bf16_by_f32_product_is_refused() {
    let device = Default::default();
    let x = Tensor::<B, 2>::ones([2, 3], &device);
    let w = Tensor::<B, 2>::ones([3, 4], &device).cast(DType::BF16);
    let _ = worker::precision::matmul(x, w);
}
