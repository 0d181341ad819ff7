//! The SQLite registry: models and their files, store blobs, apps, usage, links, aliases and a hash cache
//! for files whose names do not carry their sha256. WAL mode, a busy timeout so concurrent `hearth`
//! processes wait rather than fail, and numbered migrations tracked in `PRAGMA user_version`.

use crate::error::{Result, StoreError};
use crate::fsutil::now_secs;
use rusqlite::{params, Connection, OptionalExtension, Row};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Each entry upgrades the schema by one version; never edit a shipped entry, append a new one.
const MIGRATIONS: &[&str] = &[
    // 1: the seed schema.
    "CREATE TABLE models (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        origin TEXT NOT NULL,
        source TEXT NOT NULL,
        format TEXT NOT NULL,
        quantization TEXT,
        architecture TEXT,
        revision TEXT,
        size INTEGER NOT NULL,
        entry TEXT NOT NULL,
        added_at INTEGER NOT NULL,
        last_used INTEGER,
        UNIQUE (name, origin));
     CREATE TABLE model_files (
        model_id INTEGER NOT NULL REFERENCES models(id) ON DELETE CASCADE,
        rel_path TEXT NOT NULL,
        sha256 TEXT,
        size INTEGER NOT NULL,
        location TEXT NOT NULL,
        PRIMARY KEY (model_id, rel_path));
     CREATE INDEX model_files_sha ON model_files(sha256);
     CREATE TABLE blobs (sha256 TEXT PRIMARY KEY, size INTEGER NOT NULL, added_at INTEGER NOT NULL, verified_at INTEGER);
     CREATE TABLE apps (id INTEGER PRIMARY KEY, name TEXT NOT NULL, path TEXT NOT NULL UNIQUE, model_dir TEXT NOT NULL, created_at INTEGER NOT NULL);
     CREATE TABLE model_usage (
        model_id INTEGER NOT NULL REFERENCES models(id) ON DELETE CASCADE,
        app_id INTEGER NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
        uses INTEGER NOT NULL DEFAULT 0,
        last_used INTEGER,
        PRIMARY KEY (model_id, app_id));
     CREATE TABLE links (
        id INTEGER PRIMARY KEY,
        app_id INTEGER NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
        model_id INTEGER NOT NULL REFERENCES models(id) ON DELETE CASCADE,
        path TEXT NOT NULL UNIQUE,
        sha256 TEXT,
        mode TEXT NOT NULL,
        created_at INTEGER NOT NULL);
     CREATE TABLE aliases (alias TEXT PRIMARY KEY, model_id INTEGER NOT NULL REFERENCES models(id) ON DELETE CASCADE);
     CREATE TABLE file_hashes (path TEXT PRIMARY KEY, dev INTEGER NOT NULL, ino INTEGER NOT NULL, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, sha256 TEXT NOT NULL);",
];

/// Where a registered model's bytes live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Origin {
    /// In hearth's own blob store.
    Store,
    /// Indexed in place in the Hugging Face cache.
    HfCache,
    /// Indexed in place in Ollama's store.
    Ollama,
    /// Indexed in place in LM Studio's models folder.
    #[serde(rename = "lmstudio")]
    LmStudio,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Store => "store",
            Origin::HfCache => "hf-cache",
            Origin::Ollama => "ollama",
            Origin::LmStudio => "lmstudio",
        }
    }

    fn parse(s: &str) -> Origin {
        match s {
            "hf-cache" => Origin::HfCache,
            "ollama" => Origin::Ollama,
            "lmstudio" => Origin::LmStudio,
            _ => Origin::Store,
        }
    }

    /// Resolution prefers hearth's own copy, then the tools' caches.
    pub fn priority(self) -> u8 {
        match self {
            Origin::Store => 0,
            Origin::HfCache => 1,
            Origin::Ollama => 2,
            Origin::LmStudio => 3,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ModelRecord {
    pub id: i64,
    pub name: String,
    pub origin: Origin,
    pub source: String,
    pub format: String,
    pub quantization: Option<String>,
    pub architecture: Option<String>,
    pub revision: Option<String>,
    pub size: u64,
    /// The path a loader opens: a .gguf file or a safetensors directory.
    pub entry: PathBuf,
    pub added_at: i64,
    pub last_used: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FileRecord {
    pub rel_path: String,
    pub sha256: Option<String>,
    pub size: u64,
    /// Where the bytes are on disk (a store blob or a file in another tool's cache).
    pub location: PathBuf,
}

/// A model about to be registered.
#[derive(Debug, Clone)]
pub struct NewModel {
    pub name: String,
    pub origin: Origin,
    pub source: String,
    pub format: String,
    pub quantization: Option<String>,
    pub architecture: Option<String>,
    pub revision: Option<String>,
    pub entry: PathBuf,
    pub files: Vec<FileRecord>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AppRecord {
    pub id: i64,
    pub name: String,
    pub path: PathBuf,
    pub model_dir: PathBuf,
}

#[derive(Debug, Clone, Serialize)]
pub struct LinkRecord {
    pub id: i64,
    pub app_id: i64,
    pub model_id: i64,
    pub path: PathBuf,
    pub sha256: Option<String>,
    pub mode: String,
}

pub struct Registry {
    conn: Connection,
    path: PathBuf,
}

/// Whether SQLite refused because another connection holds the lock.
fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if matches!(f.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked))
}

impl Registry {
    pub fn open(path: &Path) -> Result<Registry> {
        // SQLite reports "database is locked" at once, without waiting on the busy timeout, when
        // another process is switching the file to WAL or recovering it: retry the whole open.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let mut wait = std::time::Duration::from_millis(20);
        loop {
            match Self::open_once(path) {
                Err(StoreError::Registry { source, .. }) if is_busy(&source) && std::time::Instant::now() < deadline => {
                    std::thread::sleep(wait);
                    wait = (wait * 2).min(std::time::Duration::from_millis(500));
                }
                other => return other,
            }
        }
    }

    fn open_once(path: &Path) -> Result<Registry> {
        let err = |source| StoreError::Registry { path: path.to_path_buf(), source };
        let conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(60)).map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(err)?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(err)?;
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(err)?;
        let mut registry = Registry { conn, path: path.to_path_buf() };
        registry.migrate()?;
        Ok(registry)
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        move |source| StoreError::Registry { path: self.path.clone(), source }
    }

    fn migrate(&mut self) -> Result<()> {
        let path = self.path.clone();
        let err = |source| StoreError::Registry { path: path.clone(), source };
        // IMMEDIATE takes the write lock first, so two processes opening a fresh store migrate once.
        let tx = self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(err)?;
        let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(err)?;
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version.max(0) as usize) {
            tx.execute_batch(sql).map_err(err)?;
            tx.pragma_update(None, "user_version", (i + 1) as i64).map_err(err)?;
        }
        tx.commit().map_err(err)
    }

    pub fn schema_version(&self) -> Result<usize> {
        let v: i64 = self.conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(self.err())?;
        Ok(v.max(0) as usize)
    }

    /// Inserts or replaces the model (by name and origin) with its file list, in one transaction.
    pub fn upsert_model(&mut self, m: &NewModel) -> Result<i64> {
        let path = self.path.clone();
        let err = |source| StoreError::Registry { path: path.clone(), source };
        let size: u64 = m.files.iter().map(|f| f.size).sum();
        let tx = self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(err)?;
        tx.execute(
            "INSERT INTO models (name, origin, source, format, quantization, architecture, revision, size, entry, added_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
             ON CONFLICT (name, origin) DO UPDATE SET source = ?3, format = ?4, quantization = ?5,
                architecture = ?6, revision = ?7, size = ?8, entry = ?9",
            params![m.name, m.origin.as_str(), m.source, m.format, m.quantization, m.architecture, m.revision, size as i64, path_str(&m.entry), now_secs()],
        )
        .map_err(err)?;
        let id: i64 = tx
            .query_row("SELECT id FROM models WHERE name = ?1 AND origin = ?2", params![m.name, m.origin.as_str()], |r| r.get(0))
            .map_err(err)?;
        tx.execute("DELETE FROM model_files WHERE model_id = ?1", [id]).map_err(err)?;
        for f in &m.files {
            tx.execute(
                "INSERT INTO model_files (model_id, rel_path, sha256, size, location) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![id, f.rel_path, f.sha256, f.size as i64, path_str(&f.location)],
            )
            .map_err(err)?;
        }
        tx.commit().map_err(err)?;
        Ok(id)
    }

    pub fn models(&self) -> Result<Vec<ModelRecord>> {
        self.query_models("SELECT * FROM models ORDER BY name, origin", [])
    }

    pub fn models_named(&self, name: &str) -> Result<Vec<ModelRecord>> {
        self.query_models(
            "SELECT * FROM models WHERE name = ?1 OR id IN (SELECT model_id FROM aliases WHERE alias = ?1) ORDER BY origin",
            [name],
        )
    }

    pub fn models_with_origin(&self, origin: Origin) -> Result<Vec<ModelRecord>> {
        self.query_models("SELECT * FROM models WHERE origin = ?1", [origin.as_str()])
    }

    fn query_models<P: rusqlite::Params>(&self, sql: &str, p: P) -> Result<Vec<ModelRecord>> {
        let mut stmt = self.conn.prepare(sql).map_err(self.err())?;
        let rows = stmt.query_map(p, model_from_row).map_err(self.err())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.err())
    }

    pub fn model_files(&self, model_id: i64) -> Result<Vec<FileRecord>> {
        let mut stmt = self
            .conn
            .prepare("SELECT rel_path, sha256, size, location FROM model_files WHERE model_id = ?1 ORDER BY rel_path")
            .map_err(self.err())?;
        let rows = stmt
            .query_map([model_id], |r| {
                Ok(FileRecord { rel_path: r.get(0)?, sha256: r.get(1)?, size: r.get::<_, i64>(2)? as u64, location: PathBuf::from(r.get::<_, String>(3)?) })
            })
            .map_err(self.err())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.err())
    }

    pub fn delete_model(&self, model_id: i64) -> Result<()> {
        self.conn.execute("DELETE FROM models WHERE id = ?1", [model_id]).map_err(self.err())?;
        Ok(())
    }

    pub fn set_alias(&self, alias: &str, model_id: i64) -> Result<()> {
        self.conn
            .execute("INSERT INTO aliases (alias, model_id) VALUES (?1, ?2) ON CONFLICT (alias) DO UPDATE SET model_id = ?2", params![alias, model_id])
            .map_err(self.err())?;
        Ok(())
    }

    pub fn add_blob(&self, sha256: &str, size: u64) -> Result<()> {
        self.conn
            .execute("INSERT OR IGNORE INTO blobs (sha256, size, added_at) VALUES (?1, ?2, ?3)", params![sha256, size as i64, now_secs()])
            .map_err(self.err())?;
        Ok(())
    }

    pub fn delete_blob(&self, sha256: &str) -> Result<()> {
        self.conn.execute("DELETE FROM blobs WHERE sha256 = ?1", [sha256]).map_err(self.err())?;
        Ok(())
    }

    pub fn mark_verified(&self, sha256: &str) -> Result<()> {
        self.conn.execute("UPDATE blobs SET verified_at = ?2 WHERE sha256 = ?1", params![sha256, now_secs()]).map_err(self.err())?;
        Ok(())
    }

    /// Store blobs as (sha256, size).
    pub fn blobs(&self) -> Result<Vec<(String, u64)>> {
        let mut stmt = self.conn.prepare("SELECT sha256, size FROM blobs ORDER BY sha256").map_err(self.err())?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64))).map_err(self.err())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.err())
    }

    /// Whether any store model still lists this blob.
    pub fn blob_referenced(&self, sha256: &str) -> Result<bool> {
        let n: i64 = self
            .conn
            .query_row(
                "SELECT COUNT(*) FROM model_files f JOIN models m ON m.id = f.model_id WHERE f.sha256 = ?1 AND m.origin = 'store'",
                [sha256],
                |r| r.get(0),
            )
            .map_err(self.err())?;
        Ok(n > 0)
    }

    pub fn ensure_app(&self, name: &str, path: &Path, model_dir: &Path) -> Result<i64> {
        self.conn
            .execute(
                "INSERT INTO apps (name, path, model_dir, created_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (path) DO UPDATE SET name = ?1, model_dir = ?3",
                params![name, path_str(path), path_str(model_dir), now_secs()],
            )
            .map_err(self.err())?;
        self.conn.query_row("SELECT id FROM apps WHERE path = ?1", [path_str(path)], |r| r.get(0)).map_err(self.err())
    }

    pub fn app_by_path(&self, path: &Path) -> Result<Option<AppRecord>> {
        self.conn
            .query_row("SELECT id, name, path, model_dir FROM apps WHERE path = ?1", [path_str(path)], app_from_row)
            .optional()
            .map_err(self.err())
    }

    pub fn delete_app(&self, app_id: i64) -> Result<()> {
        self.conn.execute("DELETE FROM apps WHERE id = ?1", [app_id]).map_err(self.err())?;
        Ok(())
    }

    pub fn record_use(&self, model_id: i64, app_id: i64) -> Result<()> {
        let now = now_secs();
        self.conn
            .execute(
                "INSERT INTO model_usage (model_id, app_id, uses, last_used) VALUES (?1, ?2, 1, ?3)
                 ON CONFLICT (model_id, app_id) DO UPDATE SET uses = uses + 1, last_used = ?3",
                params![model_id, app_id, now],
            )
            .map_err(self.err())?;
        self.conn.execute("UPDATE models SET last_used = ?2 WHERE id = ?1", params![model_id, now]).map_err(self.err())?;
        Ok(())
    }

    /// Notes that an app holds a model (a tool whose cache it was indexed from) without counting a use.
    pub fn note_usage(&self, model_id: i64, app_id: i64) -> Result<()> {
        self.conn
            .execute("INSERT OR IGNORE INTO model_usage (model_id, app_id, uses) VALUES (?1, ?2, 0)", params![model_id, app_id])
            .map_err(self.err())?;
        Ok(())
    }

    /// Backdates a model's last use (tests and imports of other tools' access times).
    pub fn set_last_used(&self, model_id: i64, when: i64) -> Result<()> {
        self.conn.execute("UPDATE models SET last_used = ?2 WHERE id = ?1", params![model_id, when]).map_err(self.err())?;
        Ok(())
    }

    /// Names of the apps that use a model (usage or links), sorted.
    pub fn apps_using(&self, model_id: i64) -> Result<Vec<String>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT DISTINCT a.name FROM apps a WHERE a.id IN
                   (SELECT app_id FROM model_usage WHERE model_id = ?1 UNION SELECT app_id FROM links WHERE model_id = ?1)
                 ORDER BY a.name",
            )
            .map_err(self.err())?;
        let rows = stmt.query_map([model_id], |r| r.get(0)).map_err(self.err())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.err())
    }

    /// Names of the apps holding links to a model: the ones whose folders would break if it went away.
    pub fn apps_linking(&self, model_id: i64) -> Result<Vec<String>> {
        let mut stmt = self
            .conn
            .prepare("SELECT DISTINCT a.name FROM apps a JOIN links l ON l.app_id = a.id WHERE l.model_id = ?1 ORDER BY a.name")
            .map_err(self.err())?;
        let rows = stmt.query_map([model_id], |r| r.get(0)).map_err(self.err())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.err())
    }

    pub fn add_link(&self, app_id: i64, model_id: i64, path: &Path, sha256: Option<&str>, mode: &str) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO links (app_id, model_id, path, sha256, mode, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (path) DO UPDATE SET app_id = ?1, model_id = ?2, sha256 = ?4, mode = ?5",
                params![app_id, model_id, path_str(path), sha256, mode, now_secs()],
            )
            .map_err(self.err())?;
        Ok(())
    }

    pub fn links_of_app(&self, app_id: i64) -> Result<Vec<LinkRecord>> {
        self.query_links("SELECT id, app_id, model_id, path, sha256, mode FROM links WHERE app_id = ?1", app_id)
    }

    pub fn all_links(&self) -> Result<Vec<LinkRecord>> {
        self.query_links("SELECT id, app_id, model_id, path, sha256, mode FROM links WHERE ?1 = ?1", 0)
    }

    fn query_links(&self, sql: &str, key: i64) -> Result<Vec<LinkRecord>> {
        let mut stmt = self.conn.prepare(sql).map_err(self.err())?;
        let rows = stmt
            .query_map([key], |r| {
                Ok(LinkRecord {
                    id: r.get(0)?,
                    app_id: r.get(1)?,
                    model_id: r.get(2)?,
                    path: PathBuf::from(r.get::<_, String>(3)?),
                    sha256: r.get(4)?,
                    mode: r.get(5)?,
                })
            })
            .map_err(self.err())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.err())
    }

    pub fn delete_link(&self, link_id: i64) -> Result<()> {
        self.conn.execute("DELETE FROM links WHERE id = ?1", [link_id]).map_err(self.err())?;
        Ok(())
    }

    /// A cached sha256 for a file that does not carry it in its name, valid while (dev, ino, size, mtime) match.
    pub fn cached_hash(&self, path: &Path, key: (u64, u64, u64, i64)) -> Result<Option<String>> {
        self.conn
            .query_row(
                "SELECT sha256 FROM file_hashes WHERE path = ?1 AND dev = ?2 AND ino = ?3 AND size = ?4 AND mtime_ns = ?5",
                params![path_str(path), key.0 as i64, key.1 as i64, key.2 as i64, key.3],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.err())
    }

    pub fn cache_hash(&self, path: &Path, key: (u64, u64, u64, i64), sha256: &str) -> Result<()> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO file_hashes (path, dev, ino, size, mtime_ns, sha256) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![path_str(path), key.0 as i64, key.1 as i64, key.2 as i64, key.3, sha256],
            )
            .map_err(self.err())?;
        Ok(())
    }
}

fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

fn model_from_row(r: &Row) -> rusqlite::Result<ModelRecord> {
    Ok(ModelRecord {
        id: r.get("id")?,
        name: r.get("name")?,
        origin: Origin::parse(&r.get::<_, String>("origin")?),
        source: r.get("source")?,
        format: r.get("format")?,
        quantization: r.get("quantization")?,
        architecture: r.get("architecture")?,
        revision: r.get("revision")?,
        size: r.get::<_, i64>("size")? as u64,
        entry: PathBuf::from(r.get::<_, String>("entry")?),
        added_at: r.get("added_at")?,
        last_used: r.get("last_used")?,
    })
}

fn app_from_row(r: &Row) -> rusqlite::Result<AppRecord> {
    Ok(AppRecord {
        id: r.get(0)?,
        name: r.get(1)?,
        path: PathBuf::from(r.get::<_, String>(2)?),
        model_dir: PathBuf::from(r.get::<_, String>(3)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Connections opening a fresh store at the same moment (as concurrent `hearth` processes do)
    /// all succeed: none sees "database is locked" while another switches the file to WAL.
    #[test]
    fn concurrent_opens_of_a_fresh_store_all_succeed() {
        for round in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("registry.db");
            let start = std::sync::Arc::new(std::sync::Barrier::new(8));
            let openers: Vec<_> = (0..8)
                .map(|_| {
                    let (path, start) = (path.clone(), start.clone());
                    std::thread::spawn(move || {
                        start.wait();
                        Registry::open(&path).map(|r| r.schema_version())
                    })
                })
                .collect();
            for o in openers {
                let version = o.join().expect("opener thread").unwrap_or_else(|e| panic!("round {round}: {e}"));
                assert_eq!(version.expect("schema version"), MIGRATIONS.len());
            }
        }
    }

    #[test]
    fn migrations_run_once_and_reopen_is_a_no_op() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("r.db");
        let r = Registry::open(&db).unwrap();
        assert_eq!(r.schema_version().unwrap(), MIGRATIONS.len());
        drop(r);
        let r = Registry::open(&db).unwrap();
        assert_eq!(r.schema_version().unwrap(), MIGRATIONS.len());
        let mode: String = r.conn.query_row("PRAGMA journal_mode", [], |row| row.get(0)).unwrap();
        assert_eq!(mode, "wal");
    }
}
