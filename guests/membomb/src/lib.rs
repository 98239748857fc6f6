//! Misbehaves: allocates without bound.

use reprise_sdk::{Context, workflow};

#[workflow]
fn membomb(_ctx: &Context, _input: serde::de::IgnoredAny) -> Result<usize, String> {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        hoard.push(vec![1u8; 1 << 20]);
        std::hint::black_box(&hoard);
        if hoard.len() == usize::MAX {
            return Ok(hoard.len());
        }
    }
}
