//! `reprise build workflow.js -o workflow.wasm`: a JavaScript (or
//! TypeScript) generator workflow built into a component of the same world
//! as the Rust guests.
//!
//! The work is done by the JS SDK's build script (`guest-sdk/js`: esbuild,
//! then ComponentizeJS), driven with Node. This binary carries the SDK's
//! files, lockfile included; on first use they are written to a cache
//! directory named after their digest and `npm ci` installs the exact
//! locked toolchain there, so later builds are offline and every build of
//! one release uses the same toolchain. `--toolchain` (or
//! `REPRISE_JS_TOOLCHAIN`) points at an SDK directory already installed
//! instead, such as `guest-sdk/js` of a checkout.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest as _, Sha256};
use thiserror::Error;

/// The JS SDK as the toolchain directory holds it (`wit/` is the world the
/// SDK builds against, the one this binary's host serves).
const TOOLCHAIN: &[(&str, &str)] = &[
    (
        "package.json",
        include_str!("../../guest-sdk/js/package.json"),
    ),
    (
        "package-lock.json",
        include_str!("../../guest-sdk/js/package-lock.json"),
    ),
    (
        "src/runtime.js",
        include_str!("../../guest-sdk/js/src/runtime.js"),
    ),
    (
        "src/build.mjs",
        include_str!("../../guest-sdk/js/src/build.mjs"),
    ),
    ("wit/workflow.wit", include_str!("../../wit/workflow.wit")),
];

/// Written last by an install: a directory without it is not used.
const INSTALLED: &str = ".reprise-installed";

/// Why a build failed.
#[derive(Debug, Error)]
pub enum BuildError {
    /// The workflow's source is at fault (syntax error, no `workflow`
    /// export, a top level that throws): the message names file and line.
    #[error("{0}")]
    Workflow(String),
    /// Node or npm is missing or too old.
    #[error("{0}")]
    Node(String),
    /// The toolchain failed (install, or an internal error of the build).
    #[error("{0}")]
    Toolchain(String),
}

/// Builds `input` into the component `output`.
pub fn build(input: &Path, output: &Path, toolchain: Option<&Path>) -> Result<(), BuildError> {
    if !input.is_file() {
        return Err(BuildError::Workflow(format!(
            "{}: no such file",
            input.display()
        )));
    }
    check_node()?;
    let dir = match toolchain {
        Some(dir) => {
            if !dir.join("node_modules").is_dir() {
                return Err(BuildError::Toolchain(format!(
                    "the toolchain {} is not installed: run `npm ci` there",
                    dir.display()
                )));
            }
            dir.to_path_buf()
        }
        None => install()?,
    };
    let wit = match toolchain {
        // An SDK checkout builds against the world next to it.
        Some(dir) if !dir.join("wit").is_dir() => dir.join("../../wit"),
        _ => dir.join("wit"),
    };
    let out = Command::new("node")
        .arg(dir.join("src/build.mjs"))
        .arg(absolute(input)?)
        .arg(absolute(output)?)
        .arg(&wit)
        .output()
        .map_err(|e| BuildError::Node(format!("running node: {e}")))?;
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    match out.status.code() {
        Some(0) => Ok(()),
        // build.mjs: the workflow is at fault (EX_DATAERR).
        Some(65) => Err(BuildError::Workflow(stderr)),
        _ => Err(BuildError::Toolchain(format!(
            "the JavaScript build failed ({}): {stderr}",
            out.status
        ))),
    }
}

fn absolute(path: &Path) -> Result<PathBuf, BuildError> {
    std::path::absolute(path).map_err(|e| BuildError::Workflow(format!("{}: {e}", path.display())))
}

/// Node 18 or later: what esbuild and ComponentizeJS need.
fn check_node() -> Result<(), BuildError> {
    let missing = |why: String| {
        BuildError::Node(format!(
            "`reprise build` needs Node.js 18 or later and npm ({why}); \
             install them (e.g. `apt-get install nodejs npm`) and try again"
        ))
    };
    let out = Command::new("node")
        .arg("--version")
        .output()
        .map_err(|e| missing(format!("`node` could not be run: {e}")))?;
    let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let major: Option<u32> = version
        .strip_prefix('v')
        .and_then(|v| v.split('.').next())
        .and_then(|m| m.parse().ok());
    match major {
        Some(m) if m >= 18 => Ok(()),
        _ => Err(missing(format!("found node {version:?}"))),
    }
}

/// The cache directory of this binary's toolchain, installed on first use.
fn install() -> Result<PathBuf, BuildError> {
    let mut digest = Sha256::new();
    for (path, text) in TOOLCHAIN {
        digest.update(path.as_bytes());
        digest.update([0]);
        digest.update(text.as_bytes());
        digest.update([0]);
    }
    let tag = hex::encode(&digest.finalize()[..8]);
    let base = match std::env::var_os("REPRISE_CACHE_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => dirs::cache_dir()
            .ok_or_else(|| {
                BuildError::Toolchain(
                    "no cache directory (set REPRISE_CACHE_DIR or HOME)".to_string(),
                )
            })?
            .join("reprise"),
    };
    let dir = base.join(format!("js-{tag}"));
    if dir.join(INSTALLED).is_file() {
        return Ok(dir);
    }
    let io = |what: &str, e: std::io::Error| BuildError::Toolchain(format!("{what}: {e}"));
    // Installed into a directory of its own, then renamed into place: a
    // build interrupted mid-install, or two installing at once, never
    // leave a half-installed toolchain where a build would use it.
    let tmp = base.join(format!("js-{tag}.tmp-{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    for (path, text) in TOOLCHAIN {
        let file = tmp.join(path);
        fs::create_dir_all(file.parent().expect("toolchain files are in a directory"))
            .map_err(|e| io(&format!("creating {}", tmp.display()), e))?;
        fs::write(&file, text).map_err(|e| io(&format!("writing {}", file.display()), e))?;
    }
    eprintln!(
        "installing the JavaScript toolchain into {} (once per release)",
        dir.display()
    );
    let out = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--ignore-scripts"])
        .current_dir(&tmp)
        .output()
        .map_err(|e| {
            BuildError::Node(format!(
                "`reprise build` needs npm to install its toolchain: `npm` could not be run: {e}"
            ))
        })?;
    if !out.status.success() {
        let _ = fs::remove_dir_all(&tmp);
        return Err(BuildError::Toolchain(format!(
            "installing the JavaScript toolchain (`npm ci` from the SDK's lockfile) failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    fs::write(tmp.join(INSTALLED), "").map_err(|e| io("marking the toolchain installed", e))?;
    if let Err(e) = fs::rename(&tmp, &dir) {
        let _ = fs::remove_dir_all(&tmp);
        // Another build installed it first: use theirs.
        if !dir.join(INSTALLED).is_file() {
            return Err(io(&format!("moving the toolchain to {}", dir.display()), e));
        }
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file the SDK's build needs is carried, and nothing in the SDK
    /// directory is forgotten (a new source file must be added here).
    #[test]
    fn every_sdk_file_is_carried() {
        let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest-sdk/js/src");
        let mut on_disk: Vec<String> = fs::read_dir(&sdk)
            .unwrap()
            .map(|e| format!("src/{}", e.unwrap().file_name().to_string_lossy()))
            .collect();
        on_disk.sort();
        let mut carried: Vec<String> = TOOLCHAIN
            .iter()
            .map(|(p, _)| p.to_string())
            .filter(|p| p.starts_with("src/"))
            .collect();
        carried.sort();
        assert_eq!(on_disk, carried);
    }
}
