//! The store conformance suite on every backend.

use std::sync::Arc;

use reprise_host::{EmbeddedStore, Store};
use reprise_tests::conformance_tests;

fn memory() -> (Arc<dyn Store>, ()) {
    (Arc::new(EmbeddedStore::in_memory()), ())
}

fn file() -> (Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path().join("store.redb")).unwrap();
    (Arc::new(store), dir)
}

conformance_tests!(embedded_memory, memory());
conformance_tests!(embedded_file, file());
