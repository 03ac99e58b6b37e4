//! The HTTP edge: body caps on the bytes read, control characters, the
//! private-address guard in every IPv6 form, owner-only files and sealed
//! secrets, native HTTPS, and the client address behind trusted proxies.

use std::path::Path;
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{As, TestApp, WAIT};

/// Sends `path` a chunked JSON body of `total` bytes over a raw connection,
/// stopping once the server answers; returns (status line, body, bytes sent).
async fn send_chunked(
    app: &TestApp,
    path: &str,
    api_key: &str,
    total: usize,
) -> (String, String, usize) {
    let addr = app.base.trim_start_matches("http://").to_string();
    let stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let (mut rd, mut wr) = stream.into_split();
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\nx-api-key: {api_key}\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n"
    );
    wr.write_all(head.as_bytes()).await.unwrap();
    let reader = tokio::spawn(async move {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        loop {
            match rd.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    // Stop once the whole (small) answer is in.
                    let text = String::from_utf8_lossy(&buf);
                    if let Some((h, b)) = text.split_once("\r\n\r\n") {
                        let len = h.lines().find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                        });
                        if len.is_some_and(|n| b.len() >= n) {
                            break;
                        }
                    }
                }
            }
        }
        String::from_utf8_lossy(&buf).to_string()
    });
    // A JSON string that never ends: `{"phone":"1","message":"xxxx…`.
    let piece = vec![b'x'; 64 * 1024];
    let mut sent = 0;
    let first = b"{\"phone\":\"79001234567\",\"message\":\"";
    let mut frame = format!("{:x}\r\n", first.len()).into_bytes();
    frame.extend_from_slice(first);
    frame.extend_from_slice(b"\r\n");
    wr.write_all(&frame).await.unwrap();
    while sent < total && !reader.is_finished() {
        let mut frame = format!("{:x}\r\n", piece.len()).into_bytes();
        frame.extend_from_slice(&piece);
        frame.extend_from_slice(b"\r\n");
        if wr.write_all(&frame).await.is_err() {
            break;
        }
        sent += piece.len();
    }
    let answer = tokio::time::timeout(WAIT, reader)
        .await
        .expect("an answer")
        .unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    (
        head.lines().next().unwrap_or_default().to_string(),
        body.to_string(),
        sent,
    )
}

#[tokio::test]
async fn a_chunked_body_over_the_json_cap_is_refused_with_413_before_it_is_read_whole() {
    let app = TestApp::spawn().await;
    let id = app
        .create_instance(&app.admin, json!({"name": "cap"}))
        .await;
    // 256 MiB offered; the cap is 1 MiB.
    let (status, body, sent) = send_chunked(
        &app,
        &format!("/api/whatsapp/{id}/send"),
        &app.admin.api_key,
        256 * 1024 * 1024,
    )
    .await;
    assert!(status.contains(" 413 "), "{status} {body}");
    let body: serde_json::Value = serde_json::from_str(&body).expect("a JSON error");
    assert_eq!(body["error"], "payload_too_large");
    assert!(body["message"].as_str().unwrap().contains("1048576"));
    assert!(
        sent < 64 * 1024 * 1024,
        "the server stopped reading early, yet {sent} bytes went out"
    );
    // A declared length over the cap is refused before any of it is read.
    let resp = app
        .client
        .post(app.url(&format!("/api/whatsapp/{id}/send")))
        .header("x-api-key", &app.admin.api_key)
        .header("content-type", "application/json")
        .body(vec![b' '; 2 * 1024 * 1024])
        .send()
        .await
        .unwrap();
    let answer = TestApp::read(resp).await;
    assert_eq!(answer.expect_error(413)["error"], "payload_too_large");
    // A chunked body under the cap is served as usual.
    let stream = futures::stream::iter(vec![
        Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"{\"name\":")),
        Ok(bytes::Bytes::from_static(b"\"chunked\"}")),
    ]);
    let resp = app
        .client
        .post(app.url("/api/instances"))
        .header("x-api-key", &app.admin.api_key)
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(TestApp::read(resp).await.expect(200)["name"], "chunked");
}

#[tokio::test]
async fn names_and_texts_with_control_characters_are_refused() {
    let app = TestApp::spawn().await;
    for name in ["nul\u{0}byte", "bell\u{7}", "two\nlines", "esc\u{1b}[2J"] {
        let body = app
            .post(
                "/api/instances",
                As::Key(&app.admin.api_key),
                json!({ "name": name }),
            )
            .await
            .expect_error(400);
        assert_eq!(body["error"], "bad_request", "{name:?}");
    }
    app.post(
        "/api/users",
        As::Key(&app.admin.api_key),
        json!({"email": "cc@example.com", "password": "password-1", "firstName": "A\u{0}", "lastName": "B"}),
    )
    .await
    .expect_error(400);
    let id = app.connected_instance(&app.admin, "79001110000").await;
    let send = format!("/api/whatsapp/{id}/send");
    for text in ["nul\u{0}", "del\u{7f}", "c1\u{9b}31m"] {
        app.post(
            &send,
            As::Key(&app.admin.api_key),
            json!({"phone": "79002220000", "message": text}),
        )
        .await
        .expect_error(400);
    }
    // Newlines and tabs are text.
    app.post(
        &send,
        As::Key(&app.admin.api_key),
        json!({"phone": "79002220000", "message": "line one\n\tline two\r\n"}),
    )
    .await
    .expect(200);
    let sent = app
        .events()
        .await
        .into_iter()
        .filter(|e| e.event_type == "message_sent")
        .count();
    assert_eq!(sent, 1, "only the clean text was sent");
}

#[tokio::test]
async fn urls_whose_addresses_are_not_public_are_400_in_every_form() {
    let app = TestApp::spawn_with(|c| {
        c.webhook_allow_private = false;
        c.media_allow_private = false;
    })
    .await;
    for url in [
        "http://[::ffff:0:7f00:1]/",
        "http://[::7f00:1]/",
        "http://[::a9fe:a9fe]/",
        "http://[2002:7f00:1::1]/",
        "http://[2002:a9fe:a9fe::1]/",
        "http://[2001:db8::1]/",
        "http://[100::1]/",
        "http://[64:ff9b::7f00:1]/",
        "http://[2001::1]/",
        "http://192.0.2.1/",
    ] {
        let body = app
            .post(
                "/api/instances",
                As::Key(&app.admin.api_key),
                json!({"name": "ssrf", "webhookUrl": url}),
            )
            .await
            .expect_error(400);
        assert!(
            body["message"].as_str().unwrap().contains("webhookUrl"),
            "{url}: {body}"
        );
    }
    // A media URL whose *name* resolves to this machine (its own host name
    // resolves to loopback or a private address): 400, like a literal one.
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    let resolved: Vec<_> = tokio::net::lookup_host((host.as_str(), 80))
        .await
        .map(|a| a.collect())
        .unwrap_or_default();
    assert!(
        !resolved.is_empty()
            && resolved
                .iter()
                .all(|a: &std::net::SocketAddr| wa_gateway::domain::types::is_forbidden_ip(a.ip())),
        "precondition: the host name {host:?} resolves to a non-public address ({resolved:?})"
    );
    let id = app.connected_instance(&app.admin, "79003330000").await;
    for url in [
        format!("http://{host}:9/image.png"),
        "http://[::ffff:0:7f00:1]/image.png".to_string(),
    ] {
        let body = app
            .post(
                &format!("/api/whatsapp/{id}/send-media"),
                As::Key(&app.admin.api_key),
                json!({"phone": "79004440000", "url": url}),
            )
            .await
            .expect_error(400);
        assert_eq!(body["error"], "bad_request", "{url}: {body}");
    }
}

#[cfg(unix)]
fn assert_owner_only(dir: &Path) -> usize {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "{} is {mode:o}", dir.display());
    let mut files = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            files += assert_owner_only(&entry.path());
        } else if kind.is_file() {
            let mode = entry.metadata().unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{} is {mode:o}", entry.path().display());
            files += 1;
        }
    }
    files
}

#[cfg(unix)]
#[tokio::test]
async fn the_data_dir_is_owner_only_and_secrets_are_sealed_at_rest() {
    let app = TestApp::spawn().await;
    let user = app.create_user("sealed@example.com").await;
    let id = app
        .create_instance(
            &user,
            json!({"name": "sealed", "webhookUrl": "http://127.0.0.1:9/hook",
                   "webhookSecret": "whsec-very-secret"}),
        )
        .await;
    app.connected_instance(&user, "79005550000").await;
    let dir = app.config.data_dir.clone();
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    for f in [
        "events.db",
        "events.db-wal",
        "views.db",
        "webhooks.db",
        "jwt_secret",
        "secrets_key",
    ] {
        assert!(names.contains(&f.to_string()), "{f} in {names:?}");
    }
    assert!(assert_owner_only(&dir) >= 8);
    // Neither the API key nor the webhook secret is anywhere in the databases' bytes.
    for db in [
        "events.db",
        "events.db-wal",
        "views.db",
        "webhooks.db",
        "webhooks.db-wal",
    ] {
        let bytes = std::fs::read(dir.join(db)).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains(&user.api_key), "the API key is in {db}");
        assert!(
            !text.contains("whsec-very-secret"),
            "the webhook secret is in {db}"
        );
    }
    let stored: String = sqlx::query_scalar("SELECT webhook_secret FROM instances WHERE id = ?")
        .bind(&id)
        .fetch_one(app.state.store.pool())
        .await
        .unwrap();
    assert!(stored.starts_with("enc:v1:"));

    // Rotation: stop, rotate the key with the command line, start again.
    let mut app = app;
    app.stop().await;
    let key_before = std::fs::read_to_string(dir.join("secrets_key")).unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_wa-gateway"))
        .args(["secrets", "rotate-key"])
        .env("WA_DATA_DIR", &dir)
        .env("WA_LOG", "error")
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("re-sealed 3 values"));
    let key_after = std::fs::read_to_string(dir.join("secrets_key")).unwrap();
    assert_ne!(key_before, key_after);
    assert_eq!(
        key_after.lines().count(),
        1,
        "the old key is gone from the file"
    );
    let app = app.restart().await;
    // The same API key still works and login still shows it.
    app.get("/api/auth/me", As::Key(&user.api_key))
        .await
        .expect(200);
    assert_eq!(
        app.login("sealed@example.com", "user-password")
            .await
            .api_key,
        user.api_key
    );
    let stored_after: String =
        sqlx::query_scalar("SELECT webhook_secret FROM instances WHERE id = ?")
            .bind(&id)
            .fetch_one(app.state.store.pool())
            .await
            .unwrap();
    assert_ne!(stored, stored_after);
    let opened = app
        .state
        .secrets
        .open(wa_gateway::secrets::Purpose::WebhookSecret, &stored_after)
        .unwrap();
    assert_eq!(opened.expose(), "whsec-very-secret");
    assert_owner_only(&dir);
}

/// A CA and a certificate for `localhost` / 127.0.0.1 signed by it: (CA PEM, cert PEM, key PEM).
fn certificate() -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "wa-gateway test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params =
        rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "localhost");
    let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);
    let cert = params.signed_by(&key, &issuer).unwrap();
    (ca.pem(), cert.pem(), key.serialize_pem())
}

fn https_client(ca_pem: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap()])
        // Every request a new connection: a handshake with the certificate served now.
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

#[tokio::test]
async fn https_is_served_natively_and_a_new_certificate_is_picked_up_without_a_restart() {
    wa_gateway::net::install_crypto_provider();
    let tls_dir = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = (
        tls_dir.path().join("cert.pem"),
        tls_dir.path().join("key.pem"),
    );
    let (ca1, cert1, key1) = certificate();
    std::fs::write(&cert_path, &cert1).unwrap();
    std::fs::write(&key_path, &key1).unwrap();
    let app = TestApp::spawn_anonymous_with(|c| {
        c.tls_cert = Some(cert_path.clone());
        c.tls_key = Some(key_path.clone());
        c.tls_reload_interval = Duration::from_millis(100);
    })
    .await;
    let port = app.base.rsplit(':').next().unwrap().to_string();
    let https = format!("https://localhost:{port}");
    let client1 = https_client(&ca1);
    let resp = client1
        .get(format!("{https}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let login = client1
        .post(format!("{https}/api/auth/login"))
        .json(&json!({"email": "admin@test.local", "password": crate::helpers::ADMIN_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    // Plain HTTP on the TLS port gets no answer.
    assert!(app.client.get(app.url("/healthz")).send().await.is_err());

    // A new certificate from another CA, written over the old files.
    let (ca2, cert2, key2) = certificate();
    std::fs::write(&key_path, &key2).unwrap();
    std::fs::write(&cert_path, &cert2).unwrap();
    let client2 = https_client(&ca2);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if client2.get(format!("{https}/healthz")).send().await.is_ok() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the new certificate was not picked up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        client1
            .get(format!("{https}/healthz"))
            .send()
            .await
            .is_err(),
        "the old certificate is no longer served"
    );
}

#[tokio::test]
async fn the_allow_list_sees_the_client_behind_a_trusted_proxy_and_ignores_anyone_elses_header() {
    let behind_trusted = TestApp::spawn_anonymous_with(|c| {
        c.allowed_ips = wa_gateway::config::parse_cidrs("198.51.100.0/24").unwrap();
        c.trusted_proxies = wa_gateway::config::parse_cidrs("127.0.0.1").unwrap();
    })
    .await;
    let get = |app: &TestApp, xff: Option<&str>| {
        let mut req = app.client.get(app.url("/healthz"));
        if let Some(v) = xff {
            req = req.header("x-forwarded-for", v);
        }
        req.send()
    };
    let status = |r: reqwest::Response| r.status().as_u16();
    assert_eq!(
        status(get(&behind_trusted, Some("198.51.100.7")).await.unwrap()),
        200
    );
    assert_eq!(
        status(
            get(&behind_trusted, Some("198.51.100.7, 127.0.0.1"))
                .await
                .unwrap()
        ),
        200,
        "trusted hops are skipped"
    );
    // A client cannot put an allowed address in front of its own.
    assert_eq!(
        status(
            get(&behind_trusted, Some("198.51.100.7, 203.0.113.9"))
                .await
                .unwrap()
        ),
        403
    );
    assert_eq!(
        status(get(&behind_trusted, None).await.unwrap()),
        403,
        "the proxy itself is not allowed"
    );
    let forwarded = behind_trusted
        .client
        .get(behind_trusted.url("/healthz"))
        .header("forwarded", "for=198.51.100.9;proto=https")
        .send()
        .await
        .unwrap();
    assert_eq!(forwarded.status(), 200);

    // The same header from a peer that is not a trusted proxy is ignored.
    let untrusted = TestApp::spawn_anonymous_with(|c| {
        c.allowed_ips = wa_gateway::config::parse_cidrs("198.51.100.0/24").unwrap();
        c.trusted_proxies = wa_gateway::config::parse_cidrs("10.0.0.0/8").unwrap();
    })
    .await;
    let refused = get(&untrusted, Some("198.51.100.7")).await.unwrap();
    assert_eq!(refused.status(), 403);
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"], "forbidden");
}

#[tokio::test]
async fn the_login_throttle_counts_the_forwarded_client_not_the_proxy() {
    let app = TestApp::spawn_with(|c| {
        c.trusted_proxies = wa_gateway::config::parse_cidrs("127.0.0.1").unwrap();
        c.login_max_failures = 2;
    })
    .await;
    let attempt = |client_ip: &'static str, email: &'static str| {
        app.client
            .post(app.url("/api/auth/login"))
            .header("x-forwarded-for", client_ip)
            .json(&json!({"email": email, "password": "wrong-password"}))
            .send()
    };
    // One client spreads failures over many e-mails until its address is throttled
    // (three times the per-e-mail limit).
    let emails = [
        "a@x.io", "b@x.io", "c@x.io", "d@x.io", "e@x.io", "f@x.io", "g@x.io", "h@x.io",
    ];
    let mut throttled = false;
    for email in emails {
        if attempt("198.51.100.7", email).await.unwrap().status() == 429 {
            throttled = true;
            break;
        }
    }
    assert!(throttled, "the forwarded client was throttled");
    // Another client behind the same proxy is not.
    let other = attempt("198.51.100.8", "z@x.io").await.unwrap();
    assert_eq!(other.status(), 401);
}
