//! Building and running the gateway: stores, engine, sessions and the HTTP
//! server, all under one shutdown token.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use poem::listener::{Acceptor, AcceptorExt, BoxAcceptor, Listener, TcpListener};
use tokio_util::sync::CancellationToken;

use crate::api::AppState;
use crate::auth::Tokens;
use crate::auth::load_or_create_jwt_secret;
use crate::backbone::nats::{NatsBackbone, NatsSettings};
use crate::backbone::{Backbone, Consumer};
use crate::config::{Config, EngineKind};
use crate::domain::{instances, users};
use crate::store::{EventStore, open_sqlite};
use crate::whatsapp::real::{RealConfig, RealEngine};
use crate::whatsapp::sim::{SimConfig, SimEngine};
use crate::whatsapp::supervisor::SupervisorConfig;
use crate::whatsapp::{Engine, Sessions};

/// A built gateway, bound to its port, not yet serving.
pub struct App {
    state: AppState,
    acceptor: BoxAcceptor,
    /// `WA_METRICS_LISTEN`'s listener, when set.
    metrics_acceptor: Option<BoxAcceptor>,
    local_addr: SocketAddr,
    shutdown: CancellationToken,
    consumers: Vec<Arc<dyn Consumer>>,
}

/// Every consumer of the log: projectors and the webhook dispatcher.
async fn build_consumers(state: &AppState) -> anyhow::Result<Vec<Arc<dyn Consumer>>> {
    let mut consumers: Vec<Arc<dyn Consumer>> = Vec::new();
    crate::projections::ensure_schemas(&state.views).await?;
    consumers.extend(crate::projections::consumers(&state.views)?);
    consumers.extend([state.webhooks.intake()]);
    Ok(consumers
        .into_iter()
        .map(|c| state.metrics.measured(c))
        .collect())
}

fn make_engine(
    config: &Config,
    proxies: Arc<dyn crate::whatsapp::real::proxy::ProxySource>,
) -> anyhow::Result<(Arc<dyn Engine>, Option<SimEngine>)> {
    match config.engine {
        EngineKind::Sim => {
            let sim = SimEngine::new(SimConfig {
                dir: config.data_dir.join("sim"),
                auto_pair: config.sim_auto_pair,
                receipt_delay: config.sim_receipt_delay,
                qr_interval: config.sim_qr_interval,
            });
            Ok((Arc::new(sim.clone()), Some(sim)))
        }
        EngineKind::WhatsApp => {
            let engine = RealEngine::new(RealConfig {
                dir: config.data_dir.join("wa"),
                url: config.whatsapp_url.clone(),
                version: config.whatsapp_version,
                transport: config.whatsapp_transport.clone(),
                http: config.whatsapp_http.clone(),
                ack_timeout: config.send_ack_timeout,
                keepalive_interval: config.keepalive_interval,
                keepalive_timeout: config.keepalive_timeout,
            })?
            .with_proxies(proxies, config.proxy_allow_private);
            Ok((Arc::new(engine), None))
        }
    }
}

impl App {
    /// Opens the data dir and stores, creates the first admin, starts every
    /// instance's session and binds the listener (port 0 picks a free port).
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        crate::net::install_crypto_provider();
        crate::secrets::private_dir(&config.data_dir)?;
        crate::secrets::tighten_tree(&config.data_dir)?;
        let sealer = Arc::new(crate::secrets::load_or_create(
            config.secrets_key.as_ref(),
            &config.secrets_key_previous,
            &crate::secrets::key_file(&config.data_dir, config.secrets_key_file.as_deref()),
        )?);
        let store = EventStore::open(&config.data_dir.join("events.db"))
            .await
            .context("Failed to open the event store")?;
        let resealed = crate::secrets::reseal_all(store.pool(), &sealer)
            .await
            .context("Failed to seal the stored secrets with the current key")?;
        if resealed > 0 {
            tracing::info!(resealed, "stored secrets sealed with the current key");
        }
        let secret = load_or_create_jwt_secret(config.jwt_secret.as_ref(), &config.data_dir)?;
        let tokens = Tokens::new(&secret, config.jwt_ttl);
        if let Some(password) = users::ensure_first_admin(
            &store,
            &sealer,
            &config.admin_email,
            config.admin_password.as_ref().map(|s| s.expose()),
        )
        .await?
        {
            // Printed once, to the terminal only (not through the log).
            println!(
                "Created the first admin {} with the generated password: {password}\n\
                 Log in with POST /api/auth/login and change it with POST /api/auth/password.",
                config.admin_email
            );
        }
        let shutdown = CancellationToken::new();
        let proxies = Arc::new(crate::whatsapp::real::proxy::StoredProxies {
            pool: store.pool().clone(),
            sealer: sealer.clone(),
        });
        let (engine, sim) = make_engine(&config, proxies)?;
        let sessions = Sessions::new(
            engine,
            store.clone(),
            SupervisorConfig {
                qr_max_codes: config.qr_max_codes,
                reconnect_base: config.reconnect_base,
                send_wait: config.send_wait,
                ..SupervisorConfig::default()
            },
            shutdown.child_token(),
        );
        sessions.keep_media_in(crate::whatsapp::vault::MediaVault::new(
            store.pool().clone(),
            sealer.clone(),
        ));
        let all = instances::list_all(store.pool()).await?;
        sessions.close_cut_sessions(&all).await?;
        sessions.start_all(&all);
        let views = open_sqlite(&config.data_dir.join("views.db"), 8)
            .await
            .context("Failed to open the read-model database")?;
        crate::backbone::ensure_checkpoint_table(&views).await?;
        let backbone = match NatsSettings::from_config(&config) {
            None => Backbone::Embedded(store.clone()),
            Some(settings) => {
                Backbone::Nats(NatsBackbone::connect(&settings).await?, store.clone())
            }
        };
        let webhooks = crate::webhooks::Webhooks::open(store.clone(), &config, sealer.clone())
            .await
            .context("Failed to open the webhook dispatcher")?;
        let media_client = crate::net::outbound_client(
            config.media_allow_private,
            config.media_timeout,
            true,
            "url",
        );
        let tcp = TcpListener::bind(config.listen.clone())
            .into_acceptor()
            .await
            .with_context(|| format!("Failed to listen on {}", config.listen))?;
        let local_addr = tcp
            .local_addr()
            .first()
            .and_then(|a| a.as_socket_addr().copied())
            .context("the listener has no address")?;
        let acceptor = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => tcp
                .rustls(crate::tls::watch(
                    cert.clone(),
                    key.clone(),
                    config.tls_reload_interval,
                )?)
                .boxed(),
            _ => tcp.boxed(),
        };
        let metrics = crate::metrics::Metrics::new(&store);
        let metrics_acceptor = match &config.metrics_listen {
            None => None,
            Some(addr) => {
                let acceptor = TcpListener::bind(addr.clone())
                    .into_acceptor()
                    .await
                    .with_context(|| format!("Failed to listen on {addr} (WA_METRICS_LISTEN)"))?;
                if let Some(bound) = acceptor
                    .local_addr()
                    .first()
                    .and_then(|a| a.as_socket_addr().copied())
                {
                    metrics.set_listen_addr(bound);
                }
                Some(acceptor.boxed())
            }
        };
        let api_calls = crate::api::calls::Recorder::new(store.clone(), sessions.clone());
        let rate_limits = Arc::new(crate::api::rate_limit::RateLimits::new(
            config.rate_limit_per_min,
        ));
        let login_guard = Arc::new(crate::domain::logins::LoginGuard::new(
            config.login_max_failures,
        ));
        let state = AppState {
            rate_limits,
            login_guard,
            config: Arc::new(config),
            store,
            tokens,
            sessions,
            sim,
            media_client,
            views,
            backbone,
            webhooks,
            key_cache: Arc::default(),
            secrets: sealer,
            idempotency: Arc::default(),
            api_calls,
            shutdown: shutdown.child_token(),
            metrics,
        };
        let consumers = build_consumers(&state).await?;
        Ok(Self {
            state,
            acceptor,
            metrics_acceptor,
            local_addr,
            shutdown,
            consumers,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The shared state (tests read the store through it).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Cancelling this token stops the whole gateway.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Serves until the shutdown token is cancelled, then stops every part.
    pub async fn run(self) -> anyhow::Result<()> {
        let App {
            state,
            acceptor,
            metrics_acceptor,
            shutdown,
            consumers,
            ..
        } = self;
        let tap_task = tokio::spawn(crate::metrics::tap(
            state.store.clone(),
            state.metrics.clone(),
            state.store.head(),
            shutdown.child_token(),
        ));
        let stuck_task = tokio::spawn(crate::metrics::stuck::watch(
            state.clone(),
            shutdown.child_token(),
        ));
        let metrics_server = metrics_acceptor.map(|acceptor| {
            use poem::EndpointExt;
            let routes = poem::Route::new()
                .at(
                    "/metrics",
                    poem::get(crate::metrics::guard::on_metrics_port),
                )
                .data(state.clone());
            let stop = shutdown.clone();
            tokio::spawn(
                poem::Server::new_with_acceptor(acceptor).run_with_graceful_shutdown(
                    routes,
                    async move { stop.cancelled().await },
                    Some(Duration::from_secs(5)),
                ),
            )
        });
        let webhook_task = state.webhooks.spawn(shutdown.child_token());
        let consumer_tasks: Vec<_> = consumers
            .into_iter()
            .map(|c| state.backbone.spawn_consumer(c, shutdown.child_token()))
            .collect();
        // The relay has its own token: it outlives the rest so that it can
        // publish what the shutdown itself appends (see `drain_relay`).
        let relay_stop = CancellationToken::new();
        let relay_task = match &state.backbone {
            Backbone::Nats(nats, store) => Some(tokio::spawn(
                crate::relay::Relay::new(store.clone(), nats.clone()).run(relay_stop.clone()),
            )),
            Backbone::Embedded(_) => None,
        };
        let routes = crate::api::routes(state.clone());
        let stop = shutdown.clone();
        let server = poem::Server::new_with_acceptor(acceptor).run_with_graceful_shutdown(
            routes,
            async move { stop.cancelled().await },
            Some(Duration::from_secs(5)),
        );
        let result = server.await.context("the HTTP server failed");
        shutdown.cancel();
        state.sessions.shutdown().await;
        for task in consumer_tasks {
            let _ = task.await;
        }
        let _ = webhook_task.await;
        let _ = tap_task.await;
        let _ = stuck_task.await;
        if let Some(task) = metrics_server {
            let _ = task.await;
        }
        // Nothing appends any more: the relay publishes up to the head, then stops.
        if let (Backbone::Nats(nats, store), Some(task)) = (&state.backbone, relay_task) {
            crate::relay::drain(nats, store, crate::relay::DRAIN_TIMEOUT).await;
            relay_stop.cancel();
            let _ = task.await;
        }
        tracing::info!("gateway stopped");
        result
    }
}
