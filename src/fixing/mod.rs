//! The local fixer's parts beside [`crate::fixer`] (feature `cli`).

pub mod repro;
