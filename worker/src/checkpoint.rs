//! The one place that maps Hugging Face checkpoint names onto the model: loading
//! `model.safetensors` (or a sharded `model.safetensors.index.json`) and writing checkpoints.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use burn::tensor::{backend::Backend, Tensor, TensorData};
use safetensors::SafeTensors;
use sha2::{Digest, Sha256};

use crate::config::Qwen2Config;
use crate::error::EngineError;
use crate::model::{Attention, AttentionKernel, Block, Linear, Mlp, Projections, Qwen2, RmsNorm};
use crate::precision::Precision;
use crate::tensors::view_to_f32;

/// Every weight file of a checkpoint, read into memory, with a name → file index.
struct WeightFiles {
    files: Vec<(PathBuf, Vec<u8>)>,
    names: BTreeMap<String, usize>,
}

impl WeightFiles {
    /// Reads `model.safetensors`, or the shards listed by `model.safetensors.index.json`.
    fn open(dir: &Path) -> Result<Self, EngineError> {
        let index_path = dir.join("model.safetensors.index.json");
        let single = dir.join("model.safetensors");
        let paths: Vec<PathBuf> = if index_path.exists() {
            let text = std::fs::read_to_string(&index_path)
                .map_err(|e| EngineError::io(&index_path, e))?;
            let index: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
                EngineError::Checkpoint(format!("{}: invalid JSON: {e}", index_path.display()))
            })?;
            let map = index
                .get("weight_map")
                .and_then(|m| m.as_object())
                .ok_or_else(|| {
                    EngineError::Checkpoint(format!(
                        "{}: no \"weight_map\" object",
                        index_path.display()
                    ))
                })?;
            let mut shards = BTreeSet::new();
            for (name, file) in map {
                let file = file.as_str().ok_or_else(|| {
                    EngineError::Checkpoint(format!(
                        "{}: weight_map[{name}] is not a file name",
                        index_path.display()
                    ))
                })?;
                if file.contains('/') || file.contains('\\') || file.starts_with('.') {
                    return Err(EngineError::Checkpoint(format!(
                        "{}: weight_map[{name}] = {file:?} is not a plain file name",
                        index_path.display()
                    )));
                }
                shards.insert(file.to_string());
            }
            shards.into_iter().map(|f| dir.join(f)).collect()
        } else if single.exists() {
            vec![single]
        } else {
            return Err(EngineError::Checkpoint(format!(
                "{}: neither model.safetensors nor model.safetensors.index.json",
                dir.display()
            )));
        };
        let mut files = Vec::with_capacity(paths.len());
        let mut names = BTreeMap::new();
        for path in paths {
            let bytes = std::fs::read(&path).map_err(|e| EngineError::io(&path, e))?;
            let parsed = SafeTensors::deserialize(&bytes).map_err(|e| {
                EngineError::Checkpoint(format!("{}: not a safetensors file: {e}", path.display()))
            })?;
            for name in parsed.names() {
                if let Some(previous) = names.insert(name.to_string(), files.len()) {
                    let previous: &(PathBuf, Vec<u8>) = &files[previous];
                    return Err(EngineError::Checkpoint(format!(
                        "tensor {name} appears in both {} and {}",
                        previous.0.display(),
                        path.display()
                    )));
                }
            }
            drop(parsed);
            files.push((path, bytes));
        }
        Ok(Self { files, names })
    }

    /// The f32 values of `name`, checked against `shape`.
    fn take(
        &self,
        name: &str,
        shape: &[usize],
        used: &mut BTreeSet<String>,
    ) -> Result<Vec<f32>, EngineError> {
        let file = *self
            .names
            .get(name)
            .ok_or_else(|| EngineError::Checkpoint(format!("tensor {name} is missing")))?;
        let (path, bytes) = &self.files[file];
        let parsed = SafeTensors::deserialize(bytes)
            .map_err(|e| EngineError::Checkpoint(format!("{}: {e}", path.display())))?;
        let view = parsed.tensor(name).map_err(|e| {
            EngineError::Checkpoint(format!("tensor {name} in {}: {e}", path.display()))
        })?;
        if view.shape() != shape {
            return Err(EngineError::Checkpoint(format!(
                "tensor {name} in {} has shape {:?}, expected {:?}",
                path.display(),
                view.shape(),
                shape
            )));
        }
        let values = view_to_f32(&view)
            .map_err(|reason| EngineError::Checkpoint(format!("tensor {name}: {reason}")))?;
        used.insert(name.to_string());
        Ok(values)
    }

    /// SHA-256 over the weight files, in file-name order.
    fn digest_into(&self, hasher: &mut Sha256) {
        for (path, bytes) in &self.files {
            hasher.update(
                path.file_name()
                    .map(|n| n.as_encoded_bytes())
                    .unwrap_or_default(),
            );
            hasher.update(bytes);
        }
    }
}

/// SHA-256 (hex) of `config.json` and the weight files of `dir`, in file-name order: the model
/// part of the loss cache key, computed without loading the model.
pub fn model_id(dir: &Path) -> Result<String, EngineError> {
    digest(&dir.join("config.json"), &WeightFiles::open(dir)?)
}

fn digest(config_path: &Path, files: &WeightFiles) -> Result<String, EngineError> {
    let mut hasher = Sha256::new();
    hasher.update(std::fs::read(config_path).map_err(|e| EngineError::io(config_path, e))?);
    files.digest_into(&mut hasher);
    Ok(hex::encode(hasher.finalize()))
}

/// Tensors a checkpoint may carry that the model does not use.
fn ignorable(name: &str, config: &Qwen2Config) -> bool {
    name.ends_with(".rotary_emb.inv_freq")
        || (config.tie_word_embeddings && name == "lm_head.weight")
}

/// Builds tensors on one device while checking names and shapes.
struct Loader<'a, B: Backend> {
    files: &'a WeightFiles,
    used: BTreeSet<String>,
    device: &'a B::Device,
    precision: Precision,
    fuse: bool,
}

impl<B: Backend> Loader<'_, B> {
    /// A weight `[rows, cols]` kept in checkpoint layout, in the storage precision.
    fn matrix(
        &mut self,
        name: &str,
        rows: usize,
        cols: usize,
    ) -> Result<Tensor<B, 2>, EngineError> {
        let values = self.files.take(name, &[rows, cols], &mut self.used)?;
        Ok(self.stored(values, [rows, cols]))
    }

    /// An f32 vector (norm weights, biases).
    fn vector(&mut self, name: &str, len: usize) -> Result<Vec<f32>, EngineError> {
        self.files.take(name, &[len], &mut self.used)
    }

    fn stored<const D: usize>(&self, values: Vec<f32>, shape: [usize; D]) -> Tensor<B, D> {
        Tensor::from_data(
            TensorData::new(values, shape),
            (self.device, self.precision.dtype()),
        )
    }

    /// HF projections `prefix.{name}` (`[out, in]` each, with biases when `bias`), fused side by
    /// side into one `[in, Σ out]` layer.
    fn fused_linear(
        &mut self,
        prefix: &str,
        parts: &[(&str, usize)],
        d_in: usize,
        bias: bool,
    ) -> Result<Linear<B>, EngineError> {
        let d_out: usize = parts.iter().map(|(_, out)| out).sum();
        let mut weight = vec![0f32; d_in * d_out];
        let mut biases = Vec::with_capacity(d_out);
        let mut column = 0;
        for (name, out) in parts {
            let values = self.files.take(
                &format!("{prefix}.{name}.weight"),
                &[*out, d_in],
                &mut self.used,
            )?;
            for o in 0..*out {
                for i in 0..d_in {
                    weight[i * d_out + column + o] = values[o * d_in + i];
                }
            }
            if bias {
                biases.extend(self.vector(&format!("{prefix}.{name}.bias"), *out)?);
            }
            column += out;
        }
        Ok(Linear {
            weight: self.stored(weight, [d_in, d_out]),
            bias: bias.then(|| Tensor::from_data(TensorData::new(biases, [d_out]), self.device)),
        })
    }

    /// The projections `prefix.{name}` of one input, fused when the loader fuses.
    fn projections(
        &mut self,
        prefix: &str,
        parts: &[(&str, usize)],
        d_in: usize,
        bias: bool,
    ) -> Result<Projections<B>, EngineError> {
        if self.fuse {
            Ok(Projections::Fused {
                linear: self.fused_linear(prefix, parts, d_in, bias)?,
                widths: parts.iter().map(|(_, w)| *w).collect(),
            })
        } else {
            let layers = parts
                .iter()
                .map(|part| self.fused_linear(prefix, &[*part], d_in, bias))
                .collect::<Result<_, _>>()?;
            Ok(Projections::Separate(layers))
        }
    }

    fn norm(&mut self, name: &str, len: usize, eps: f64) -> Result<RmsNorm<B>, EngineError> {
        let values = self.vector(name, len)?;
        Ok(RmsNorm {
            weight: Tensor::from_data(TensorData::new(values, [len]), self.device),
            eps,
        })
    }
}

/// A loaded base model and the identity of its files.
pub struct LoadedCheckpoint<B: Backend> {
    /// The model.
    pub model: Qwen2<B>,
    /// SHA-256 (hex) of config.json and the weight files: the model part of the loss cache key.
    pub model_id: String,
}

/// How a loaded model is stored and run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadOptions {
    /// The dtype of the frozen weights.
    pub precision: Precision,
    /// The attention kernel of forward passes.
    pub attention: AttentionKernel,
    /// Fuse q/k/v and gate/up into one matmul each.
    pub fuse: bool,
}

impl Default for LoadOptions {
    /// f32, Burn's native attention kernel, projections apart (the CPU's defaults).
    fn default() -> Self {
        Self {
            precision: Precision::F32,
            attention: AttentionKernel::Native,
            fuse: false,
        }
    }
}

/// [`load_model_with`] in f32 with the native attention kernel.
pub fn load_model<B: Backend>(
    dir: &Path,
    device: &B::Device,
) -> Result<LoadedCheckpoint<B>, EngineError> {
    load_model_with(dir, device, LoadOptions::default())
}

/// Loads `config.json` and the safetensors weights of `dir` onto `device`: projection weights
/// and the embedding in `options.precision` (from f32, bf16 or f16 on disk), norms and biases in
/// f32; q/k/v and gate/up fused when `options.fuse`. A missing, misshapen or unexpected tensor is an error naming it.
pub fn load_model_with<B: Backend>(
    dir: &Path,
    device: &B::Device,
    options: LoadOptions,
) -> Result<LoadedCheckpoint<B>, EngineError> {
    let config_path = dir.join("config.json");
    let config = Qwen2Config::load(&config_path)?;
    let files = WeightFiles::open(dir)?;
    let model_id = digest(&config_path, &files)?;

    let mut loader = Loader::<B> {
        files: &files,
        used: BTreeSet::new(),
        device,
        precision: options.precision,
        fuse: options.fuse,
    };
    let c = &config;
    let (h, q_dim, kv, inter) = (
        c.hidden_size,
        c.head_dim() * c.num_attention_heads,
        c.kv_dim(),
        c.intermediate_size,
    );
    let embed_tokens = loader.matrix("model.embed_tokens.weight", c.vocab_size, h)?;
    let mut layers = Vec::with_capacity(c.num_hidden_layers);
    for i in 0..c.num_hidden_layers {
        let p = format!("model.layers.{i}");
        layers.push(Block {
            input_layernorm: loader.norm(
                &format!("{p}.input_layernorm.weight"),
                h,
                c.rms_norm_eps,
            )?,
            self_attn: Attention {
                qkv_proj: loader.projections(
                    &format!("{p}.self_attn"),
                    &[("q_proj", q_dim), ("k_proj", kv), ("v_proj", kv)],
                    h,
                    true,
                )?,
                o_proj: loader.fused_linear(
                    &format!("{p}.self_attn"),
                    &[("o_proj", h)],
                    q_dim,
                    false,
                )?,
                num_heads: c.num_attention_heads,
                num_kv_heads: c.num_key_value_heads,
                head_dim: c.head_dim(),
            },
            post_attention_layernorm: loader.norm(
                &format!("{p}.post_attention_layernorm.weight"),
                h,
                c.rms_norm_eps,
            )?,
            mlp: Mlp {
                gate_up_proj: loader.projections(
                    &format!("{p}.mlp"),
                    &[("gate_proj", inter), ("up_proj", inter)],
                    h,
                    false,
                )?,
                down_proj: loader.fused_linear(
                    &format!("{p}.mlp"),
                    &[("down_proj", h)],
                    inter,
                    false,
                )?,
            },
        });
    }
    let norm = loader.norm("model.norm.weight", h, c.rms_norm_eps)?;
    let lm_head = if c.tie_word_embeddings {
        None
    } else {
        Some(loader.matrix("lm_head.weight", c.vocab_size, h)?)
    };
    if let Some(extra) = files
        .names
        .keys()
        .find(|name| !loader.used.contains(*name) && !ignorable(name, &config))
    {
        return Err(EngineError::Checkpoint(format!(
            "tensor {extra} in {} is not part of a Qwen2 model with this config.json",
            files.files[files.names[extra]].0.display()
        )));
    }
    Ok(LoadedCheckpoint {
        model: Qwen2 {
            config,
            precision: options.precision,
            attention: options.attention,
            embed_tokens,
            layers,
            norm,
            lm_head,
        },
        model_id,
    })
}

/// The HF name → `(shape, values)` of every tensor of a model, for writing a checkpoint.
pub fn hf_tensors(
    config: &Qwen2Config,
    mut value_of: impl FnMut(&str, &[usize]) -> Vec<f32>,
) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let c = config;
    let (h, q_dim, kv, inter) = (
        c.hidden_size,
        c.head_dim() * c.num_attention_heads,
        c.kv_dim(),
        c.intermediate_size,
    );
    let mut specs: Vec<(String, Vec<usize>)> =
        vec![("model.embed_tokens.weight".into(), vec![c.vocab_size, h])];
    for i in 0..c.num_hidden_layers {
        let p = format!("model.layers.{i}");
        specs.push((format!("{p}.input_layernorm.weight"), vec![h]));
        specs.push((format!("{p}.post_attention_layernorm.weight"), vec![h]));
        for (name, d_in, d_out, bias) in [
            ("self_attn.q_proj", h, q_dim, true),
            ("self_attn.k_proj", h, kv, true),
            ("self_attn.v_proj", h, kv, true),
            ("self_attn.o_proj", q_dim, h, false),
            ("mlp.gate_proj", h, inter, false),
            ("mlp.up_proj", h, inter, false),
            ("mlp.down_proj", inter, h, false),
        ] {
            specs.push((format!("{p}.{name}.weight"), vec![d_out, d_in]));
            if bias {
                specs.push((format!("{p}.{name}.bias"), vec![d_out]));
            }
        }
    }
    specs.push(("model.norm.weight".into(), vec![h]));
    if !c.tie_word_embeddings {
        specs.push(("lm_head.weight".into(), vec![c.vocab_size, h]));
    }
    specs
        .into_iter()
        .map(|(name, shape)| {
            let values = value_of(&name, &shape);
            (name, shape, values)
        })
        .collect()
}

/// Writes `tensors` as one safetensors file, in f32 or bf16.
pub fn write_safetensors(
    path: &Path,
    tensors: &[(String, Vec<usize>, Vec<f32>)],
    bf16: bool,
) -> Result<(), EngineError> {
    use safetensors::tensor::{Dtype, TensorView};
    let encoded: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(name, shape, values)| {
            let bytes = if bf16 {
                crate::tensors::bf16_bytes(values)
            } else {
                crate::tensors::f32_bytes(values)
            };
            (name.clone(), shape.clone(), bytes)
        })
        .collect();
    let dtype = if bf16 { Dtype::BF16 } else { Dtype::F32 };
    let views = encoded
        .iter()
        .map(|(name, shape, bytes)| {
            TensorView::new(dtype, shape.clone(), bytes)
                .map(|view| (name.clone(), view))
                .map_err(|e| EngineError::Checkpoint(format!("tensor {name}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut metadata = HashMap::new();
    metadata.insert("format".to_string(), "pt".to_string());
    let bytes = safetensors::serialize(views, Some(metadata))
        .map_err(|e| EngineError::Checkpoint(format!("{}: {e}", path.display())))?;
    std::fs::write(path, bytes).map_err(|e| EngineError::io(path, e))
}
