//! LoRA adapters in PEFT's on-disk format: `adapter_model.safetensors` with PEFT key names
//! (`base_model.model.model.layers.N.self_attn.q_proj.lora_A.weight`, `[r, in]`; `lora_B.weight`,
//! `[out, r]`) and `adapter_config.json`, so Python PEFT loads what we train and we can start
//! from an adapter PEFT made.

use std::collections::BTreeSet;
use std::path::Path;

use burn::tensor::{backend::Backend, Tensor, TensorData};
use safetensors::SafeTensors;

use crate::checkpoint::write_safetensors;
use crate::config::Qwen2Config;
use crate::error::EngineError;
use crate::lora::{Adapter, Target};
use crate::tensors::{transpose, view_to_f32};

/// The PEFT key of one factor.
pub fn peft_key(layer: usize, target: Target, is_b: bool) -> String {
    format!(
        "base_model.model.model.layers.{layer}.{}.lora_{}.weight",
        target.module_path(),
        if is_b { "B" } else { "A" }
    )
}

/// Writes `adapter` to `dir` as `adapter_model.safetensors` (f32) + `adapter_config.json`.
pub fn save_adapter<B: Backend>(
    dir: &Path,
    adapter: &Adapter<B>,
    dropout: f64,
    base_model: &str,
) -> Result<(), EngineError> {
    std::fs::create_dir_all(dir).map_err(|e| EngineError::io(dir, e))?;
    let mut tensors = Vec::with_capacity(adapter.params.len());
    for layer in 0..adapter.layers {
        for target in Target::ALL {
            let (a, b) = adapter.pair(layer, target);
            for (tensor, is_b) in [(a, false), (b, true)] {
                let [rows, cols] = tensor.dims();
                let values = tensor_values(tensor.clone());
                // Ours: A [in, r], B [r, out]; PEFT: A [r, in], B [out, r].
                tensors.push((
                    peft_key(layer, target, is_b),
                    vec![cols, rows],
                    transpose(&values, rows, cols),
                ));
            }
        }
    }
    write_safetensors(&dir.join("adapter_model.safetensors"), &tensors, false)?;
    let config = serde_json::json!({
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base_model,
        "r": adapter.rank,
        "lora_alpha": adapter.alpha,
        "lora_dropout": dropout,
        "target_modules": Target::ALL.iter().map(|t| t.module_name()).collect::<Vec<_>>(),
        "bias": "none",
        "fan_in_fan_out": false,
        "inference_mode": true,
        "init_lora_weights": true,
        "use_rslora": false,
        "use_dora": false,
        "modules_to_save": null,
        "layers_to_transform": null,
        "rank_pattern": {},
        "alpha_pattern": {},
    });
    let path = dir.join("adapter_config.json");
    let text = serde_json::to_string_pretty(&config).map_err(|e| EngineError::io(&path, e))?;
    std::fs::write(&path, text).map_err(|e| EngineError::io(&path, e))
}

/// Reads a PEFT LoRA adapter for `config` from `dir`. Every projection of every layer must be
/// present with the right shape; rank-/alpha-patterns, DoRA, rsLoRA and biases are refused.
pub fn load_adapter<B: Backend>(
    dir: &Path,
    config: &Qwen2Config,
    device: &B::Device,
) -> Result<Adapter<B>, EngineError> {
    let config_path = dir.join("adapter_config.json");
    let text =
        std::fs::read_to_string(&config_path).map_err(|e| EngineError::io(&config_path, e))?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        EngineError::Checkpoint(format!("{}: invalid JSON: {e}", config_path.display()))
    })?;
    let bad =
        |reason: String| EngineError::Checkpoint(format!("{}: {reason}", config_path.display()));
    if json.get("peft_type").and_then(|v| v.as_str()) != Some("LORA") {
        return Err(bad("peft_type must be \"LORA\"".into()));
    }
    let rank = json
        .get("r")
        .and_then(|v| v.as_u64())
        .filter(|r| *r > 0)
        .ok_or_else(|| bad("r must be a positive integer".into()))? as usize;
    let alpha = json
        .get("lora_alpha")
        .and_then(|v| v.as_f64())
        .ok_or_else(|| bad("lora_alpha must be a number".into()))?;
    for flag in ["use_rslora", "use_dora"] {
        if json.get(flag).and_then(|v| v.as_bool()).unwrap_or(false) {
            return Err(bad(format!("{flag} is not supported")));
        }
    }
    for pattern in ["rank_pattern", "alpha_pattern"] {
        if json
            .get(pattern)
            .and_then(|v| v.as_object())
            .is_some_and(|m| !m.is_empty())
        {
            return Err(bad(format!("{pattern} is not supported")));
        }
    }
    if json
        .get("bias")
        .and_then(|v| v.as_str())
        .is_some_and(|b| b != "none")
    {
        return Err(bad("only bias = \"none\" is supported".into()));
    }

    let weights_path = dir.join("adapter_model.safetensors");
    let bytes = std::fs::read(&weights_path).map_err(|e| EngineError::io(&weights_path, e))?;
    let file = SafeTensors::deserialize(&bytes)
        .map_err(|e| EngineError::Checkpoint(format!("{}: {e}", weights_path.display())))?;
    let mut used = BTreeSet::new();
    let mut params = Vec::with_capacity(config.num_hidden_layers * Target::ALL.len() * 2);
    for layer in 0..config.num_hidden_layers {
        for target in Target::ALL {
            let (d_in, d_out) = target.dims(config);
            for (is_b, peft_shape) in [(false, [rank, d_in]), (true, [d_out, rank])] {
                let key = peft_key(layer, target, is_b);
                let view = file.tensor(&key).map_err(|_| {
                    EngineError::Checkpoint(format!(
                        "{}: tensor {key} is missing",
                        weights_path.display()
                    ))
                })?;
                if view.shape() != peft_shape {
                    return Err(EngineError::Checkpoint(format!(
                        "{}: tensor {key} has shape {:?}, expected {:?}",
                        weights_path.display(),
                        view.shape(),
                        peft_shape
                    )));
                }
                let values = view_to_f32(&view).map_err(|reason| {
                    EngineError::Checkpoint(format!(
                        "{}: tensor {key}: {reason}",
                        weights_path.display()
                    ))
                })?;
                let [rows, cols] = peft_shape;
                let ours = transpose(&values, rows, cols);
                params.push(Tensor::from_data(
                    TensorData::new(ours, [cols, rows]),
                    device,
                ));
                used.insert(key);
            }
        }
    }
    if let Some(extra) = file.names().into_iter().find(|n| !used.contains(*n)) {
        return Err(EngineError::Checkpoint(format!(
            "{}: tensor {extra} does not belong to a LoRA adapter for this model",
            weights_path.display()
        )));
    }
    Ok(Adapter {
        rank,
        alpha,
        layers: config.num_hidden_layers,
        params,
    })
}

/// The values of a tensor on the host, as f32.
pub fn tensor_values<B: Backend, const D: usize>(tensor: Tensor<B, D>) -> Vec<f32> {
    tensor
        .into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .unwrap_or_default()
}
