//! Misbehaves: loops forever without calling the host.

use reprise_sdk::{Context, workflow};

#[workflow]
fn spin(_ctx: &Context, _input: serde::de::IgnoredAny) -> Result<u64, String> {
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
        if n == 0 {
            return Ok(n);
        }
    }
}
