//! The users service: create, read, update and delete accounts, each an event stream on the
//! platform's event store; `user.created` and `user.updated` on the bus.

mod user;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use flotilla::events::Bus;
use flotilla::eventsourcing::{Metadata, Repository};
use flotilla::platform::Platform;
use flotilla::{Json, MicroserviceBuilder, Problem};
use serde::{Deserialize, Serialize};

pub use user::{Command, Event, Refused, User};

use crate::http::{invalid, publish, store_problem};

#[derive(Clone)]
struct Users {
    repo: Repository<User>,
    bus: Bus,
}

/// Adds the users routes to `builder`.
pub fn service(builder: MicroserviceBuilder, platform: &Platform) -> MicroserviceBuilder {
    let state = Arc::new(Users {
        repo: Repository::new(platform.event_store()),
        bus: platform.bus(),
    });
    let routes = Router::new()
        .route("/users", post(create))
        .route("/users/{id}", get(read).put(update).delete(remove))
        .with_state(state);
    builder
        .description("accounts of the example shop")
        .routes(routes)
}

/// A user as the API shows it.
#[derive(Debug, Serialize, Deserialize)]
pub struct UserView {
    /// Its id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Contact address.
    pub email: String,
}

/// `POST /users` and `PUT /users/{id}` bodies (every field optional on update).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserInput {
    /// Display name, 1 to 100 characters.
    pub name: Option<String>,
    /// Contact address.
    pub email: Option<String>,
}

impl UserInput {
    fn validate(&self, creating: bool) -> Result<(), Problem> {
        match (&self.name, creating) {
            (None, true) => return Err(invalid("name", "is required")),
            (Some(n), _) if n.trim().is_empty() || n.chars().count() > 100 => {
                return Err(invalid("name", "must be 1 to 100 characters, not blank"));
            }
            _ => {}
        }
        match &self.email {
            None if creating => Err(invalid("email", "is required")),
            Some(e) if !plausible_email(e) => Err(invalid(
                "email",
                format!("{e:?} is not an address like name@example.com"),
            )),
            _ => Ok(()),
        }
    }
}

/// One `@` with text on both sides and a dot in the domain: the rest is the mail server's job.
fn plausible_email(e: &str) -> bool {
    match e.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.contains('@')
                && e.len() <= 254
                && !e.chars().any(char::is_whitespace)
        }
        None => false,
    }
}

fn view(id: &str, user: &User) -> UserView {
    UserView {
        id: id.to_owned(),
        name: user.name.clone(),
        email: user.email.clone(),
    }
}

fn refused(e: Refused) -> Problem {
    match e {
        Refused::Exists => Problem::new(StatusCode::CONFLICT).detail(e.to_string()),
        Refused::NotFound => Problem::not_found(e.to_string()),
    }
}

async fn create(
    State(s): State<Arc<Users>>,
    Json(input): Json<UserInput>,
) -> Result<Response, Problem> {
    input.validate(true)?;
    let id = uuid::Uuid::now_v7().to_string();
    let command = Command::Create {
        name: input.name.unwrap_or_default(),
        email: input.email.unwrap_or_default(),
    };
    let user = handle(&s, &id, &command).await?;
    let body = view(&id, &user);
    let event = serde_json::json!(body);
    // The account is recorded either way; a lost announcement is logged rather than making the
    // client retry (which would open a second account).
    let published = publish(
        &s.bus,
        "users",
        "user.created",
        format!("user-{id}-created"),
        event,
    );
    if let Err(problem) = published.await {
        tracing::warn!(user = %id, ?problem.detail, "user.created not published");
    }
    let location = format!("/users/{id}");
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        axum::Json(body),
    )
        .into_response())
}

async fn read(
    State(s): State<Arc<Users>>,
    Path(id): Path<String>,
) -> Result<axum::Json<UserView>, Problem> {
    let loaded = s.repo.load(&id).await.map_err(store_problem)?;
    match loaded.state.live() {
        true => Ok(axum::Json(view(&id, &loaded.state))),
        false => Err(refused(Refused::NotFound)),
    }
}

async fn update(
    State(s): State<Arc<Users>>,
    Path(id): Path<String>,
    Json(input): Json<UserInput>,
) -> Result<axum::Json<UserView>, Problem> {
    input.validate(false)?;
    let command = Command::Update {
        name: input.name,
        email: input.email,
    };
    let handled = s
        .repo
        .handle(&id, &command, Metadata::default())
        .await
        .map_err(store_problem)?
        .map_err(refused)?;
    let body = view(&id, &handled.state);
    if let Some(appended) = handled.appended {
        // One event id per recorded version: a retry that records nothing publishes nothing.
        let event_id = format!("user-{id}-v{}", appended.last_version);
        publish(
            &s.bus,
            "users",
            "user.updated",
            event_id,
            serde_json::json!(body),
        )
        .await?;
    }
    Ok(axum::Json(body))
}

async fn remove(
    State(s): State<Arc<Users>>,
    Path(id): Path<String>,
) -> Result<StatusCode, Problem> {
    handle(&s, &id, &Command::Delete).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn handle(s: &Users, id: &str, command: &Command) -> Result<User, Problem> {
    let handled = s.repo.handle(id, command, Metadata::default()).await;
    Ok(handled.map_err(store_problem)?.map_err(refused)?.state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_the_field() {
        let input = UserInput {
            name: Some("Ada".into()),
            email: Some("ada-at-example.com".into()),
        };
        let problem = input.validate(true).expect_err("refused");
        assert_eq!(problem.status, 422);
        assert_eq!(problem.errors[0].field, "email");
        let blank = UserInput {
            name: Some("  ".into()),
            email: None,
        };
        assert_eq!(
            blank.validate(false).expect_err("refused").errors[0].field,
            "name"
        );
    }
}
