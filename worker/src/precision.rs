//! The precision of the frozen base model, and the one checked matmul that crosses between bf16
//! and f32.
//!
//! Burn 0.21 does not promote dtypes: an operation between a bf16 tensor and an f32 tensor reads
//! the f32 buffer as bf16 and raises no error. So the engine keeps one rule (docs/engine.md):
//! everything outside the frozen projections — the residual stream, RMSNorm, the LoRA factors and
//! their gradients, softmax, the losses — is f32. The frozen weights are stored in the device's
//! [`Precision`]; every product with them casts its input to that dtype first and its output back
//! to f32 ([`cast_to`], [`to_f32`]). [`matmul`] refuses operands of different dtypes, so a missing
//! cast stops the job with a message instead of producing garbage.

use std::str::FromStr;

use burn::tensor::{backend::Backend, DType, Tensor};
use serde::{Deserialize, Serialize};

/// How the frozen base is stored and multiplied: f32 everywhere, or bf16 weights and bf16
/// matmul inputs with f32 outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Everything in f32 (the CPU default; exact parity with the PyTorch f32 reference).
    #[default]
    F32,
    /// Frozen weights in bf16, their matmuls on bf16 inputs; everything else in f32 (the CUDA
    /// default).
    Bf16,
}

impl Precision {
    /// The dtype of the frozen weights and of the inputs of their matmuls.
    pub fn dtype(self) -> DType {
        match self {
            Precision::F32 => DType::F32,
            Precision::Bf16 => DType::BF16,
        }
    }

    /// Bytes per stored weight.
    pub fn bytes(self) -> usize {
        match self {
            Precision::F32 => 4,
            Precision::Bf16 => 2,
        }
    }
}

impl FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "f32" => Ok(Precision::F32),
            "bf16" => Ok(Precision::Bf16),
            other => Err(format!("{other:?} is not a precision (f32, bf16)")),
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
        })
    }
}

/// `lhs · rhs`, refusing operands of different dtypes (Burn would read one buffer as the other's
/// dtype).
///
/// # Panics
/// When the dtypes differ: that is a missing cast in the engine, never bad input.
pub fn matmul<B: Backend, const D: usize>(lhs: Tensor<B, D>, rhs: Tensor<B, D>) -> Tensor<B, D> {
    assert_eq!(
        lhs.dtype(),
        rhs.dtype(),
        "matmul of a {:?} tensor by a {:?} tensor: a cast is missing",
        lhs.dtype(),
        rhs.dtype()
    );
    lhs.matmul(rhs)
}

/// `x` in `dtype` (a no-op when it already is).
pub fn cast_to<B: Backend, const D: usize>(x: Tensor<B, D>, dtype: DType) -> Tensor<B, D> {
    if x.dtype() == dtype {
        x
    } else {
        x.cast(dtype)
    }
}

/// `x` in f32 (a no-op when it already is).
pub fn to_f32<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    cast_to(x, DType::F32)
}

/// `lhs · rhs` computed in `precision` (both operands cast to its dtype), returned in f32.
pub fn matmul_f32<B: Backend, const D: usize>(
    lhs: Tensor<B, D>,
    rhs: Tensor<B, D>,
    precision: Precision,
) -> Tensor<B, D> {
    let dtype = precision.dtype();
    to_f32(matmul(cast_to(lhs, dtype), cast_to(rhs, dtype)))
}
