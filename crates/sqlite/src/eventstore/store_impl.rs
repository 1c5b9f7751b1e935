//! The [`EventStore`] implementation: writes as writer jobs, reads on the read pool.

use super::append::Append;
use super::*;

#[async_trait]
impl EventStore for SqliteEventStore {
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, Error> {
        validate_batch(&events)?;
        let append = Append::new(stream.clone(), expected, events)?;
        let result = self
            .db
            .writer()
            .write_merged(append)
            .await
            .map_err(|e| e.error)?;
        self.advance_head(result.last_position);
        Ok(result)
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        read: ReadStream,
    ) -> Result<Vec<RecordedEvent>, Error> {
        validate_limit(read.limit)?;
        let s = stream.clone();
        self.read(move |c| read_stream_rows(c, &s, read, rows::event))
            .await
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<Option<Version>, Error> {
        let s = stream.clone();
        self.read(move |c| live_version(c, &s)).await
    }

    async fn read_all(&self, read: ReadAll) -> Result<Vec<RecordedEvent>, Error> {
        validate_limit(read.limit)?;
        self.read(move |c| read_all_rows(c, &read, rows::event))
            .await
    }

    async fn delete_stream(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
    ) -> Result<(), Error> {
        let s = stream.clone();
        self.write(move |c| {
            let state = rows::stream_state(c, &s).map_err(db)?;
            if state.deleted {
                return Ok(());
            }
            if !expected.admits(state.version) {
                return Err(Error::WrongExpectedVersion {
                    stream: s,
                    expected,
                    actual: state.version,
                });
            }
            c.execute(
                "INSERT INTO es_streams (stream, version, deleted) VALUES (?1, 0, 1) \
                     ON CONFLICT (stream) DO UPDATE SET deleted = 1",
                [s.as_str()],
            )
            .and_then(|_| c.execute("DELETE FROM es_snapshots WHERE stream = ?1", [s.as_str()]))
            .map_err(db)?;
            Ok(())
        })
        .await
    }

    async fn truncate_stream(&self, stream: &StreamId, before: Version) -> Result<u64, Error> {
        let s = stream.clone();
        self.write(move |c| {
            c.execute(
                "DELETE FROM es_events WHERE stream = ?1 AND version < ?2",
                params![s.as_str(), clamp(before)],
            )
            .map(|n| n as u64)
            .map_err(db)
        })
        .await
    }

    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<(), Error> {
        self.write(move |c| {
            check_snapshot_version(&snapshot, live_version(c, &snapshot.stream)?)?;
            c.execute(
                "INSERT INTO es_snapshots (stream, version, state) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (stream) DO UPDATE SET version = excluded.version, \
                     state = excluded.state",
                params![
                    snapshot.stream.as_str(),
                    snapshot.version as i64,
                    snapshot.state.to_string()
                ],
            )
            .map_err(db)?;
            Ok(())
        })
        .await
    }

    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>, Error> {
        let s = stream.clone();
        self.read(move |c| {
            live_version(c, &s)?;
            let row = c
                .prepare_cached("SELECT version, state FROM es_snapshots WHERE stream = ?1")
                .and_then(|mut st| {
                    st.query_row([s.as_str()], |r| {
                        Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
                    })
                    .optional()
                })
                .map_err(db)?;
            let Some((version, state)) = row else {
                return Ok(None);
            };
            let state = serde_json::from_str(&state).map_err(Error::storage)?;
            Ok(Some(Snapshot {
                stream: s,
                version: version as u64,
                state,
            }))
        })
        .await
    }

    async fn list_streams(
        &self,
        after: Option<&StreamId>,
        limit: usize,
    ) -> Result<Vec<StreamInfo>, Error> {
        validate_limit(limit)?;
        let after = after.map_or_else(String::new, |a| a.as_str().to_owned());
        self.read(move |c| {
            let mut st = c
                .prepare_cached(
                    "SELECT stream, version, deleted FROM es_streams WHERE stream > ?1 \
                     ORDER BY stream LIMIT ?2",
                )
                .map_err(db)?;
            let rows = st.query_map(params![after, clamp(limit as u64)], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, bool>(2)?,
                ))
            });
            let rows: Vec<_> = rows.and_then(Iterator::collect).map_err(db)?;
            rows.into_iter()
                .map(|(s, v, deleted)| stream_info(s, v, deleted))
                .collect()
        })
        .await
    }

    async fn list_checkpoints(&self) -> Result<Vec<(String, Position)>, Error> {
        self.read(|c| {
            let mut st = c
                .prepare_cached(
                    "SELECT subscriber, position FROM es_checkpoints ORDER BY subscriber",
                )
                .map_err(db)?;
            let rows = st.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)));
            rows.and_then(Iterator::collect).map_err(db)
        })
        .await
    }

    async fn load_checkpoint(&self, subscriber: &str) -> Result<Option<Position>, Error> {
        validate_subscriber(subscriber)?;
        let name = subscriber.to_owned();
        self.read(move |c| {
            c.prepare_cached("SELECT position FROM es_checkpoints WHERE subscriber = ?1")
                .and_then(|mut st| st.query_row([&name], |r| r.get::<_, i64>(0)).optional())
                .map(|p| p.map(|p| p as u64))
                .map_err(db)
        })
        .await
    }

    async fn save_checkpoint(&self, subscriber: &str, position: Position) -> Result<(), Error> {
        validate_subscriber(subscriber)?;
        let name = subscriber.to_owned();
        self.write(move |c| {
            c.execute(
                "INSERT INTO es_checkpoints (subscriber, position) VALUES (?1, ?2) \
                     ON CONFLICT (subscriber) DO UPDATE SET position = excluded.position",
                params![name, clamp(position)],
            )
            .map(|_| ())
            .map_err(db)
        })
        .await
    }

    fn head(&self) -> watch::Receiver<Position> {
        self.head.subscribe()
    }
}
