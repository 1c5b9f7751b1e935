//! The clients' decoding of an error answer: the platform backend (`ControlPlane`) and the
//! registry client read any status with any body (problem+json or not) without panicking, and
//! keep the status the server sent. The answer comes over an in-memory stream through the
//! clients' dial seam, so the real HTTP path is what decodes it.
#![no_main]

use std::sync::{Arc, LazyLock};

use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
});

/// A dialer whose every connection is answered once with `status` and `body`.
fn answering(status: u16, body: Arc<Vec<u8>>) -> impl Fn() -> tokio::io::DuplexStream {
    move || {
        let (client, mut server) = tokio::io::duplex(1 << 20);
        let body = Arc::clone(&body);
        tokio::spawn(async move {
            let mut request = [0u8; 4096];
            let _ = server.read(&mut request).await;
            let head = format!(
                "HTTP/1.1 {status} Fuzz\r\ncontent-type: application/problem+json\r\ncontent-length: {}\r\nretry-after: 1\r\n\r\n",
                body.len()
            );
            let _ = server.write_all(head.as_bytes()).await;
            let _ = server.write_all(&body).await;
            let _ = server.flush().await;
            let _ = server.read(&mut request).await;
        });
        client
    }
}

fn platform(status: u16, body: Arc<Vec<u8>>) {
    let open = answering(status, body);
    let dialer: flotilla_platform::Dialer = Arc::new(move |_, _| {
        let stream = open();
        Box::pin(async move { Ok(Box::new(stream) as Box<dyn flotilla_platform::Stream>) })
    });
    let options = flotilla_platform::ConnectOptions::new("http://control:4400");
    let plane = flotilla_platform::ControlPlane::with_dialer(options, dialer).expect("options");
    match RUNTIME.block_on(plane.ping()) {
        Ok(()) => assert!((200..300).contains(&status), "{status} taken as success"),
        Err(e) => {
            assert_eq!(e.status(), Some(status), "{e}");
            let _ = (e.detail(), e.is_transient(), e.to_string());
        }
    }
}

fn registry(status: u16, body: Arc<Vec<u8>>) {
    let open = answering(status, body);
    let dialer: flotilla_registry_client::Dialer = Arc::new(move |_, _| {
        let stream = open();
        Box::pin(async move { Ok(Box::new(stream) as Box<dyn flotilla_registry_client::Stream>) })
    });
    let options = flotilla_registry_client::ClientOptions::new("http://registry:4400");
    let answer = RUNTIME.block_on(async {
        let client = flotilla_registry_client::RegistryClient::with_dialer(options, dialer)
            .expect("options");
        client.services().await
    });
    match answer {
        Err(flotilla_registry_client::Error::Status { status: kept, .. }) => {
            assert_eq!(kept, status)
        }
        Err(e) => assert!((200..300).contains(&status), "{status} lost: {e}"),
        Ok(_) => assert!((200..300).contains(&status), "{status} taken as success"),
    }
}

// First two bytes: the status (mapped into 200..=599); the rest: the body.
fuzz_target!(|data: &[u8]| {
    let [hi, lo, body @ ..] = data else { return };
    let status = 200 + u16::from_be_bytes([*hi, *lo]) % 400;
    let body = Arc::new(body.to_vec());
    platform(status, Arc::clone(&body));
    registry(status, body);
});
