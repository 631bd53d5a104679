//! The metadata store: one redb database holding every record as JSON under a string key.
//!
//! redb was chosen over SQLite because it is pure Rust (no C build, no second toolchain in
//! the daemon), is crash safe by construction (copy-on-write B-trees with checksummed
//! commits: a crash leaves the last committed transaction), and hako's records are looked
//! up by key or scanned whole, which needs no query language. Each multi-step change is one
//! [`MetaStore::write`] transaction.

use std::path::Path;

use redb::{ReadableTable, TableDefinition};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// A table of JSON records under string keys.
pub type Table = TableDefinition<'static, &'static str, &'static [u8]>;

/// Image records by image ID (`sha256:<config digest hex>`).
pub const IMAGES: Table = TableDefinition::new("images");
/// Tags: normalized `repo:tag` -> image ID.
pub const TAGS: Table = TableDefinition::new("tags");
/// Repo digests: normalized `repo@sha256:...` -> image ID.
pub const REPO_DIGESTS: Table = TableDefinition::new("repo_digests");
/// Containers by ID (records written by the container runtime; images check it before removal).
pub const CONTAINERS: Table = TableDefinition::new("containers");

/// Volumes by name.
pub const VOLUMES: Table = TableDefinition::new("volumes");

/// Network ID -> network record (its subnet and the leases of its addresses).
pub const NETWORKS: Table = TableDefinition::new("networks");

/// Build cache: a step's key (parent image, instruction, content read) -> the image it made.
pub const BUILD_CACHE: Table = TableDefinition::new("build_cache");

const ALL: [Table; 7] = [IMAGES, TAGS, REPO_DIGESTS, CONTAINERS, VOLUMES, NETWORKS, BUILD_CACHE];

#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error("metadata database: {0}")]
    Db(String),
    #[error("metadata record {key:?} in {table} is corrupt: {source}")]
    Corrupt {
        table: String,
        key: String,
        source: serde_json::Error,
    },
}

fn db_err(e: impl std::fmt::Display) -> MetaError {
    MetaError::Db(e.to_string())
}

pub struct MetaStore {
    db: redb::Database,
}

impl MetaStore {
    pub fn open(path: &Path) -> Result<MetaStore, MetaError> {
        let db = redb::Database::create(path).map_err(db_err)?;
        let txn = db.begin_write().map_err(db_err)?;
        for t in ALL {
            txn.open_table(t).map_err(db_err)?;
        }
        txn.commit().map_err(db_err)?;
        Ok(MetaStore { db })
    }

    pub fn get<T: DeserializeOwned>(&self, table: Table, key: &str) -> Result<Option<T>, MetaError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let t = txn.open_table(table).map_err(db_err)?;
        let v = t.get(key).map_err(db_err)?;
        v.map(|v| decode(table, key, v.value())).transpose()
    }

    pub fn list<T: DeserializeOwned>(&self, table: Table) -> Result<Vec<(String, T)>, MetaError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let t = txn.open_table(table).map_err(db_err)?;
        collect(table, &t)
    }

    /// Runs `f` in one write transaction; it commits only if `f` returns Ok.
    pub fn write<R, E: From<MetaError>>(&self, f: impl FnOnce(&mut Txn) -> Result<R, E>) -> Result<R, E> {
        self.write_with(redb::Durability::Immediate, f)
    }

    /// As [`MetaStore::write`], atomic but not fsynced: for records that can be rebuilt from
    /// other state (a container's runtime state is also in its monitor's state file). A
    /// process crash loses nothing; a power loss may lose the last such commits, never the
    /// database's consistency.
    pub fn write_eventual<R, E: From<MetaError>>(&self, f: impl FnOnce(&mut Txn) -> Result<R, E>) -> Result<R, E> {
        self.write_with(redb::Durability::Eventual, f)
    }

    fn write_with<R, E: From<MetaError>>(
        &self,
        durability: redb::Durability,
        f: impl FnOnce(&mut Txn) -> Result<R, E>,
    ) -> Result<R, E> {
        let mut txn = self.db.begin_write().map_err(db_err)?;
        txn.set_durability(durability);
        let mut w = Txn { txn };
        let r = f(&mut w)?;
        w.txn.commit().map_err(db_err)?;
        Ok(r)
    }
}

pub struct Txn {
    txn: redb::WriteTransaction,
}

impl Txn {
    pub fn get<T: DeserializeOwned>(&self, table: Table, key: &str) -> Result<Option<T>, MetaError> {
        let t = self.txn.open_table(table).map_err(db_err)?;
        let v = t.get(key).map_err(db_err)?;
        v.map(|v| decode(table, key, v.value())).transpose()
    }

    pub fn put<T: Serialize>(&mut self, table: Table, key: &str, value: &T) -> Result<(), MetaError> {
        let bytes = serde_json::to_vec(value).map_err(db_err)?;
        let mut t = self.txn.open_table(table).map_err(db_err)?;
        t.insert(key, bytes.as_slice()).map_err(db_err)?;
        Ok(())
    }

    /// Removes a key; says whether it was there.
    pub fn delete(&mut self, table: Table, key: &str) -> Result<bool, MetaError> {
        let mut t = self.txn.open_table(table).map_err(db_err)?;
        let old = t.remove(key).map_err(db_err)?;
        Ok(old.is_some())
    }

    pub fn list<T: DeserializeOwned>(&self, table: Table) -> Result<Vec<(String, T)>, MetaError> {
        let t = self.txn.open_table(table).map_err(db_err)?;
        collect(table, &t)
    }
}

fn decode<T: DeserializeOwned>(table: Table, key: &str, bytes: &[u8]) -> Result<T, MetaError> {
    serde_json::from_slice(bytes).map_err(|source| MetaError::Corrupt {
        table: table.to_string(),
        key: key.to_string(),
        source,
    })
}

fn collect<T: DeserializeOwned>(
    table: Table,
    t: &impl ReadableTable<&'static str, &'static [u8]>,
) -> Result<Vec<(String, T)>, MetaError> {
    let mut out = Vec::new();
    for row in t.iter().map_err(db_err)? {
        let (k, v) = row.map_err(db_err)?;
        let key = k.value().to_string();
        let val = decode(table, &key, v.value())?;
        out.push((key, val));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transaction_is_all_or_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let m = MetaStore::open(&dir.path().join("meta.redb")).unwrap();
        m.write(|t| {
            t.put(TAGS, "a:1", &"img1")?;
            Ok::<_, MetaError>(())
        })
        .unwrap();
        let r: Result<(), MetaError> = m.write(|t| {
            t.put(TAGS, "b:1", &"img2")?;
            Err(MetaError::Db("abort".into()))
        });
        assert!(r.is_err());
        let all: Vec<(String, String)> = m.list(TAGS).unwrap();
        assert_eq!(all, vec![("a:1".to_string(), "img1".to_string())]);
        assert_eq!(m.get::<String>(TAGS, "a:1").unwrap().as_deref(), Some("img1"));
    }
}
