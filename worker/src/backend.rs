//! The CPU backend of the engine, in a module of its own so that any module (and its tests) can
//! name it without importing the engine.

use burn::backend::Flex;

/// The CPU backend: Burn's flex (f32 by default; it also holds bf16, for testing the mixed path).
pub type CpuBackend = Flex<f32, i32>;
