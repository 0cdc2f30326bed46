//! The GPU code path on its CPU twin. Burn's wgpu backend, with kernel fusion and autotuning as
//! on CUDA, runs the same CubeCL kernels (tiled matmul, fused element-wise kernels, the flash
//! attention forward, select/scatter/slice-assign) on Mesa's software Vulkan (lavapipe; `.ci/run`
//! installs `mesa-vulkan-drivers`). The tiny model's eval loss and one training step's loss and
//! gradients there match the flex CPU backend.

use burn::backend::wgpu::{Wgpu, WgpuDevice};
use burn::tensor::{backend::Backend, Distribution, Tensor};
use worker::batch::Batch;
use worker::bench::memory::synthetic_examples;
use worker::checkpoint::{load_model_with, LoadOptions};
use worker::dropout::Dropout;
use worker::eval::{eval_loss, EvalBatching, EvalSet};
use worker::lora::Adapter;
use worker::model::{AttentionKernel, Lift, Qwen2};
use worker::train::recompute_grads;
use worker::{CpuBackend as C, Precision};

type G = Wgpu<f32, i32>;

fn load<B: Backend>(dir: &std::path::Path, device: &B::Device) -> Qwen2<B> {
    let options = LoadOptions {
        precision: Precision::F32,
        attention: AttentionKernel::Native,
        fuse: true,
    };
    load_model_with::<B>(dir, device, options)
        .expect("model loads")
        .model
}

fn values<B: Backend>(t: &Tensor<B, 2>) -> Vec<f32> {
    t.clone()
        .into_data()
        .convert::<f32>()
        .to_vec()
        .expect("f32")
}

#[test]
fn cubecl_kernels_match_the_cpu_on_eval_and_a_training_step() {
    let dir = tempfile::tempdir().expect("tempdir");
    worker::write_tiny_model(dir.path(), 9).expect("tiny model");
    let gpu_device = WgpuDevice::Cpu;
    let cpu = load::<C>(dir.path(), &Default::default());
    let gpu = load::<G>(dir.path(), &gpu_device);
    let vocab = cpu.config.vocab_size;

    // eval: rows of several lengths, bucketed batches as on CUDA
    let mut examples = synthetic_examples(3, 70, vocab);
    examples.extend(synthetic_examples(4, 33, vocab));
    let set = EvalSet::from_examples(examples, 0);
    let batching = EvalBatching {
        rows: 4,
        tokens: 512,
        bucket: true,
    };
    let want = eval_loss(&cpu, None, &set, batching).expect("cpu eval");
    let got = eval_loss(&gpu, None, &set, batching).expect("wgpu eval");
    assert!(
        (got - want).abs() <= 1e-5 * want.abs(),
        "eval loss: wgpu {got} vs cpu {want}"
    );

    // one training step with dropout: loss and every LoRA gradient
    let mut adapter = Adapter::<C>::init(&cpu.config, 4, 8.0, 3, &Default::default());
    C::seed(&Default::default(), 8);
    for p in adapter.params.iter_mut().skip(1).step_by(2) {
        *p = Tensor::random(
            p.dims(),
            Distribution::Normal(0.0, 0.05),
            &Default::default(),
        );
    }
    let gpu_adapter = adapter.map(|t| Tensor::<G, 2>::from_data(t.into_data(), &gpu_device));
    let rows = synthetic_examples(2, 45, vocab);
    let batch = Batch::new(&rows.iter().collect::<Vec<_>>(), true);
    let cpu_masks = Dropout::<C>::new(0.1, 5, &Default::default())
        .expect("dropout")
        .for_micro_batch(0, 1);
    let gpu_masks = Dropout::<G>::new(0.1, 5, &gpu_device)
        .expect("dropout")
        .for_micro_batch(0, 1);
    let (loss, grads) =
        recompute_grads(&cpu, &cpu.lift(), &adapter, &batch, Some(&cpu_masks), 60.0);
    let (gpu_loss, gpu_grads) = recompute_grads(
        &gpu,
        &gpu.lift(),
        &gpu_adapter,
        &batch,
        Some(&gpu_masks),
        60.0,
    );
    assert!(
        (gpu_loss - loss).abs() <= 1e-5 * loss.abs(),
        "train loss: wgpu {gpu_loss} vs cpu {loss}"
    );
    for (i, (g, w)) in gpu_grads.iter().zip(&grads).enumerate() {
        let (g, w) = (values(g), values(w));
        let scale = w.iter().fold(0f32, |m, v| m.max(v.abs()));
        let worst = g
            .iter()
            .zip(&w)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(
            worst <= 1e-4 * scale,
            "factor {i}: {worst:e} vs scale {scale:e}"
        );
    }
}
