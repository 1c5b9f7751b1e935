//! A refused connection is reported without the password of its URL.

use flotilla_redis::{Options, RedisBackend};
use flotilla_testkit::{Backend, backend};

#[tokio::test]
async fn a_refused_login_never_shows_the_password() {
    let Some(url) = backend(Backend::Redis, "redis connect redaction") else {
        return;
    };
    let Some(host) = url.strip_prefix("redis://") else {
        return;
    };
    let opts = Options {
        url: format!("redis://nobody:wrong-Pa55word@{host}"),
        ..Options::default()
    };
    let Err(e) = RedisBackend::connect(opts).await else {
        panic!("an unknown user must be refused");
    };
    let msg = e.to_string();
    assert!(!msg.contains("wrong-Pa55word"), "{msg}");
    assert!(msg.contains("nobody:***@"), "{msg}");
}
