//! Parallel step groups: consecutive steps with the same `group` run at the same time and are
//! compensated at the same time; definitions say so in Rust, TOML and JSON alike, and a group
//! whose steps are apart, or that uses a sibling's result, is refused at load.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};

use flotilla_eventstore::{EventStore, MemoryEventStore};
use flotilla_saga::{
    Action, Orchestrator, SagaDefinition, SagaStatus, StepBuilder, StepCall, StepError,
};
use serde_json::{Value, json};
use tokio::sync::watch;

/// Every call, in the order made; `b` and `c` answer once `gate` opens, `d` fails when told.
#[derive(Clone)]
struct Calls {
    log: Arc<watch::Sender<Vec<String>>>,
    gate: watch::Sender<bool>,
    fail_d: Arc<Mutex<bool>>,
}

impl Calls {
    fn new() -> Self {
        Self {
            log: Arc::new(watch::Sender::new(Vec::new())),
            gate: watch::Sender::new(false),
            fail_d: Arc::default(),
        }
    }

    async fn call(&self, name: &str) -> Result<Value, StepError> {
        self.log.send_modify(|l| l.push(name.to_owned()));
        if ["b", "c"].contains(&name) {
            let mut open = self.gate.subscribe();
            let _ = open.wait_for(|o| *o).await;
        }
        if name == "d" && *self.fail_d.lock().unwrap() {
            return Err(StepError::permanent("d refused"));
        }
        Ok(json!(name))
    }

    fn names(&self) -> Vec<String> {
        self.log.borrow().clone()
    }
}

fn saga() -> SagaDefinition {
    let step = |n: &str| StepBuilder::new(n, Action::function(n));
    let undone = |n: &str| step(n).compensate(Action::function(format!("undo-{n}")));
    SagaDefinition::builder("grouped", 1)
        .step(undone("a"))
        .step(undone("b").group("pay"))
        .step(undone("c").group("pay"))
        .step(step("d"))
        .build()
        .unwrap()
}

fn orchestrator(calls: &Calls) -> Orchestrator {
    let store: Arc<dyn EventStore> = Arc::new(MemoryEventStore::new());
    let mut builder = Orchestrator::builder(store).saga(saga());
    for name in ["a", "b", "c", "d", "undo-a", "undo-b", "undo-c"] {
        let calls = calls.clone();
        builder = builder.function(name, move |_call: StepCall| {
            let calls = calls.clone();
            async move { calls.call(name).await }
        });
    }
    builder.build().unwrap()
}

#[tokio::test]
async fn a_groups_steps_run_at_the_same_time() {
    let calls = Calls::new();
    let orch = orchestrator(&calls);
    let id = orch.start("grouped", json!({})).await.unwrap();
    // b and c are both called while neither has answered.
    let mut log = calls.log.subscribe();
    log.wait_for(|l| l.len() == 3).await.unwrap();
    let mut first = calls.names();
    first[1..].sort();
    assert_eq!(first, ["a", "b", "c"]);
    calls.gate.send_replace(true);
    let end = orch.wait(&id).await.unwrap();
    assert_eq!(end.status, SagaStatus::Completed);
    assert_eq!(calls.names()[3], "d");
}

#[tokio::test]
async fn a_groups_steps_are_undone_together_before_the_step_before_them() {
    let calls = Calls::new();
    *calls.fail_d.lock().unwrap() = true;
    calls.gate.send_replace(true);
    let orch = orchestrator(&calls);
    let id = orch.start("grouped", json!({})).await.unwrap();
    let end = orch.wait(&id).await.unwrap();
    assert_eq!(end.status, SagaStatus::Compensated);
    let names = calls.names();
    assert_eq!(names.len(), 7, "{names:?}");
    let mut undone_together = names[4..6].to_vec();
    undone_together.sort();
    assert_eq!(undone_together, ["undo-b", "undo-c"]);
    assert_eq!(names[6], "undo-a");
}

const TOML: &str = r#"
name = "grouped"
version = 1

[[steps]]
name = "a"
action.function = "a"
compensation.function = "undo-a"

[[steps]]
name = "b"
group = "pay"
action.function = "b"
compensation.function = "undo-b"

[[steps]]
name = "c"
group = "pay"
action.function = "c"
compensation.function = "undo-c"

[[steps]]
name = "d"
action.function = "d"
"#;

#[test]
fn groups_read_the_same_from_toml_json_and_rust() {
    assert_eq!(SagaDefinition::from_toml(TOML).unwrap(), saga());
    let value: toml::Value = toml::from_str(TOML).unwrap();
    let json = serde_json::to_string(&value).unwrap();
    assert_eq!(SagaDefinition::from_json(&json).unwrap(), saga());
}

#[test]
fn a_group_split_apart_or_using_a_siblings_result_is_refused() {
    let apart = TOML.replace(
        "name = \"d\"\naction.function = \"d\"",
        "name = \"d\"\ngroup = \"pay\"\naction.function = \"d\"",
    );
    let apart = apart.replacen(
        "group = \"pay\"\naction.function = \"c\"",
        "action.function = \"c\"",
        1,
    );
    let err = SagaDefinition::from_toml(&apart).unwrap_err().to_string();
    assert!(err.contains("steps[3].group"), "{err}");

    let step = |n: &str| StepBuilder::new(n, Action::function(n)).group("g");
    let sibling = StepBuilder::new(
        "c",
        Action::http(
            flotilla_core::ServiceName::new("svc").unwrap(),
            http::Method::POST,
            "/x/{{steps.b.result.id}}",
            None,
        ),
    )
    .group("g");
    let err = SagaDefinition::builder("s", 1)
        .step(step("b"))
        .step(sibling)
        .build()
        .unwrap_err()
        .to_string();
    assert!(err.contains("steps[1].action.http.path"), "{err}");
}

#[test]
fn the_guides_group_example_loads() {
    let guide = include_str!("../../../docs/sagas.md");
    let start = guide.find("### Parallel groups").unwrap();
    let snippet = &guide[start..];
    let body = snippet.split("```toml\n").nth(1).unwrap();
    let body = body.split("```").next().unwrap();
    let def = SagaDefinition::from_toml(&format!("name = \"order\"\nversion = 1\n{body}")).unwrap();
    let groups: Vec<_> = def.steps.iter().map(|s| s.group.as_deref()).collect();
    assert_eq!(groups, [Some("fulfil"), Some("fulfil")]);
    assert_eq!(def.group_of(1), 0..2);
}
