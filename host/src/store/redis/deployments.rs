//! Components (stored once by digest) and deployments: the deployments
//! hash (name to current digest) and each name's version list, in one
//! slot so a deploy is one script.

use super::scripts::scripts;
use super::{RedisStore, redis_err};
use crate::ids::Digest;
use crate::persist::{decode, encode};
use crate::store::{DeploymentVersion, StoreError};

impl RedisStore {
    fn deployments_key(&self) -> String {
        format!("{}:deployments", self.options.prefix)
    }

    /// The version list of deployment `name`, hashed to the same slot as
    /// the deployments hash (its hash tag is that key's name).
    fn versions_key(&self, name: &str) -> String {
        format!("{{{}}}:versions:{name}", self.deployments_key())
    }

    pub(super) async fn put_component_bytes(
        &self,
        digest: &Digest,
        bytes: &[u8],
    ) -> Result<(), StoreError> {
        let key = format!("{}:component:{}", self.options.prefix, digest.to_hex());
        redis::cmd("SET")
            .arg(key)
            .arg(bytes)
            .arg("NX")
            .query_async::<()>(&mut self.conn())
            .await
            .map_err(redis_err)
    }

    pub(super) async fn component_bytes(
        &self,
        digest: &Digest,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let key = format!("{}:component:{}", self.options.prefix, digest.to_hex());
        redis::cmd("GET")
            .arg(key)
            .query_async(&mut self.conn())
            .await
            .map_err(redis_err)
    }

    pub(super) async fn deploy(
        &self,
        name: &str,
        version: &DeploymentVersion,
    ) -> Result<DeploymentVersion, StoreError> {
        let (n, bytes): (u32, Vec<u8>) = scripts()
            .deploy
            .key(self.deployments_key())
            .key(self.versions_key(name))
            .arg(name)
            .arg(version.digest.to_hex())
            .arg(encode(version))
            .invoke_async(&mut self.conn())
            .await
            .map_err(redis_err)?;
        let mut current: DeploymentVersion = decode(&bytes)?;
        current.version = n;
        Ok(current)
    }

    pub(super) async fn versions(&self, name: &str) -> Result<Vec<DeploymentVersion>, StoreError> {
        let raw: Vec<Vec<u8>> = redis::cmd("LRANGE")
            .arg(self.versions_key(name))
            .arg(0)
            .arg(-1)
            .query_async(&mut self.conn())
            .await
            .map_err(redis_err)?;
        raw.iter()
            .enumerate()
            .map(|(i, bytes)| {
                let mut v: DeploymentVersion = decode(bytes)?;
                v.version = i as u32 + 1;
                Ok(v)
            })
            .collect()
    }

    pub(super) async fn deployments(&self) -> Result<Vec<(String, DeploymentVersion)>, StoreError> {
        let names: Vec<String> = redis::cmd("HKEYS")
            .arg(self.deployments_key())
            .query_async(&mut self.conn())
            .await
            .map_err(redis_err)?;
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            let (n, last): (u32, Option<Vec<u8>>) = redis::pipe()
                .cmd("LLEN")
                .arg(self.versions_key(&name))
                .cmd("LINDEX")
                .arg(self.versions_key(&name))
                .arg(-1)
                .query_async(&mut self.conn())
                .await
                .map_err(redis_err)?;
            if let Some(bytes) = last {
                let mut v: DeploymentVersion = decode(&bytes)?;
                v.version = n;
                out.push((name, v));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    pub(super) async fn deployed(&self, name: &str) -> Result<Option<Digest>, StoreError> {
        let hex: Option<String> = redis::cmd("HGET")
            .arg(self.deployments_key())
            .arg(name)
            .query_async(&mut self.conn())
            .await
            .map_err(redis_err)?;
        hex.map(|h| {
            Digest::parse(&h)
                .ok_or_else(|| StoreError::Corrupt(format!("deployment {name}: bad digest")))
        })
        .transpose()
    }
}
