//! `$all` reads: only below the bound of the oldest transaction in flight (see the module
//! docs), waiting a little for short transactions so a read that follows an append sees it.

use tokio::time::Instant;

use super::*;

/// Longest a `read_all` waits for older transactions to finish when it can see events it may
/// not return yet. Past it the read returns what is safe; subscriptions then wait on `head`.
pub const READ_WAIT: Duration = Duration::from_secs(1);
/// The first pause between re-reads while waiting; it doubles up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(1);
const MAX_PAUSE: Duration = Duration::from_millis(32);

/// One bounded page with what the same snapshot saw.
struct Page {
    events: Vec<RecordedEvent>,
    /// Positions below this are final.
    bound: i64,
    /// The highest visible position matching the filter, bound or not.
    top: i64,
}

impl PgEventStore {
    pub(super) async fn read_bounded(&self, read: &ReadAll) -> Result<Vec<RecordedEvent>, Error> {
        let deadline = Instant::now() + READ_WAIT;
        let mut pause = FIRST_PAUSE;
        loop {
            let page = self.page(read).await?;
            if page.top < page.bound {
                self.raise_head(page.top as u64);
            }
            // Visible events the bound holds back: an older transaction is still running.
            let held_back = page.top >= page.bound && page.top > clamp(read.after);
            let full = page.events.len() >= read.limit;
            if full || !held_back || Instant::now() >= deadline {
                return Ok(page.events);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(MAX_PAUSE);
        }
    }

    async fn page(&self, read: &ReadAll) -> Result<Page, Error> {
        let (after, limit) = (clamp(read.after), clamp(read.limit as u64));
        let client = self.pool.get().await.map_err(unavailable)?;
        let rows = match &read.filter {
            Filter::All => {
                let stmt = client.prepare_cached(&self.sql.read_all).await;
                client.query(&stmt.map_err(pg)?, &[&after, &limit]).await
            }
            Filter::Category(c) => {
                let stmt = client.prepare_cached(&self.sql.read_category).await;
                let c = c.as_str();
                client
                    .query(&stmt.map_err(pg)?, &[&after, &limit, &c])
                    .await
            }
            Filter::EventType(t) => {
                let stmt = client.prepare_cached(&self.sql.read_type).await;
                let t = t.as_str();
                client
                    .query(&stmt.map_err(pg)?, &[&after, &limit, &t])
                    .await
            }
        }
        .map_err(pg)?;
        let mut page = Page {
            events: Vec::with_capacity(rows.len()),
            bound: 0,
            top: 0,
        };
        for row in &rows {
            match sql::bounded(row)? {
                sql::Bounded::Event(e) => page.events.push(*e),
                sql::Bounded::Trailer { bound, top } => (page.bound, page.top) = (bound, top),
            }
        }
        // The page comes first in practice; the order of a UNION ALL is not promised.
        page.events.sort_by_key(|e| e.position);
        Ok(page)
    }
}
