//! Both ends of a migration: the stopped platform's SQLite database, and the engines the
//! target configuration names, opened through the same wiring `flotilla up` uses.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use flotilla_bus::Backend;
use flotilla_discovery::catalog::CatalogStore;
use flotilla_eventstore::EventStore;
use flotilla_registry::CatalogKind;
use flotilla_sqlite::bus::{BusOptions, SqliteBus};
use serde_json::json;

use crate::Failure;
use crate::platform::{BusKind, PlatformConfig, StoreKind};
use crate::wiring::backends::{self, Storage};

/// The stopped platform's data, read through the same contracts the platform serves with.
#[derive(Debug)]
pub(super) struct Source {
    pub(super) events: Arc<dyn EventStore>,
    pub(super) bus: SqliteBus,
    pub(super) catalog: Arc<dyn CatalogStore>,
    storage: Storage,
}

impl Source {
    pub(super) async fn open(data_dir: &Path) -> anyhow::Result<Self> {
        let storage = Storage::open(data_dir)?;
        let db = storage.database();
        let events = flotilla_sqlite::eventstore::SqliteEventStore::open(db.clone(), None)
            .await
            .context("cannot open the source event store")?;
        let bus =
            SqliteBus::open(db, BusOptions::default()).context("cannot open the source bus")?;
        Ok(Self {
            events: Arc::new(events),
            bus,
            catalog: storage.catalog()?,
            storage,
        })
    }
}

/// The engines the target configuration names.
#[derive(Debug)]
pub(super) struct Target {
    pub(super) events: Arc<dyn EventStore>,
    pub(super) bus: Arc<dyn Backend>,
    /// `None` when the target keeps the catalog where it is (same SQLite file).
    pub(super) catalog: Option<Arc<dyn CatalogStore>>,
}

impl Target {
    pub(super) async fn open(
        config: &PlatformConfig,
        source: &Source,
        source_dir: &Path,
    ) -> anyhow::Result<Self> {
        let mut storage = LazyStorage {
            dir: &config.storage.data_dir,
            opened: None,
        };
        let events = backends::event_store_opening(&config.eventstore, || storage.get()).await?;
        let bus = backends::bus_opening(&config.bus, || storage.get()).await?;
        let options = &config.registry.catalog;
        let catalog = match options.kind {
            CatalogKind::Sqlite if same_dir(&config.storage.data_dir, source_dir) => None,
            CatalogKind::Sqlite => Some(storage.get()?.catalog()?),
            // The other engines do not use the embedded database they are handed.
            _ => Some(backends::catalog(options, &source.storage).await?),
        };
        Ok(Self {
            events,
            bus,
            catalog,
        })
    }
}

/// The target's embedded database, opened the first time a part on SQLite needs it (a target
/// all on PostgreSQL and NATS creates no database file).
struct LazyStorage<'a> {
    dir: &'a Path,
    opened: Option<Storage>,
}

impl LazyStorage<'_> {
    fn get(&mut self) -> anyhow::Result<Storage> {
        if let Some(storage) = &self.opened {
            return Ok(storage.clone());
        }
        let storage = Storage::open(self.dir)?;
        self.opened = Some(storage.clone());
        Ok(storage)
    }
}

/// What the target configuration must be for a migration to make sense: engines that keep
/// what they are given, and nothing on the source's own SQLite file.
pub(super) fn check_target(config: &PlatformConfig, source_dir: &Path) -> Result<(), Failure> {
    backends::require_built(config).map_err(|e| Failure::Usage(e.to_string()))?;
    let same = same_dir(&config.storage.data_dir, source_dir);
    let refuse = |setting: &str, why: &str| {
        Err(Failure::Usage(format!(
            "the target configuration's {setting} {why}: name the engine to migrate to \
             (eventstore.kind = \"postgres\", bus.kind = \"nats\", ...)"
        )))
    };
    match config.eventstore.kind {
        StoreKind::Memory => return refuse("eventstore.kind = \"memory\"", "keeps nothing"),
        StoreKind::Sqlite if same => {
            return refuse("eventstore.kind = \"sqlite\"", "is the source itself");
        }
        _ => {}
    }
    match config.bus.kind {
        BusKind::Memory => return refuse("bus.kind = \"memory\"", "keeps nothing"),
        BusKind::Sqlite if same => {
            return refuse("bus.kind = \"sqlite\"", "is the source itself");
        }
        _ => {}
    }
    match config.registry.catalog.kind {
        CatalogKind::Memory => refuse("registry.catalog.kind = \"memory\"", "keeps nothing"),
        _ => Ok(()),
    }
}

/// Identifies the target in the progress file, so a run against another target starts over.
pub(super) fn fingerprint(config: &PlatformConfig) -> String {
    let catalog = &config.registry.catalog;
    json!({
        "eventstore": [config.eventstore.kind, config.eventstore.url, config.eventstore.schema],
        "bus": [config.bus.kind, config.bus.url, config.bus.prefix],
        "catalog": [catalog.kind, catalog.url, catalog.schema],
        "data_dir": config.storage.data_dir,
    })
    .to_string()
}

/// Refuses a database another process has open (a running platform holds its connections for
/// its whole life): an exclusive lock cannot be taken on a WAL database while any other
/// connection is open. The probe's connection is closed before the migration opens its own.
pub(super) fn refuse_in_use(db: &Path) -> Result<(), Failure> {
    use rusqlite::{Connection, ErrorCode, OpenFlags};
    let probe = || -> rusqlite::Result<()> {
        let conn = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
        conn.busy_timeout(std::time::Duration::ZERO)?;
        conn.pragma_update(None, "locking_mode", "EXCLUSIVE")?;
        conn.execute_batch("BEGIN EXCLUSIVE; COMMIT;")
    };
    match probe() {
        Ok(()) => Ok(()),
        Err(rusqlite::Error::SqliteFailure(f, _))
            if matches!(f.code, ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) =>
        {
            Err(Failure::Usage(format!(
                "{} is in use (is `flotilla up` still running on it?): stop the platform \
                 before migrating its data",
                db.display()
            )))
        }
        Err(e) => Err(Failure::Runtime(
            anyhow::Error::new(e).context(format!("cannot open {}", db.display())),
        )),
    }
}

pub(super) fn same_dir(a: &Path, b: &Path) -> bool {
    let canonical = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| PathBuf::from(p));
    canonical(a) == canonical(b)
}
