//! The metadata store: one redb database holding every record as JSON under a string key.
//!
//! redb was chosen over SQLite because it is pure Rust (no C build, no second toolchain in
//! the daemon), is crash safe by construction (copy-on-write B-trees with checksummed
//! commits: a crash leaves the last committed transaction), and hako's records are looked
//! up by key or scanned whole, which needs no query language. Each multi-step change is one
//! [`MetaStore::write`] transaction.

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::Duration;

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

impl Drop for MetaStore {
    fn drop(&mut self) {
        let pending = {
            let mut st = self.flush.state.lock().unwrap_or_else(|p| p.into_inner());
            st.closed = true;
            std::mem::take(&mut st.pending)
        };
        self.flush.wake.notify_one();
        if pending {
            let _ = commit_durably(&self.db);
        }
    }
}

/// Makes the eventual commits durable a moment after they come, in one commit for a burst.
fn flusher(db: &Weak<redb::Database>, f: &FlushState) {
    loop {
        {
            let mut st = f.state.lock().unwrap_or_else(|p| p.into_inner());
            while !st.pending && !st.closed {
                st = f.wake.wait(st).unwrap_or_else(|p| p.into_inner());
            }
            if st.closed {
                return;
            }
        }
        std::thread::sleep(FLUSH_AFTER);
        f.state.lock().unwrap_or_else(|p| p.into_inner()).pending = false;
        let Some(db) = db.upgrade() else { return };
        if let Err(e) = commit_durably(&db) {
            tracing::warn!("metadata database: making recent changes durable: {e}");
        }
    }
}

/// An empty durable commit: it writes out every non-durable commit before it.
fn commit_durably(db: &redb::Database) -> Result<(), MetaError> {
    let mut txn = db.begin_write().map_err(db_err)?;
    txn.set_durability(redb::Durability::Immediate);
    txn.commit().map_err(db_err)
}

fn db_err(e: impl std::fmt::Display) -> MetaError {
    MetaError::Db(e.to_string())
}

/// How long a [`MetaStore::write_eventual`] commit may stay in memory only.
pub const FLUSH_AFTER: Duration = Duration::from_millis(100);

pub struct MetaStore {
    db: Arc<redb::Database>,
    flush: Arc<FlushState>,
}

#[derive(Default)]
struct FlushState {
    state: Mutex<Flush>,
    wake: Condvar,
}

#[derive(Default)]
struct Flush {
    /// Eventual commits wait for a durable one.
    pending: bool,
    /// The store is gone: the flusher ends.
    closed: bool,
}

impl MetaStore {
    pub fn open(path: &Path) -> Result<MetaStore, MetaError> {
        let db = redb::Database::create(path).map_err(db_err)?;
        let txn = db.begin_write().map_err(db_err)?;
        for t in ALL {
            txn.open_table(t).map_err(db_err)?;
        }
        txn.commit().map_err(db_err)?;
        let db = Arc::new(db);
        let flush = Arc::new(FlushState::default());
        let (weak, f) = (Arc::downgrade(&db), flush.clone());
        std::thread::Builder::new()
            .name("meta-flush".into())
            .spawn(move || flusher(&weak, &f))
            .map_err(|e| MetaError::Db(format!("starting the metadata flusher: {e}")))?;
        Ok(MetaStore { db, flush })
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

    /// As [`MetaStore::write`], atomic and visible at once, but on disk only with the next
    /// durable commit: a thread makes one within [`FLUSH_AFTER`] (redb's own `Eventual`
    /// still waits for the disk on Linux). A crash of the process or the host loses at most
    /// that last moment's such commits, never the database's consistency: for records the
    /// daemon rebuilds or drops at its next start (a container's, whose directory and
    /// monitor state tell what became of it).
    pub fn write_eventual<R, E: From<MetaError>>(&self, f: impl FnOnce(&mut Txn) -> Result<R, E>) -> Result<R, E> {
        let r = self.write_with(redb::Durability::None, f)?;
        self.flush.state.lock().unwrap_or_else(|p| p.into_inner()).pending = true;
        self.flush.wake.notify_one();
        Ok(r)
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

    /// Run in a child process by `eventual_commits_survive_a_crash_after_the_flush`: a durable
    /// and an eventual commit, then an exit that runs no destructor, as a crash.
    #[test]
    #[ignore = "a child process of another test"]
    fn child_commits_then_dies() {
        let Ok(path) = std::env::var("HAKO_META_CHILD") else {
            return;
        };
        let m = MetaStore::open(Path::new(&path)).unwrap();
        m.write(|t| t.put(TAGS, "durable", &"1")).unwrap();
        m.write_eventual(|t| t.put(TAGS, "eventual", &"2")).unwrap();
        if std::env::var("HAKO_META_WAIT").is_ok() {
            std::thread::sleep(FLUSH_AFTER * 5);
        }
        std::process::exit(0);
    }

    #[test]
    fn eventual_commits_survive_a_crash_after_the_flush() {
        for wait in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("meta.redb");
            let mut c = std::process::Command::new(std::env::current_exe().unwrap());
            c.args([
                "--exact",
                "meta::tests::child_commits_then_dies",
                "--ignored",
                "--quiet",
            ])
            .env("HAKO_META_CHILD", &path);
            if wait {
                c.env("HAKO_META_WAIT", "1");
            }
            assert!(c.status().unwrap().success());
            let m = MetaStore::open(&path).unwrap();
            assert_eq!(m.get::<String>(TAGS, "durable").unwrap().as_deref(), Some("1"));
            let eventual = m.get::<String>(TAGS, "eventual").unwrap();
            if wait {
                assert_eq!(eventual.as_deref(), Some("2"), "not on disk {FLUSH_AFTER:?} after");
            }
        }
    }

    #[test]
    fn eventual_commits_are_written_when_the_store_closes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.redb");
        let m = MetaStore::open(&path).unwrap();
        m.write_eventual(|t| t.put(TAGS, "a", &"1")).unwrap();
        drop(m);
        let m = MetaStore::open(&path).unwrap();
        assert_eq!(m.get::<String>(TAGS, "a").unwrap().as_deref(), Some("1"));
    }

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
