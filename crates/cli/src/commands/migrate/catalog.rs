//! The registry catalog's copy: every stored entry put into the target under the source's
//! last index (a put is an upsert, so a re-run changes nothing).

use anyhow::Context as _;
use flotilla_discovery::catalog::{CatalogStore, StoredCatalog};

pub(super) async fn copy(source: &StoredCatalog, target: &dyn CatalogStore) -> anyhow::Result<()> {
    for entry in &source.entries {
        let what = format!("{}/{}", entry.service, entry.id);
        target
            .put(entry.clone(), source.index)
            .await
            .with_context(|| format!("cannot put catalog entry {what} on the target"))?;
    }
    Ok(())
}
