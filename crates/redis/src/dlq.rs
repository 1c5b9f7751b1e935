//! The dead-letter queue: one stream (`<prefix>:dlq`) whose entry ids order by
//! dead-lettering time, plus the group listing and topic counts.

use flotilla_bus::{
    DeadLetter, DlqQuery, Error as BusError, GroupInfo, GroupName, GroupSpec, TopicInfo,
};
use flotilla_core::{TopicName, TopicPattern};
use redis::{AsyncCommands, Value};

use crate::RedisBackend;
use crate::codec::{array, dead_letter};
use crate::error::bus_error;
use crate::scripts::{PURGE, REPLAY};

const DEFAULT_LIMIT: usize = 100;
const PAGE: usize = 500;

impl RedisBackend {
    fn dlq_key(&self) -> String {
        format!("{}:dlq", self.prefix())
    }

    pub(crate) async fn list_dead_letters(
        &self,
        q: &DlqQuery,
    ) -> Result<Vec<DeadLetter>, BusError> {
        let limit = if q.limit == 0 { DEFAULT_LIMIT } else { q.limit };
        let mut from = q.after.as_ref().map_or("-".to_owned(), |a| format!("({a}"));
        let mut out = Vec::new();
        while out.len() < limit {
            let page = self.dlq_range(&from, "+", PAGE).await?;
            let Some(last) = page.last() else { break };
            from = format!("({}", last.id);
            let wanted = page
                .into_iter()
                .filter(|d| q.group.as_ref().is_none_or(|g| &d.group == g));
            out.extend(wanted.take(limit - out.len()));
        }
        Ok(out)
    }

    async fn dlq_range(
        &self,
        from: &str,
        to: &str,
        count: usize,
    ) -> Result<Vec<DeadLetter>, BusError> {
        let mut conn = self.conn();
        let v: Value = redis::cmd("XRANGE")
            .arg(self.dlq_key())
            .arg(from)
            .arg(to)
            .arg("COUNT")
            .arg(count)
            .query_async(&mut conn)
            .await
            .map_err(bus_error)?;
        array(&v)
            .unwrap_or_default()
            .iter()
            .map(dead_letter)
            .collect()
    }

    pub(crate) async fn dead_letter_by_id(&self, id: &str) -> Result<DeadLetter, BusError> {
        let not_found = || BusError::NotFound {
            what: "dead letter",
            id: id.to_owned(),
        };
        if !is_stream_id(id) {
            return Err(not_found());
        }
        self.dlq_range(id, id, 1).await?.pop().ok_or_else(not_found)
    }

    pub(crate) async fn replay(&self, id: &str) -> Result<(), BusError> {
        if !is_stream_id(id) {
            return Err(BusError::NotFound {
                what: "dead letter",
                id: id.to_owned(),
            });
        }
        let mut conn = self.conn();
        let r: redis::RedisResult<i64> = REPLAY
            .arg(self.prefix())
            .arg(id)
            .invoke_async(&mut conn)
            .await;
        r.map(drop).map_err(bus_error)
    }

    pub(crate) async fn purge(&self, group: &GroupName, ids: &[String]) -> Result<u64, BusError> {
        let mut call = PURGE.prepare_invoke();
        call.arg(self.prefix()).arg(group.as_str());
        for id in ids.iter().filter(|id| is_stream_id(id)) {
            call.arg(id);
        }
        if !ids.is_empty() && ids.iter().all(|id| !is_stream_id(id)) {
            return Ok(0);
        }
        let mut conn = self.conn();
        let n: i64 = call.invoke_async(&mut conn).await.map_err(bus_error)?;
        Ok(n.unsigned_abs())
    }

    pub(crate) async fn list_topics(&self) -> Result<Vec<TopicInfo>, BusError> {
        let mut conn = self.conn();
        let counts: Vec<(String, u64)> = conn
            .hgetall(format!("{}:topics", self.prefix()))
            .await
            .map_err(bus_error)?;
        let mut out: Vec<TopicInfo> = counts
            .into_iter()
            .filter_map(|(t, published)| {
                Some(TopicInfo {
                    name: TopicName::new(t).ok()?,
                    published,
                })
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    pub(crate) async fn list_groups(&self) -> Result<Vec<GroupInfo>, BusError> {
        let mut conn = self.conn();
        let groups: Vec<(String, String)> = conn
            .hgetall(format!("{}:groups", self.prefix()))
            .await
            .map_err(bus_error)?;
        let mut out = Vec::with_capacity(groups.len());
        for (name, pattern) in groups {
            let (Ok(name), Ok(pattern)) = (GroupName::new(name), TopicPattern::new(pattern)) else {
                continue;
            };
            let pending: u64 = conn.xlen(self.stream_key(&name)).await.map_err(bus_error)?;
            let dead: Option<i64> = conn
                .hget(format!("{}:dlqn", self.prefix()), name.as_str())
                .await
                .map_err(bus_error)?;
            out.push(GroupInfo {
                spec: GroupSpec { name, pattern },
                pending,
                dead_letters: dead.unwrap_or(0).unsigned_abs(),
            });
        }
        out.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
        Ok(out)
    }
}

/// Stream ids are `<ms>-<seq>`; anything else is refused before it reaches Redis.
fn is_stream_id(id: &str) -> bool {
    id.split_once('-')
        .is_some_and(|(a, b)| a.parse::<u64>().is_ok() && b.parse::<u64>().is_ok())
}
