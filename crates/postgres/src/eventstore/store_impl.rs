//! The [`EventStore`] implementation: each operation in its own short transaction.

use super::*;

impl PgEventStore {
    /// One round trip when nothing is in the way: the function `es_append` locks the stream,
    /// checks, inserts and commits in one statement (an implicit transaction). When it
    /// declines — a deleted stream, a stored id, a version the expectation does not admit — the
    /// general path decides the answer (an error, or the stored batch's result), so the
    /// idempotency rules stay in `plan_append`.
    async fn append_once(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: &[NewEvent],
    ) -> Result<AppendResult, Error> {
        let mut client = self.pool.get().await.map_err(unavailable)?;
        if let Some(result) = self.append_fast(&client, stream, expected, events).await? {
            return Ok(result);
        }
        let tx = client.transaction().await.map_err(pg)?;
        let result = self.append_in(&tx, stream, expected, events).await?;
        tx.commit().await.map_err(pg)?;
        Ok(result)
    }

    async fn append_fast(
        &self,
        client: &deadpool_postgres::Client,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: &[NewEvent],
    ) -> Result<Option<AppendResult>, Error> {
        let (kind, version): (i16, i64) = match expected {
            ExpectedVersion::Any => (0, 0),
            ExpectedVersion::NoStream => (1, 0),
            ExpectedVersion::StreamExists => (2, 0),
            ExpectedVersion::Exact(v) => (3, clamp(v)),
        };
        let cols = Columns::of(events)?;
        let stmt = client.prepare_cached(&self.sql.append).await.map_err(pg)?;
        let (name, category) = (stream.as_str(), stream.category());
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 9] = [
            &name,
            &category,
            &self.stream_seed,
            &kind,
            &version,
            &cols.ids,
            &cols.types,
            &cols.data,
            &cols.metadata,
        ];
        let row = match client.query_one(&stmt, &params).await {
            Ok(row) => row,
            // An id of the batch is stored already (or being stored by a concurrent append
            // to another stream, which committed): the general path answers.
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) => {
                return Ok(None);
            }
            Err(e) => return Err(pg(e)),
        };
        if !row.try_get::<_, bool>(0).map_err(pg)? {
            return Ok(None);
        }
        let first = row.try_get::<_, i64>(1).map_err(pg)? as u64;
        Ok(Some(AppendResult {
            first_version: first,
            last_version: first + events.len() as u64 - 1,
            last_position: row.try_get::<_, i64>(2).map_err(pg)? as u64,
        }))
    }
}

#[async_trait]
impl EventStore for PgEventStore {
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, Error> {
        validate_batch(&events)?;
        // Once more on a retryable failure: the only one an append meets in normal operation
        // is a concurrent append to another stream storing one of the same event ids first,
        // and the second attempt answers it as the contract says.
        let result = match self.append_once(stream, expected, &events).await {
            Err(Error::Storage {
                retryable: true, ..
            }) => self.append_once(stream, expected, &events).await?,
            other => other?,
        };
        self.announce();
        Ok(result)
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        read: ReadStream,
    ) -> Result<Vec<RecordedEvent>, Error> {
        validate_limit(read.limit)?;
        // One snapshot for the deletion check and the rows.
        let mut client = self.pool.get().await.map_err(unavailable)?;
        let tx = client.transaction().await.map_err(pg)?;
        self.live_version(&tx, stream).await?;
        let sql = match read.direction {
            Direction::Forward => &self.sql.read_forward,
            Direction::Backward => &self.sql.read_backward,
        };
        let stmt = tx.prepare_cached(sql).await.map_err(pg)?;
        let params = (stream.as_str(), clamp(read.from), clamp(read.limit as u64));
        let rows = tx
            .query(&stmt, &[&params.0, &params.1, &params.2])
            .await
            .map_err(pg)?;
        rows.iter().map(sql::event).collect()
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<Option<Version>, Error> {
        let mut client = self.pool.get().await.map_err(unavailable)?;
        let tx = client.transaction().await.map_err(pg)?;
        self.live_version(&tx, stream).await
    }

    async fn read_all(&self, read: ReadAll) -> Result<Vec<RecordedEvent>, Error> {
        validate_limit(read.limit)?;
        self.read_bounded(&read).await
    }

    async fn delete_stream(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
    ) -> Result<(), Error> {
        let mut client = self.pool.get().await.map_err(unavailable)?;
        let tx = client.transaction().await.map_err(pg)?;
        // Under the stream's append lock, so no append can land between the check and the
        // delete.
        tx.execute(
            &self.sql.stream_lock,
            &[&stream.as_str(), &self.stream_seed],
        )
        .await
        .map_err(pg)?;
        let state = self.stream_state(&tx, stream).await?;
        if state.deleted {
            return Ok(());
        }
        if !expected.admits(state.version) {
            return Err(Error::WrongExpectedVersion {
                stream: stream.clone(),
                expected,
                actual: state.version,
            });
        }
        let s = stream.as_str();
        tx.execute(&self.sql.delete, &[&s]).await.map_err(pg)?;
        tx.execute(&self.sql.drop_snapshot, &[&s])
            .await
            .map_err(pg)?;
        tx.commit().await.map_err(pg)
    }

    async fn truncate_stream(&self, stream: &StreamId, before: Version) -> Result<u64, Error> {
        let mut client = self.pool.get().await.map_err(unavailable)?;
        let tx = client.transaction().await.map_err(pg)?;
        let s = stream.as_str();
        // Under the stream's lock, the row first takes the version of the last event, which
        // the delete may remove: the stream's version does not change.
        tx.execute(&self.sql.stream_lock, &[&s, &self.stream_seed])
            .await
            .map_err(pg)?;
        tx.execute(&self.sql.keep_version, &[&s])
            .await
            .map_err(pg)?;
        let n = tx
            .execute(&self.sql.truncate, &[&s, &clamp(before)])
            .await
            .map_err(pg)?;
        tx.commit().await.map_err(pg)?;
        Ok(n)
    }

    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<(), Error> {
        let mut client = self.pool.get().await.map_err(unavailable)?;
        let tx = client.transaction().await.map_err(pg)?;
        check_snapshot_version(&snapshot, self.live_version(&tx, &snapshot.stream).await?)?;
        let params = (snapshot.stream.as_str(), snapshot.version as i64);
        tx.execute(
            &self.sql.save_snapshot,
            &[&params.0, &params.1, &snapshot.state],
        )
        .await
        .map_err(pg)?;
        tx.commit().await.map_err(pg)
    }

    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>, Error> {
        let mut client = self.pool.get().await.map_err(unavailable)?;
        let tx = client.transaction().await.map_err(pg)?;
        self.live_version(&tx, stream).await?;
        let row = tx
            .query_opt(&self.sql.load_snapshot, &[&stream.as_str()])
            .await
            .map_err(pg)?;
        Ok(row.map(|r| Snapshot {
            stream: stream.clone(),
            version: r.get::<_, i64>(0) as u64,
            state: r.get(1),
        }))
    }

    async fn list_streams(
        &self,
        after: Option<&StreamId>,
        limit: usize,
    ) -> Result<Vec<StreamInfo>, Error> {
        validate_limit(limit)?;
        let client = self.pool.get().await.map_err(unavailable)?;
        let after = after.map_or("", |a| a.as_str());
        let rows = client
            .query(&self.sql.list_streams, &[&after, &clamp(limit as u64)])
            .await
            .map_err(pg)?;
        rows.iter()
            .map(|r| {
                let version: i64 = r.try_get(1).map_err(pg)?;
                Ok(StreamInfo {
                    stream: StreamId::new(r.try_get::<_, String>(0).map_err(pg)?)
                        .map_err(Error::storage)?,
                    version: (version > 0).then_some(version as u64),
                    deleted: r.try_get(2).map_err(pg)?,
                })
            })
            .collect()
    }

    async fn list_checkpoints(&self) -> Result<Vec<(String, Position)>, Error> {
        let client = self.pool.get().await.map_err(unavailable)?;
        let rows = client
            .query(&self.sql.list_checkpoints, &[])
            .await
            .map_err(pg)?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get(0).map_err(pg)?,
                    r.try_get::<_, i64>(1).map_err(pg)? as u64,
                ))
            })
            .collect()
    }

    async fn load_checkpoint(&self, subscriber: &str) -> Result<Option<Position>, Error> {
        validate_subscriber(subscriber)?;
        let client = self.pool.get().await.map_err(unavailable)?;
        let row = client
            .query_opt(&self.sql.load_checkpoint, &[&subscriber])
            .await
            .map_err(pg)?;
        Ok(row.map(|r| r.get::<_, i64>(0) as u64))
    }

    async fn save_checkpoint(&self, subscriber: &str, position: Position) -> Result<(), Error> {
        validate_subscriber(subscriber)?;
        let client = self.pool.get().await.map_err(unavailable)?;
        client
            .execute(&self.sql.save_checkpoint, &[&subscriber, &clamp(position)])
            .await
            .map_err(pg)?;
        Ok(())
    }

    fn head(&self) -> watch::Receiver<Position> {
        self.head.subscribe()
    }
}
