//! The product list: a hosted projection of every `product-*` stream, kept in memory and
//! rebuilt from the store at start (or through `/admin/projections`).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use flotilla::eventsourcing::projection::{BoxError, Projection};
use flotilla::eventsourcing::{Aggregate, Filter, RecordedEvent};
use serde::Serialize;

use super::product::{Event, Product};

/// A product as lists show it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ProductView {
    /// Its id.
    pub sku: String,
    /// Display name.
    pub name: String,
    /// Unit price in cents.
    pub price: u64,
    /// Units free to reserve.
    pub available: u64,
    /// Units held by reservations.
    pub reserved: u64,
    /// The stream version this view reflects (its `ETag`).
    pub version: u64,
}

impl ProductView {
    /// The view of `product` at `version`.
    pub fn of(sku: &str, product: &Product, version: u64) -> Self {
        Self {
            sku: sku.to_owned(),
            name: product.name.clone(),
            price: product.price,
            available: product.available,
            reserved: product.reserved_total(),
            version,
        }
    }
}

/// The shared read side of the projection.
#[derive(Debug, Clone, Default)]
pub struct Catalog(Arc<RwLock<BTreeMap<String, (Product, u64)>>>);

impl Catalog {
    /// Every product, by sku.
    pub fn list(&self) -> Vec<ProductView> {
        let map = self.0.read().unwrap_or_else(|p| p.into_inner());
        map.iter()
            .map(|(sku, (p, v))| ProductView::of(sku, p, *v))
            .collect()
    }
}

/// The projection feeding a [`Catalog`].
#[derive(Debug)]
pub(super) struct CatalogProjection(pub(super) Catalog);

#[async_trait]
impl Projection for CatalogProjection {
    fn name(&self) -> &str {
        "shop-inventory-catalog"
    }

    fn filter(&self) -> Filter {
        Filter::Category("product".into())
    }

    async fn apply(&mut self, e: &RecordedEvent) -> Result<(), BoxError> {
        let event: Event = serde_json::from_value(e.data.clone())?;
        let sku = e.stream.as_str().trim_start_matches("product-").to_owned();
        let mut map = self.0.0.write().unwrap_or_else(|p| p.into_inner());
        let (product, version) = map.entry(sku).or_default();
        // At-least-once delivery: an event at or below the version already folded is a repeat.
        if e.version > *version {
            *product = std::mem::take(product).evolve(&event);
            *version = e.version;
        }
        Ok(())
    }

    async fn reset(&mut self) -> Result<(), BoxError> {
        self.0.0.write().unwrap_or_else(|p| p.into_inner()).clear();
        Ok(())
    }
}
