//! Runs one test body against each store back end, isolated from every other test.
//!
//! - SQLite: a fresh database file in its own temporary directory.
//! - PostgreSQL: the server at `SOFTSWITCH_TEST_PG_URL` (default
//!   `postgres://postgres@127.0.0.1:5432/test`); each test gets its own schema
//!   `t_<random hex>`, reached through `search_path`, dropped afterwards. If the server
//!   is down the PostgreSQL tests fail (they never skip), saying how to fix it.
//!
//! A test body receives a [`TestDb`] and may open the same database several times
//! (e.g. to check that migrations are idempotent on reopen).

#![allow(dead_code)]

use std::future::Future;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use rand::RngCore;
use softswitch::store::{AnyStore, PgStore, SqliteStore};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};

pub const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// One test's private database.
#[derive(Clone, Debug)]
pub enum TestDb {
    Sqlite {
        path: PathBuf,
        // Keeps the directory alive until every clone is dropped.
        _dir: Arc<tempfile::TempDir>,
    },
    Postgres {
        options: Box<PgConnectOptions>,
        schema: String,
    },
}

impl TestDb {
    /// Opens (and migrates) the test's database.
    pub async fn open(&self) -> AnyStore {
        match self {
            TestDb::Sqlite { path, .. } => AnyStore::Sqlite(
                SqliteStore::open(&format!("sqlite://{}", path.display()))
                    .await
                    .unwrap(),
            ),
            TestDb::Postgres { options, .. } => {
                AnyStore::Postgres(PgStore::connect_with((**options).clone()).await.unwrap())
            }
        }
    }

    pub fn backend(&self) -> Backend {
        match self {
            TestDb::Sqlite { .. } => Backend::Sqlite,
            TestDb::Postgres { .. } => Backend::Postgres,
        }
    }
}

fn pg_url() -> String {
    std::env::var("SOFTSWITCH_TEST_PG_URL").unwrap_or_else(|_| DEFAULT_PG_URL.to_owned())
}

fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    rand::rngs::OsRng.fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

async fn pg_admin(url: &str) -> sqlx::PgConnection {
    match PgConnectOptions::from_str(url) {
        Ok(o) => match o.connect().await {
            Ok(c) => c,
            Err(e) => panic!(
                "PostgreSQL tests need a server at {url} (set SOFTSWITCH_TEST_PG_URL to \
                 another one): cannot connect: {e}"
            ),
        },
        Err(e) => panic!("SOFTSWITCH_TEST_PG_URL={url:?} is not a PostgreSQL URL: {e}"),
    }
}

/// Runs `test` against a fresh database of `backend`, then removes the database even
/// if the test panicked (the panic is then re-raised).
pub async fn run<F, Fut>(backend: Backend, test: F)
where
    F: FnOnce(TestDb) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().unwrap();
            let db = TestDb::Sqlite {
                path: dir.path().join("data").join("softswitch.db"),
                _dir: Arc::new(dir),
            };
            let outcome = tokio::spawn(test(db)).await;
            if let Err(e) = outcome {
                std::panic::resume_unwind(e.into_panic());
            }
        }
        Backend::Postgres => {
            let url = pg_url();
            let mut admin = pg_admin(&url).await;
            let schema = format!("t_{}", random_hex(8));
            sqlx::query(&format!("CREATE SCHEMA {schema}"))
                .execute(&mut admin)
                .await
                .unwrap();
            let options = PgConnectOptions::from_str(&url)
                .unwrap()
                .options([("search_path", schema.as_str())]);
            let db = TestDb::Postgres {
                options: Box::new(options),
                schema: schema.clone(),
            };
            let outcome = tokio::spawn(test(db)).await;
            // Pools opened by the test may still be closing; CASCADE does not need
            // them gone, only that they hold no locks, which idle connections don't.
            sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
                .execute(&mut admin)
                .await
                .unwrap();
            admin.close().await.ok();
            if let Err(e) = outcome {
                std::panic::resume_unwind(e.into_panic());
            }
        }
    }
}

/// Instantiates each named `async fn name(db: TestDb)` of the enclosing module as a
/// test against both back ends: `sqlite::name` and `postgres::name`.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    use $crate::store_harness::{run, Backend};
                    run(Backend::Sqlite, super::$name).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    use $crate::store_harness::{run, Backend};
                    run(Backend::Postgres, super::$name).await;
                }
            )*
        }
    };
}
