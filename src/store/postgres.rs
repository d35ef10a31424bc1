//! The PostgreSQL back end.

use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Postgres, Transaction};

use super::{migrate, sql, StoreError, StoreResult};

/// Connections in the pool: enough for the call layer and the HTTP handlers to run
/// side by side without holding many server backends per switch node.
const MAX_CONNECTIONS: u32 = 10;

/// A PostgreSQL database (its `search_path` decides the schema).
#[derive(Debug, Clone)]
pub struct PgStore {
    pub(crate) pool: PgPool,
}

impl PgStore {
    /// Connects to `url` (`postgres://user@host[:port]/db`) and applies migrations.
    pub async fn open(url: &str) -> StoreResult<PgStore> {
        let options = PgConnectOptions::from_str(url).map_err(|e| StoreError::BadUrl {
            url: url.to_owned(),
            problem: e.to_string(),
        })?;
        Self::connect_with(options).await
    }

    /// Connects with explicit options (e.g. a `search_path` set through
    /// [`PgConnectOptions::options`], which is how the tests give each test its own
    /// schema) and applies migrations.
    pub async fn connect_with(options: PgConnectOptions) -> StoreResult<PgStore> {
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .connect_with(options)
            .await?;
        migrate::migrator(migrate::POSTGRES)
            .await?
            .run(&pool)
            .await?;
        Ok(PgStore { pool })
    }

    /// Closes every connection.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// A transaction holding a transaction-scoped advisory lock on `key`, so a
    /// check-then-write (rate limit, login replacement, finalize) runs one at a time
    /// per key even under READ COMMITTED. The lock is released at commit or rollback.
    pub(crate) async fn write_tx(&self, key: &str) -> StoreResult<Transaction<'static, Postgres>> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind(key)
            .execute(&mut *tx)
            .await?;
        Ok(tx)
    }
}

sql::impl_store!(PgStore, sqlx::postgres::PgRow);
