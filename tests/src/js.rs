//! The JavaScript guests (`guests/js/<name>.js`), built into components
//! with the JS SDK of this checkout (`guest-sdk/js`, its toolchain
//! installed by `tests/run` with `npm ci`), the way `reprise build` builds
//! them. A build takes seconds, so each is kept under `guests/target/js/`
//! with the digest of everything it was built from, and rebuilt only when
//! that changes.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

use sha2::{Digest, Sha256};

use crate::root;

/// The JS guests the harness knows.
pub const JS_GUESTS: &[&str] = &["seed", "steps", "signal", "stream", "clock"];

/// The component bytes of JS guest `name`, built if needed.
pub fn js_guest(name: &str) -> Vec<u8> {
    // One build at a time: each uses a core fully for several seconds.
    static BUILDING: Mutex<()> = Mutex::new(());
    let _one = BUILDING.lock().unwrap_or_else(|e| e.into_inner());
    let root = root();
    let sdk = root.join("guest-sdk/js");
    let source = root.join(format!("guests/js/{name}.js"));
    let mut digest = Sha256::new();
    for file in [
        source.clone(),
        sdk.join("src/runtime.js"),
        sdk.join("src/build.mjs"),
        sdk.join("package-lock.json"),
        root.join("wit/workflow.wit"),
    ] {
        let bytes = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        digest.update((bytes.len() as u64).to_le_bytes());
        digest.update(&bytes);
    }
    let digest = format!("{:x}", digest.finalize());
    let out_dir = root.join("guests/target/js");
    std::fs::create_dir_all(&out_dir).unwrap();
    let wasm: PathBuf = out_dir.join(format!("{name}.wasm"));
    let stamp = out_dir.join(format!("{name}.digest"));
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(digest.as_str())
        && let Ok(bytes) = std::fs::read(&wasm)
    {
        return bytes;
    }
    assert!(
        sdk.join("node_modules").is_dir(),
        "the JS SDK's toolchain is not installed: run `npm ci` in guest-sdk/js (tests/run does)"
    );
    let out = Command::new("node")
        .arg(sdk.join("src/build.mjs"))
        .arg(&source)
        .arg(&wasm)
        .arg(root.join("wit"))
        .output()
        .expect("running node (is Node.js installed?)");
    assert!(
        out.status.success(),
        "building {}: {}",
        source.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(&stamp, &digest).unwrap();
    std::fs::read(&wasm).unwrap()
}
