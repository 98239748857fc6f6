//! The store conformance suite on every backend.

use reprise_tests::{
    conformance_tests, file_store, memory_store, redis_cluster_store, redis_store,
};

conformance_tests!(embedded_memory, memory_store());
conformance_tests!(embedded_file, file_store());
conformance_tests!(redis, redis_store());
conformance_tests!(redis_cluster, redis_cluster_store());
