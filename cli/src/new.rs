//! `reprise new`: a ready workflow crate (a tool call, native tests, a
//! README), with a copy of the SDK this binary was built with under
//! `vendor/`, so it builds offline from crates.io's dependencies alone and
//! targets the interface this release's host serves.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use thiserror::Error;

/// The SDK, as `vendor/` holds it: `vendor/reprise-sdk` is `guest-sdk/`
/// and `vendor/wit` is `wit/`, the layout its `generate!` path expects.
/// `every_sdk_file_is_vendored` keeps this list whole.
const SDK: &[(&str, &str)] = &[
    (
        "reprise-sdk/Cargo.toml",
        include_str!("../../guest-sdk/Cargo.toml"),
    ),
    (
        "reprise-sdk/src/lib.rs",
        include_str!("../../guest-sdk/src/lib.rs"),
    ),
    (
        "reprise-sdk/src/concurrent.rs",
        include_str!("../../guest-sdk/src/concurrent.rs"),
    ),
    (
        "reprise-sdk/src/error.rs",
        include_str!("../../guest-sdk/src/error.rs"),
    ),
    (
        "reprise-sdk/src/sys.rs",
        include_str!("../../guest-sdk/src/sys.rs"),
    ),
    (
        "reprise-sdk/src/tool.rs",
        include_str!("../../guest-sdk/src/tool.rs"),
    ),
    (
        "reprise-sdk/src/testing.rs",
        include_str!("../../guest-sdk/src/testing.rs"),
    ),
    (
        "reprise-sdk/src/testing/journal.rs",
        include_str!("../../guest-sdk/src/testing/journal.rs"),
    ),
    (
        "reprise-sdk/src/testing/world.rs",
        include_str!("../../guest-sdk/src/testing/world.rs"),
    ),
    (
        "reprise-sdk/macros/Cargo.toml",
        include_str!("../../guest-sdk/macros/Cargo.toml"),
    ),
    (
        "reprise-sdk/macros/src/lib.rs",
        include_str!("../../guest-sdk/macros/src/lib.rs"),
    ),
    ("wit/workflow.wit", include_str!("../../wit/workflow.wit")),
];

/// The crate's own files; `{{name}}` and `{{crate}}` are filled in.
const TEMPLATE: &[(&str, &str)] = &[
    ("Cargo.toml", include_str!("new/Cargo.toml.tmpl")),
    ("src/lib.rs", include_str!("new/lib.rs.tmpl")),
    ("README.md", include_str!("new/README.md.tmpl")),
    (".gitignore", include_str!("new/gitignore.tmpl")),
];

/// What `vendor/README.md` says (the SDK's crate docs include it in its own
/// doc tests, so it must exist).
const VENDOR_README: &str = "# Vendored Reprise SDK\n\n\
    Written by `reprise new` from the `reprise` release that created this crate.\n\
    Replace it with the copy of a newer release to use that release's SDK.\n";

#[derive(Debug, Error)]
pub enum NewError {
    #[error(
        "invalid workflow name {0:?}: use a letter, then letters, digits, `-` or `_` (at most 64)"
    )]
    InvalidName(String),
    #[error("invalid workflow name {0:?}: it is reserved by Rust or Cargo")]
    ReservedName(String),
    #[error("{0} already exists: nothing was written (choose another name or directory)")]
    Exists(PathBuf),
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Names Cargo refuses or that would shadow what the crate uses.
const RESERVED: &[&str] = &[
    "test",
    "std",
    "core",
    "alloc",
    "proc_macro",
    "proc-macro",
    "self",
    "super",
    "crate",
    "build",
    "deps",
    "examples",
    "incremental",
    "reprise-sdk",
    "reprise_sdk",
    "serde",
    "as",
    "break",
    "const",
    "continue",
    "else",
    "enum",
    "extern",
    "false",
    "fn",
    "for",
    "if",
    "impl",
    "in",
    "let",
    "loop",
    "match",
    "mod",
    "move",
    "mut",
    "pub",
    "ref",
    "return",
    "static",
    "struct",
    "trait",
    "true",
    "type",
    "unsafe",
    "use",
    "where",
    "while",
    "async",
    "await",
    "dyn",
    "abstract",
    "become",
    "box",
    "do",
    "final",
    "macro",
    "override",
    "priv",
    "typeof",
    "unsized",
    "virtual",
    "yield",
    "try",
    "gen",
];

/// Checks a crate name: what `reprise new` accepts.
pub fn check_name(name: &str) -> Result<(), NewError> {
    let mut chars = name.chars();
    let valid = name.len() <= 64
        && chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !valid {
        return Err(NewError::InvalidName(name.to_string()));
    }
    if RESERVED.contains(&name) {
        return Err(NewError::ReservedName(name.to_string()));
    }
    Ok(())
}

/// Writes the crate at `dir`, named after its last component. Refuses a
/// path that exists, and removes what it wrote if a write fails.
pub fn create(dir: &Path) -> Result<String, NewError> {
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_string();
    check_name(&name)?;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| NewError::Io { path, source }
    };
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(io(parent))?;
    }
    // Creating the directory is the check: it fails if anything is there.
    match fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(NewError::Exists(dir.to_path_buf()));
        }
        Err(e) => return Err(io(dir)(e)),
    }
    let written = write_all(dir, &name);
    if written.is_err() {
        // Only what this call created: the directory did not exist.
        let _ = fs::remove_dir_all(dir);
    }
    written.map(|()| name)
}

fn write_all(dir: &Path, name: &str) -> Result<(), NewError> {
    let crate_name = name.replace('-', "_");
    let fill = |text: &str| {
        text.replace("{{name}}", name)
            .replace("{{crate}}", &crate_name)
    };
    for (path, text) in TEMPLATE {
        write_new(&dir.join(path), &fill(text))?;
    }
    let vendor = dir.join("vendor");
    for (path, text) in SDK {
        write_new(&vendor.join(path), text)?;
    }
    write_new(&vendor.join("README.md"), VENDOR_README)
}

fn write_new(path: &Path, text: &str) -> Result<(), NewError> {
    let io = |source| NewError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(io)?;
    }
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(io)?;
    file.write_all(text.as_bytes()).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file of the SDK crates and the current world is in `SDK`, so
    /// a file added to the SDK cannot be left out of a new crate.
    #[test]
    fn every_sdk_file_is_vendored() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut on_disk = Vec::new();
        for (from, to) in [
            ("guest-sdk/src", "reprise-sdk/src"),
            ("guest-sdk/macros/src", "reprise-sdk/macros/src"),
        ] {
            collect(&root.join(from), to, &mut on_disk);
        }
        on_disk.extend([
            "reprise-sdk/Cargo.toml".to_string(),
            "reprise-sdk/macros/Cargo.toml".to_string(),
            "wit/workflow.wit".to_string(),
        ]);
        on_disk.sort();
        let mut listed: Vec<String> = SDK.iter().map(|(p, _)| p.to_string()).collect();
        listed.sort();
        assert_eq!(listed, on_disk);
    }

    fn collect(dir: &Path, prefix: &str, out: &mut Vec<String>) {
        for entry in fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().into_string().unwrap();
            let path = format!("{prefix}/{name}");
            if entry.file_type().unwrap().is_dir() {
                collect(&entry.path(), &path, out);
            } else {
                out.push(path);
            }
        }
    }

    #[test]
    fn names_are_checked() {
        for ok in ["hello", "my-flow", "a_b2", "X"] {
            check_name(ok).unwrap();
        }
        for bad in ["", "1abc", "-x", "has space", "a/b", "é", &"x".repeat(65)] {
            assert!(
                matches!(check_name(bad), Err(NewError::InvalidName(_))),
                "{bad}"
            );
        }
        for reserved in ["test", "fn", "reprise-sdk"] {
            assert!(matches!(
                check_name(reserved),
                Err(NewError::ReservedName(_))
            ));
        }
    }

    #[test]
    fn an_existing_path_is_refused_and_left_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("taken");
        fs::create_dir(&dir).unwrap();
        fs::write(dir.join("keep.txt"), "mine").unwrap();
        assert!(matches!(create(&dir), Err(NewError::Exists(_))));
        assert_eq!(fs::read_to_string(dir.join("keep.txt")).unwrap(), "mine");
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);

        let file = tmp.path().join("file");
        fs::write(&file, "x").unwrap();
        assert!(matches!(create(&file), Err(NewError::Exists(_))));
        assert_eq!(fs::read_to_string(&file).unwrap(), "x");
    }

    #[test]
    fn a_new_crate_has_its_files_and_the_sdk() {
        let tmp = tempfile::tempdir().unwrap();
        let name = create(&tmp.path().join("nested/hello-flow")).unwrap();
        assert_eq!(name, "hello-flow");
        let dir = tmp.path().join("nested/hello-flow");
        let manifest = fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        assert!(manifest.contains("name = \"hello-flow\""));
        assert!(!manifest.contains("{{"));
        let readme = fs::read_to_string(dir.join("README.md")).unwrap();
        assert!(readme.contains("release/hello_flow.wasm"));
        for (path, text) in SDK {
            assert_eq!(
                fs::read_to_string(dir.join("vendor").join(path)).unwrap(),
                *text
            );
        }
    }
}
