//! A refused connection is reported without the password of its URL.

use flotilla_amqp::{AmqpBackend, Options};
use flotilla_testkit::{Backend, backend};

#[tokio::test]
async fn a_refused_login_never_shows_the_password() {
    let Some(url) = backend(Backend::RabbitMq, "amqp connect redaction") else {
        return;
    };
    let Some(rest) = url.split_once('@').map(|(_, host)| host.to_owned()) else {
        return;
    };
    let opts = Options {
        url: format!("amqp://guest:wrong-Pa55word@{rest}"),
        ..Options::default()
    };
    let Err(e) = AmqpBackend::connect(opts).await else {
        panic!("a wrong password must be refused");
    };
    let msg = e.to_string();
    assert!(!msg.contains("wrong-Pa55word"), "{msg}");
    assert!(msg.contains("guest:***@"), "{msg}");
}
