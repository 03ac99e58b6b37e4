//! A real HTTP webhook receiver on a loopback port that records every request
//! (headers, body, arrival time) and answers from a script.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use poem::http::{HeaderMap, StatusCode};
use poem::listener::{Acceptor, Listener, TcpAcceptor, TcpListener};
use poem::{Request, Response};
use serde_json::Value;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::helpers::WAIT;

/// One scripted answer.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub delay: Duration,
}

impl Reply {
    /// `200 OK`.
    pub fn ok() -> Self {
        Self::status(200)
    }
    /// An empty answer with this status.
    pub fn status(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            delay: Duration::ZERO,
        }
    }
    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
    /// Answers only after `delay`.
    pub fn after(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

/// One recorded request.
#[derive(Clone, Debug)]
pub struct Hit {
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub json: Value,
    pub at: Instant,
    /// The status it was answered with.
    pub answered: u16,
}

impl Hit {
    /// A header as text ("" when absent).
    pub fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    }
    /// The webhook event name.
    pub fn event(&self) -> &str {
        self.json["event"].as_str().unwrap_or_default()
    }
}

struct Inner {
    script: Mutex<VecDeque<Reply>>,
    fallback: Mutex<Reply>,
    hits: Mutex<Vec<Hit>>,
    count: watch::Sender<usize>,
}

/// The receiver. Dropping it stops it.
pub struct Receiver {
    pub addr: SocketAddr,
    inner: Arc<Inner>,
    stop: CancellationToken,
}

impl Receiver {
    /// A receiver on a free loopback port, answering 200 unless scripted.
    pub async fn start() -> Self {
        Self::start_on(0).await
    }

    /// A loopback port nobody listens on (yet): an endpoint that is down.
    pub fn reserve_port() -> u16 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
        l.local_addr().unwrap().port()
    }

    /// A receiver on `port` (0 = any free port).
    pub async fn start_on(port: u16) -> Self {
        let acceptor: TcpAcceptor = TcpListener::bind(format!("127.0.0.1:{port}"))
            .into_acceptor()
            .await
            .expect("the receiver binds");
        let addr = *acceptor.local_addr()[0].as_socket_addr().unwrap();
        let inner = Arc::new(Inner {
            script: Mutex::new(VecDeque::new()),
            fallback: Mutex::new(Reply::ok()),
            hits: Mutex::new(Vec::new()),
            count: watch::channel(0).0,
        });
        let stop = CancellationToken::new();
        let shared = inner.clone();
        let endpoint = poem::endpoint::make(move |req: Request| {
            let inner = shared.clone();
            async move { answer(inner, req).await }
        });
        let signal = stop.clone();
        tokio::spawn(async move {
            let _ = poem::Server::new_with_acceptor(acceptor)
                .run_with_graceful_shutdown(
                    endpoint,
                    async move { signal.cancelled().await },
                    Some(Duration::from_millis(100)),
                )
                .await;
        });
        Self { addr, inner, stop }
    }

    /// The webhook URL of this receiver.
    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// Answers the next requests with `replies`, in order, then with the fallback.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.inner.script.lock().unwrap().extend(replies);
    }

    /// The answer once the script is used up (200 at first).
    pub fn set_fallback(&self, reply: Reply) {
        *self.inner.fallback.lock().unwrap() = reply;
    }

    /// Every request so far.
    pub fn hits(&self) -> Vec<Hit> {
        self.inner.hits.lock().unwrap().clone()
    }

    /// Waits (on a notification, not a sleep) until `n` requests arrived.
    pub async fn wait_for(&self, n: usize) -> Vec<Hit> {
        let mut rx = self.inner.count.subscribe();
        tokio::time::timeout(WAIT, rx.wait_for(|c| *c >= n))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "the receiver got {} requests, not {n}, within {WAIT:?}",
                    self.hits().len()
                )
            })
            .expect("receiver alive");
        self.hits()
    }

    /// Waits until a request satisfies `pred`; returns it.
    pub async fn wait_until(&self, pred: impl Fn(&Hit) -> bool) -> Hit {
        let mut rx = self.inner.count.subscribe();
        let found = tokio::time::timeout(WAIT, async {
            loop {
                if let Some(h) = self.hits().into_iter().find(|h| pred(h)) {
                    return h;
                }
                rx.changed().await.expect("receiver alive");
            }
        })
        .await;
        found.unwrap_or_else(|_| {
            panic!(
                "no matching request within {WAIT:?}; got {:?}",
                self.hits()
                    .iter()
                    .map(|h| h.event().to_string())
                    .collect::<Vec<_>>()
            )
        })
    }

    /// Requests whose event is `event`.
    pub fn hits_of(&self, event: &str) -> Vec<Hit> {
        self.hits()
            .into_iter()
            .filter(|h| h.event() == event)
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn answer(inner: Arc<Inner>, req: Request) -> poem::Result<Response> {
    let at = Instant::now();
    let headers = req.headers().clone();
    let body = req.into_body().into_vec().await.unwrap_or_default();
    let reply = inner
        .script
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or_else(|| inner.fallback.lock().unwrap().clone());
    let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
    inner.hits.lock().unwrap().push(Hit {
        headers,
        body,
        json,
        at,
        answered: reply.status,
    });
    inner.count.send_modify(|c| *c += 1);
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let mut resp = Response::builder().status(StatusCode::from_u16(reply.status).unwrap());
    for (k, v) in &reply.headers {
        resp = resp.header(k.as_str(), v.as_str());
    }
    Ok(resp.body(""))
}
