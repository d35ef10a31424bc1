//! The embedded SQLite back end.

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Sqlite, Transaction};

use super::{migrate, sql, StoreError, StoreResult};

/// Connections in the pool. WAL lets readers run beside the one writer; more
/// connections than this only queue on SQLite's single write lock.
const MAX_CONNECTIONS: u32 = 8;

/// How long a writer waits for SQLite's write lock before failing. Writes are short
/// (single rows), so hitting this means something is badly wrong.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A SQLite database file (or an in-memory database for throwaway runs).
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pub(crate) pool: SqlitePool,
}

impl SqliteStore {
    /// Opens `url` (`sqlite://path`, `sqlite:path`, `sqlite::memory:`), creating the
    /// file and its directory when missing, and applies migrations.
    pub async fn open(url: &str) -> StoreResult<SqliteStore> {
        let options = SqliteConnectOptions::from_str(url).map_err(|e| StoreError::BadUrl {
            url: url.to_owned(),
            problem: e.to_string(),
        })?;
        // An in-memory database lives only as long as a connection to it, and each
        // connection would otherwise see its own: keep exactly one, forever.
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        Self::open_with(options, in_memory).await
    }

    /// Opens the database file at `path`, creating it (and its directory) if missing.
    pub async fn open_path(path: &std::path::Path) -> StoreResult<SqliteStore> {
        Self::open_with(SqliteConnectOptions::new().filename(path), false).await
    }

    async fn open_with(options: SqliteConnectOptions, in_memory: bool) -> StoreResult<SqliteStore> {
        if !in_memory {
            if let Some(dir) = options.get_filename().parent() {
                if !dir.as_os_str().is_empty() {
                    std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
                        path: dir.display().to_string(),
                        source,
                    })?;
                }
            }
        }
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // NORMAL in WAL mode (DESIGN.md): a committed record survives any
            // crash of the process; only a power cut can lose the last commits.
            // FULL fsyncs every commit: ~5 ms each on this class of disk, i.e.
            // under 200 commits/s, while records take about four per call, so
            // at 100 calls/s the record writer would fall behind for good.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        let pool_options = if in_memory {
            SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
        } else {
            // A local file does not drop connections: no ping (a round trip
            // to the connection's worker thread) before every query.
            SqlitePoolOptions::new()
                .max_connections(MAX_CONNECTIONS)
                .test_before_acquire(false)
        };
        let pool = pool_options.connect_with(options).await?;
        migrate::migrator(migrate::SQLITE).await?.run(&pool).await?;
        Ok(SqliteStore { pool })
    }

    /// Closes every connection (checkpointing the WAL).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// A transaction that holds SQLite's write lock from its first statement.
    /// A deferred transaction that reads first and writes later can fail with
    /// `SQLITE_BUSY_SNAPSHOT` in WAL mode when another connection commits in between;
    /// `BEGIN IMMEDIATE` waits (busy timeout) instead. `_key` is unused: SQLite has one
    /// write lock per database.
    pub(crate) async fn write_tx(&self, _key: &str) -> StoreResult<Transaction<'static, Sqlite>> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }
}

sql::impl_store!(SqliteStore, sqlx::sqlite::SqliteRow);
