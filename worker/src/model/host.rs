//! The CPU backend's f32 buffers, read in place, for the engine's host kernels: on the CPU a
//! chain of small tensor operations (a norm, RoPE, SiLU, a log-softmax) costs an allocation and
//! a pass over memory each, so the eval and training forward passes run such chains as one loop
//! over the buffer instead (docs/engine.md, "CPU kernels"). Other backends, and the autodiff
//! backend, keep Burn's operations.

use std::any::{Any, TypeId};

use burn::backend::flex::FlexTensor;
use burn::tensor::{backend::Backend, DType, Tensor, TensorData};

use crate::backend::CpuBackend;

/// Whether tensors of `B` live in host memory the host kernels can read: the CPU backend, not
/// under autodiff.
pub fn is_host<B: Backend>() -> bool {
    TypeId::of::<B>() == TypeId::of::<CpuBackend>()
}

/// A contiguous f32 tensor of the CPU backend.
pub struct HostTensor(FlexTensor);

impl HostTensor {
    /// The values, row-major.
    pub fn values(&self) -> &[f32] {
        self.0
            .as_slice::<f32>()
            .unwrap_or_else(|| unreachable!("host tensors are contiguous f32"))
    }
}

/// The values of `t` when `B` is the CPU backend and `t` is f32 (without a copy when `t` is
/// contiguous); `None` otherwise.
pub fn host<B: Backend, const D: usize>(t: &Tensor<B, D>) -> Option<HostTensor> {
    if !is_host::<B>() || t.dtype() != DType::F32 {
        return None;
    }
    let primitive: Box<dyn Any> = Box::new(t.clone().into_primitive().tensor());
    let flex = *primitive.downcast::<FlexTensor>().ok()?;
    if flex.as_slice::<f32>().is_some() {
        Some(HostTensor(flex))
    } else {
        Some(HostTensor(flex.to_contiguous()))
    }
}

/// A tensor of `shape` holding `values` (row-major), on `device`.
pub fn tensor<B: Backend, const D: usize>(
    values: Vec<f32>,
    shape: [usize; D],
    device: &B::Device,
) -> Tensor<B, D> {
    Tensor::from_data(TensorData::new(values, shape), device)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Autodiff;

    #[test]
    fn only_the_cpu_backend_without_autodiff_is_read_in_place() {
        let device = Default::default();
        let t = tensor::<CpuBackend, 2>(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [2, 3], &device);
        let values = host(&t).expect("cpu tensor");
        assert_eq!(values.values(), &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        // a transposed view is copied into row-major order
        let transposed = host(&t.clone().transpose()).expect("cpu tensor");
        assert_eq!(transposed.values(), &[1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
        let lifted = Tensor::<Autodiff<CpuBackend>, 2>::from_inner(t.clone());
        assert!(host(&lifted).is_none());
        assert!(!is_host::<Autodiff<CpuBackend>>());
        assert!(host(&crate::precision::cast_to(t, DType::BF16)).is_none());
    }
}
