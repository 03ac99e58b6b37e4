//! `make bench`: the gateway's benchmarks. Prints figures; asserts nothing
//! (these machines are shared and noisy). `wa-bench [name ...]` runs a subset.

mod projections;
mod relay;
mod sessions;
mod store;
mod webhooks;

use std::future::Future;
use std::pin::Pin;

/// mimalloc instead of glibc's malloc: a request and its events allocate many
/// small, short-lived values across threads, where glibc's arenas spent about
/// a quarter of the send benchmark's CPU time (README, "Decisions").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

type Bench = fn() -> Pin<Box<dyn Future<Output = anyhow::Result<()>>>>;

const BENCHES: &[(&str, Bench)] = &[
    ("store", || Box::pin(store::run())),
    ("sessions", || Box::pin(sessions::run())),
    ("relay", || Box::pin(relay::run())),
    ("projections", || Box::pin(projections::run())),
    ("webhooks", || Box::pin(webhooks::run())),
];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let wanted: Vec<String> = std::env::args().skip(1).collect();
    for (name, bench) in BENCHES {
        if wanted.is_empty() || wanted.iter().any(|w| w == name) {
            println!("== {name}");
            bench().await?;
            println!();
        }
    }
    Ok(())
}
