//! Declaring and deleting groups, and what `topics` / `groups` report.

use std::collections::BTreeMap;

use flotilla_bus::{Error as BusError, GroupInfo, GroupName, GroupSpec, TopicInfo};
use flotilla_core::{TopicName, TopicPattern};
use futures_util::StreamExt;

use crate::NatsBackend;
use crate::codec::{consumer_for, group_of_consumer, replay_consumer_for};
use crate::topology::{dlq_subject, replay_subject, topic_of};

impl NatsBackend {
    pub(crate) async fn declare(&self, spec: &GroupSpec) -> Result<(), BusError> {
        let filter = self.filter_for(&spec.pattern);
        match self.declared_filter(&spec.name).await {
            Ok(existing) if existing != filter => Err(BusError::Conflict(format!(
                "group {} is declared on another pattern (consumer filter {existing})",
                spec.name
            ))),
            Ok(_) => Ok(()),
            Err(BusError::NotFound { .. }) => {
                let c = self.open(&spec.name, filter).await?;
                self.cache(&spec.name, c);
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    pub(crate) async fn delete(&self, group: &GroupName) -> Result<(), BusError> {
        self.forget(group);
        for name in [consumer_for(group), replay_consumer_for(group)] {
            match self.inner.stream.delete_consumer(&name).await {
                Ok(_) => {}
                Err(e) if e.to_string().contains("not found") => {}
                Err(e) => return Err(BusError::Unavailable(format!("NATS delete consumer: {e}"))),
            }
        }
        self.purge_subject(dlq_subject(&self.inner.opts, group))
            .await?;
        self.purge_subject(replay_subject(&self.inner.opts, group))
            .await?;
        Ok(())
    }

    /// Message counts per subject under `filter`.
    async fn subject_counts(&self, filter: String) -> Result<BTreeMap<String, u64>, BusError> {
        let err =
            |e: &dyn std::fmt::Display| BusError::Unavailable(format!("NATS stream info: {e}"));
        let mut subjects = self
            .inner
            .stream
            .info_with_subjects(filter)
            .await
            .map_err(|e| err(&e))?;
        let mut out = BTreeMap::new();
        while let Some(item) = subjects.next().await {
            let (subject, n) = item.map_err(|e| err(&e))?;
            out.insert(subject, n as u64);
        }
        Ok(out)
    }

    pub(crate) async fn list_topics(&self) -> Result<Vec<TopicInfo>, BusError> {
        let counts = self
            .subject_counts(format!("{}.ev.>", self.inner.opts.prefix))
            .await?;
        let topics = counts.into_iter().filter_map(|(subject, published)| {
            let name = TopicName::new(topic_of(&self.inner.opts, &subject, "ev")?).ok()?;
            Some(TopicInfo { name, published })
        });
        Ok(topics.collect())
    }

    pub(crate) async fn list_groups(&self) -> Result<Vec<GroupInfo>, BusError> {
        let mut consumers = self.inner.stream.consumers();
        let mut out = Vec::new();
        while let Some(info) = consumers.next().await {
            let info = info.map_err(|e| BusError::Unavailable(format!("NATS consumers: {e}")))?;
            let Some(name) = group_of_consumer(&info.name) else {
                continue;
            };
            let Some(pattern) = topic_of(&self.inner.opts, &info.config.filter_subject, "ev")
                .and_then(|p| TopicPattern::new(p).ok())
            else {
                continue;
            };
            let dlq = dlq_subject(&self.inner.opts, &name);
            let dead_letters = self.subject_counts(dlq).await?.values().sum();
            out.push(GroupInfo {
                spec: GroupSpec { name, pattern },
                pending: info.num_pending + info.num_ack_pending as u64,
                dead_letters,
            });
        }
        out.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
        Ok(out)
    }
}
