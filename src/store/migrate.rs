//! Schema migrations embedded in the binary.
//!
//! Instead of `sqlx::migrate!` (which needs sqlx's proc-macro crate and, with it, a
//! second build of both database drivers for the host) the SQL files are pulled in
//! with `include_str!` and handed to sqlx's own migrator through its public
//! `MigrationSource` trait. The effect is the same: versions and checksums are recorded
//! in `_sqlx_migrations`, an applied migration is skipped, an edited one is refused.
//!
//! Adding a migration = adding the file under `migrations/<backend>/` AND a line
//! below; a unit test checks that the two lists match the directories.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;

use sqlx::error::BoxDynError;
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};

/// (version, description, SQL)
type Embedded = &'static [(i64, &'static str, &'static str)];

pub(crate) const SQLITE: Embedded = &[
    (
        1,
        "init",
        include_str!("../../migrations/sqlite/0001_init.sql"),
    ),
    (
        2,
        "push",
        include_str!("../../migrations/sqlite/0002_push.sql"),
    ),
];

pub(crate) const POSTGRES: Embedded = &[
    (
        1,
        "init",
        include_str!("../../migrations/postgres/0001_init.sql"),
    ),
    (
        2,
        "push",
        include_str!("../../migrations/postgres/0002_push.sql"),
    ),
];

#[derive(Debug)]
struct Source(Embedded);

impl<'s> MigrationSource<'s> for Source {
    fn resolve(
        self,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<Migration>, BoxDynError>> + Send + 's>> {
        Box::pin(async move {
            Ok(self
                .0
                .iter()
                .map(|&(version, description, sql)| {
                    Migration::new(
                        version,
                        Cow::Borrowed(description),
                        MigrationType::Simple,
                        Cow::Borrowed(sql),
                        false,
                    )
                })
                .collect())
        })
    }
}

pub(crate) async fn migrator(
    migrations: Embedded,
) -> Result<Migrator, sqlx::migrate::MigrateError> {
    Migrator::new(Source(migrations)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &str) -> Vec<(i64, String)> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("migrations")
            .join(dir);
        let mut out: Vec<(i64, String)> = std::fs::read_dir(path)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".sql"))
            .map(|n| {
                let stem = n.trim_end_matches(".sql");
                let (v, d) = stem.split_once('_').unwrap();
                (v.parse().unwrap(), d.to_owned())
            })
            .collect();
        out.sort();
        out
    }

    fn listed(m: Embedded) -> Vec<(i64, String)> {
        m.iter().map(|&(v, d, _)| (v, d.to_owned())).collect()
    }

    #[test]
    fn every_migration_file_is_embedded() {
        assert_eq!(files("sqlite"), listed(SQLITE));
        assert_eq!(files("postgres"), listed(POSTGRES));
    }
}
