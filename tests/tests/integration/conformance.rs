//! The store conformance suite on every backend.

use reprise_tests::{
    conformance_tests, file_store, memory_store, redis_cluster_store, redis_store,
};

conformance_tests!(memory, memory_store());
conformance_tests!(embedded_file, file_store());
conformance_tests!(redis, redis_store());
conformance_tests!(redis_cluster, redis_cluster_store());

/// Every case of the suite is in `conformance_tests!`'s list, so each runs
/// on every backend: a case written but left out of the list would
/// otherwise never run, without a warning. Cases are the `pub async fn`s of
/// `tests/src/conformance.rs`, `conformance/pages.rs` and
/// `conformance/listing.rs` that take a store.
#[test]
fn every_case_is_listed() {
    use std::collections::BTreeSet;
    let source = include_str!("../../src/conformance.rs");
    let pages = include_str!("../../src/conformance/pages.rs");
    let listing = include_str!("../../src/conformance/listing.rs");
    let cases: BTreeSet<&str> = source
        .lines()
        .chain(pages.lines())
        .chain(listing.lines())
        .filter_map(|l| l.strip_prefix("pub async fn "))
        .filter(|l| l.contains("(store: Arc<dyn Store>)"))
        .filter_map(|l| l.split('(').next())
        .collect();
    let list = source
        .split("$crate::conformance_tests!(@cases $make;")
        .nth(1)
        .and_then(|rest| rest.split(");").next())
        .expect("the macro's case list");
    let listed: BTreeSet<&str> = list
        .split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert!(
        cases.len() >= 17,
        "found only {} cases: {cases:?}",
        cases.len()
    );
    assert_eq!(
        cases.difference(&listed).collect::<Vec<_>>(),
        Vec::<&&str>::new(),
        "cases missing from conformance_tests!"
    );
    assert_eq!(
        listed.difference(&cases).collect::<Vec<_>>(),
        Vec::<&&str>::new(),
        "listed cases that do not exist"
    );
}
