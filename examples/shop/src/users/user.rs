//! The `User` aggregate: one stream per user (`user-<id>`), so accounts survive restarts.

use flotilla::eventsourcing::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

/// A user as its stream says.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct User {
    /// Whether `UserCreated` was recorded.
    pub exists: bool,
    /// Whether `UserDeleted` was recorded.
    pub deleted: bool,
    /// Display name.
    pub name: String,
    /// Contact address.
    pub email: String,
}

/// What a caller asks of a user.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Opens the account.
    Create {
        /// Display name.
        name: String,
        /// Contact address.
        email: String,
    },
    /// Changes the given fields.
    Update {
        /// New display name.
        name: Option<String>,
        /// New contact address.
        email: Option<String>,
    },
    /// Closes the account.
    Delete,
}

/// What a user's stream records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Event {
    /// The account was opened.
    UserCreated {
        /// Display name.
        name: String,
        /// Contact address.
        email: String,
    },
    /// Fields changed (the new values).
    UserUpdated {
        /// Display name.
        name: String,
        /// Contact address.
        email: String,
    },
    /// The account was closed.
    UserDeleted,
}

impl DomainEvent for Event {
    fn event_type(&self) -> &'static str {
        match self {
            Event::UserCreated { .. } => "UserCreated",
            Event::UserUpdated { .. } => "UserUpdated",
            Event::UserDeleted => "UserDeleted",
        }
    }
}

/// Why a command is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// Create on an id that exists.
    #[error("the user already exists")]
    Exists,
    /// Anything else on an id that does not exist (or was deleted).
    #[error("no such user")]
    NotFound,
}

impl User {
    /// Whether the user can be read.
    pub fn live(&self) -> bool {
        self.exists && !self.deleted
    }
}

impl Aggregate for User {
    const CATEGORY: &'static str = "user";
    type Command = Command;
    type Event = Event;
    type Error = Refused;

    fn decide(&self, command: &Command) -> Result<Vec<Event>, Refused> {
        match command {
            Command::Create { .. } if self.exists => Err(Refused::Exists),
            Command::Create { name, email } => Ok(vec![Event::UserCreated {
                name: name.clone(),
                email: email.clone(),
            }]),
            _ if !self.live() => Err(Refused::NotFound),
            Command::Update { name, email } => {
                let name = name.clone().unwrap_or_else(|| self.name.clone());
                let email = email.clone().unwrap_or_else(|| self.email.clone());
                let unchanged = name == self.name && email == self.email;
                Ok(match unchanged {
                    true => vec![],
                    false => vec![Event::UserUpdated { name, email }],
                })
            }
            Command::Delete => Ok(vec![Event::UserDeleted]),
        }
    }

    fn evolve(mut self, event: &Event) -> Self {
        match event {
            Event::UserCreated { name, email } | Event::UserUpdated { name, email } => {
                self.exists = true;
                self.name = name.clone();
                self.email = email.clone();
            }
            Event::UserDeleted => self.deleted = true,
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use flotilla::eventsourcing::aggregate::testing::given;

    use super::*;

    fn created() -> Event {
        Event::UserCreated {
            name: "Ada".into(),
            email: "ada@example.com".into(),
        }
    }

    #[test]
    fn an_update_that_changes_nothing_records_nothing() {
        let same = Command::Update {
            name: Some("Ada".into()),
            email: None,
        };
        given::<User>([created()]).when(same).then([]);
    }

    #[test]
    fn a_deleted_user_cannot_be_updated() {
        let update = Command::Update {
            name: Some("Bea".into()),
            email: None,
        };
        given::<User>([created(), Event::UserDeleted])
            .when(update)
            .then_refused(|e| *e == Refused::NotFound);
    }
}
