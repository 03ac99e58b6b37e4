//! The dashboard in a real Chromium: the real gateway (sim engine), two
//! real webhook receivers (one failing), and `tests/browser/dashboard.mjs`
//! driving Debian's `chromium` through playwright-core (both installed by
//! `.ci/run`). Screenshots go to `target/screenshots/`.
//!
//! Under `CI=true` a missing browser, Node or playwright-core fails the
//! test; elsewhere it is skipped with a loud message.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::helpers::{ADMIN_PASSWORD, As, TestApp};
use crate::receiver::{Receiver, Reply};

/// What the browser flow needs on this machine, or why it cannot run.
fn browser_tools(browser_dir: &Path) -> Result<(PathBuf, PathBuf), String> {
    let find = |name: &str| {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|p| p.join(name))
                .find(|p| p.is_file())
        })
    };
    let chromium = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .or_else(|| find("chromium"))
        .ok_or("no `chromium` on PATH (apt-get install chromium)")?;
    let node = find("node").ok_or("no `node` on PATH")?;
    if !browser_dir.join("node_modules/playwright-core").is_dir() {
        return Err(format!(
            "playwright-core is not installed in {} (npm install there)",
            browser_dir.display()
        ));
    }
    Ok((chromium, node))
}

#[tokio::test]
async fn an_operator_pairs_sends_and_retries_a_webhook_from_the_dashboard_in_a_real_browser() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let browser_dir = root.join("tests/browser");
    let (chromium, node) = match browser_tools(&browser_dir) {
        Ok(tools) => tools,
        Err(why) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("the browser test cannot run under CI: {why}")
        }
        Err(why) => {
            eprintln!("\n!!!!!!!! SKIPPED the dashboard browser test: {why} !!!!!!!!\n");
            return;
        }
    };
    let failing = Receiver::start().await;
    failing.set_fallback(Reply::status(500));
    let good = Receiver::start().await;
    let app = TestApp::spawn_with(|c| {
        // Rotations the page must follow, and enough of them to finish the flow.
        c.sim_qr_interval = Duration::from_millis(1500);
        c.qr_max_codes = 100;
        c.sim_receipt_delay = Duration::from_millis(200);
    })
    .await;
    let shots = root.join("target/screenshots");

    let mut cmd = tokio::process::Command::new(node);
    cmd.arg("dashboard.mjs")
        .current_dir(&browser_dir)
        .env("GATEWAY_URL", &app.base)
        .env("ADMIN_EMAIL", &app.config.admin_email)
        .env("ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("FAILING_HOOK", failing.url())
        .env("GOOD_HOOK", good.url())
        .env("SCREENSHOTS", &shots)
        .env("CHROMIUM", chromium)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let out = tokio::time::timeout(
        Duration::from_secs(180),
        cmd.spawn().expect("node starts").wait_with_output(),
    )
    .await
    .expect("the browser flow finishes")
    .expect("the browser flow runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the browser flow failed\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
    let line = |tag: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(tag))
            .unwrap_or_else(|| panic!("no {tag} line in\n{stdout}"))
            .trim()
            .to_string()
    };
    let (instance, delivery) = (line("INSTANCE "), line("DELIVERY "));

    // What the page showed is what the gateway did.
    let status = app
        .get(
            &format!("/api/whatsapp/{instance}/status"),
            As::Key(&app.admin.api_key),
        )
        .await
        .expect(200);
    assert_eq!(status["status"], "connected");
    app.wait_for_event(&instance, "message_status", |d| d["status"] == "read")
        .await;
    // The retried delivery went first to the failing receiver, then to the fixed URL.
    let failed_ids: Vec<String> = failing
        .hits()
        .iter()
        .map(|h| h.header("webhook-id"))
        .collect();
    good.wait_until(|h| failed_ids.contains(&h.header("webhook-id")))
        .await;
    let deliveries = app
        .get(
            &format!("/api/instances/{instance}/webhook-deliveries?limit=500"),
            As::Key(&app.admin.api_key),
        )
        .await
        .expect(200);
    let retried = deliveries["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == delivery.as_str())
        .expect("the retried delivery is listed");
    assert_eq!(retried["status"], "delivered");
    for name in [
        "login",
        "pairing",
        "connected",
        "send",
        "chats",
        "webhooks",
        "dashboard",
        "dashboard-phone",
    ] {
        assert!(
            shots.join(format!("{name}.png")).is_file(),
            "screenshot {name}.png was written"
        );
    }
}
