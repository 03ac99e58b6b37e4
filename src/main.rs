//! The `wa-gateway` binary: parses the command line and configuration,
//! starts tracing, and runs the gateway or one of its tools.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use wa_gateway::config::Config;
use wa_gateway::domain::types::{Email, NewPassword};
use wa_gateway::domain::users::{self, NewUser};

/// mimalloc instead of glibc's malloc: a request and its events allocate many
/// small, short-lived values across threads, where glibc's arenas spent about
/// a quarter of the send benchmark's CPU time (README, "Decisions").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "wa-gateway",
    version,
    about = "Multi-instance WhatsApp HTTP API gateway"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (the default).
    Serve,
    /// Manage users.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Print the OpenAPI document (or write it to a file).
    Openapi {
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Manage the read models built from the event log.
    Projections {
        #[command(subcommand)]
        command: ProjectionsCommand,
    },
    /// Write one JSON Schema per event type.
    Schemas {
        #[arg(long, default_value = "schemas")]
        out: PathBuf,
    },
    /// Manage the key that seals API keys and webhook secrets at rest.
    Secrets {
        #[command(subcommand)]
        command: SecretsCommand,
    },
    /// Read the event log.
    Events {
        #[command(subcommand)]
        command: EventsCommand,
    },
}

#[derive(Subcommand)]
enum EventsCommand {
    /// Write the log as NDJSON (one event envelope per line), filtered; from
    /// the data dir's SQLite log, or with `--from-nats` from the JetStream stream.
    Replay {
        /// First global position (inclusive).
        #[arg(long)]
        from_position: Option<i64>,
        /// Last global position (inclusive).
        #[arg(long)]
        to_position: Option<i64>,
        /// Recorded at or after (RFC 3339 or unix milliseconds).
        #[arg(long, value_parser = wa_gateway::replay::parse_time)]
        since: Option<chrono::DateTime<chrono::Utc>>,
        /// Recorded before (RFC 3339 or unix milliseconds).
        #[arg(long, value_parser = wa_gateway::replay::parse_time)]
        until: Option<chrono::DateTime<chrono::Utc>>,
        /// Only this user's events.
        #[arg(long)]
        user: Option<String>,
        /// Only this instance's events.
        #[arg(long)]
        instance: Option<String>,
        /// Only these event types (repeat or comma-separate).
        #[arg(long = "type", value_delimiter = ',')]
        event_types: Vec<String>,
        /// Read the JetStream stream (`WA_NATS_URL`) instead of the SQLite log.
        #[arg(long)]
        from_nats: bool,
        /// Write to this file instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum SecretsCommand {
    /// Replace the key file's key with a new one and re-seal every stored
    /// secret under it (run while the gateway is stopped). With
    /// `WA_SECRETS_KEY`, rotate by setting the new key there and the old one
    /// in `WA_SECRETS_KEY_PREVIOUS`, then start the gateway once.
    RotateKey,
    /// Print a new random key for `WA_SECRETS_KEY`.
    GenerateKey,
}

#[derive(Subcommand)]
enum ProjectionsCommand {
    /// Drop a projection's tables and replay the whole log into them
    /// (`activity`, `messages`, `stats`; all when no name is given).
    Rebuild {
        #[arg(value_parser = clap::builder::PossibleValuesParser::new(wa_gateway::projections::NAMES))]
        name: Option<String>,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a user in the data dir's store.
    Create {
        #[arg(long)]
        email: String,
        #[arg(long)]
        password: String,
        #[arg(long, default_value = "")]
        first_name: String,
        #[arg(long, default_value = "")]
        last_name: String,
        #[arg(long)]
        admin: bool,
    },
}

fn init_tracing(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .try_init();
}

/// Tracing for tools whose stdout is data (`events replay`): logs go to stderr.
fn init_tracing_stderr(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr)
        .try_init();
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    wa_gateway::net::install_crypto_provider();
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve) {
        Command::Openapi { out } => {
            let spec = wa_gateway::api::spec_json();
            match out {
                Some(path) => std::fs::write(&path, spec)
                    .with_context(|| format!("Failed to write {}", path.display()))?,
                None => print!("{spec}"),
            }
            Ok(())
        }
        Command::Schemas { out } => {
            let written = wa_gateway::events::write_schemas(&out)?;
            println!("wrote {} schemas to {}", written.len(), out.display());
            Ok(())
        }
        Command::Secrets { command } => {
            let config = Config::from_env()?;
            init_tracing(&config.log_filter);
            match command {
                SecretsCommand::GenerateKey => {
                    println!("{}", wa_gateway::secrets::Sealer::new_key_text());
                    Ok(())
                }
                SecretsCommand::RotateKey => {
                    anyhow::ensure!(
                        config.secrets_key.is_none(),
                        "WA_SECRETS_KEY is set: put the new key there and the old one in \
                         WA_SECRETS_KEY_PREVIOUS, then start the gateway (it re-seals on start)"
                    );
                    let file = wa_gateway::secrets::key_file(
                        &config.data_dir,
                        config.secrets_key_file.as_deref(),
                    );
                    anyhow::ensure!(
                        file.exists(),
                        "no secrets key file at {} (start the gateway once to create it)",
                        file.display()
                    );
                    let store =
                        wa_gateway::store::EventStore::open(&config.data_dir.join("events.db"))
                            .await?;
                    let (old, new, count) =
                        wa_gateway::secrets::rotate_key_file(&file, store.pool()).await?;
                    println!("rotated the secrets key {old} -> {new}; re-sealed {count} values");
                    Ok(())
                }
            }
        }
        Command::Projections {
            command: ProjectionsCommand::Rebuild { name },
        } => {
            let config = Config::from_env()?;
            init_tracing(&config.log_filter);
            let store =
                wa_gateway::store::EventStore::open(&config.data_dir.join("events.db")).await?;
            let views =
                wa_gateway::store::open_sqlite(&config.data_dir.join("views.db"), 2).await?;
            wa_gateway::projections::rebuild(&views, &store, name.as_deref()).await?;
            println!(
                "rebuilt {} up to position {}",
                name.as_deref().unwrap_or("every projection"),
                store.head()
            );
            Ok(())
        }
        Command::User {
            command:
                UserCommand::Create {
                    email,
                    password,
                    first_name,
                    last_name,
                    admin,
                },
        } => {
            let config = Config::from_env()?;
            init_tracing(&config.log_filter);
            wa_gateway::secrets::private_dir(&config.data_dir)?;
            let sealer = sealer(&config)?;
            let store =
                wa_gateway::store::EventStore::open(&config.data_dir.join("events.db")).await?;
            let new = NewUser {
                email: Email::parse(&email).map_err(anyhow::Error::msg)?,
                password: NewPassword::parse(&password).map_err(anyhow::Error::msg)?,
                first_name,
                last_name,
                is_admin: admin,
            };
            let user = users::register(&store, &sealer, new, "cli")
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!(
                "created user {} ({}){}",
                user.email,
                user.id,
                if admin { " as admin" } else { "" }
            );
            println!("API key: {}", user.api_key);
            Ok(())
        }
        Command::Events {
            command:
                EventsCommand::Replay {
                    from_position,
                    to_position,
                    since,
                    until,
                    user,
                    instance,
                    event_types,
                    from_nats,
                    out,
                },
        } => {
            let config = Config::from_env()?;
            init_tracing_stderr(&config.log_filter);
            let filter = wa_gateway::replay::ReplayFilter {
                from_position,
                to_position,
                since,
                until,
                user_id: user,
                instance_id: instance,
                event_types,
            };
            replay(&config, &filter, from_nats, out).await
        }
        Command::Serve => {
            let config = Config::from_env()?;
            init_tracing(&config.log_filter);
            let app = wa_gateway::App::build(config).await?;
            tracing::info!(addr = %app.local_addr(), "wa-gateway listening; API docs at /docs");
            let token = app.shutdown_token();
            tokio::spawn(async move {
                wait_for_signal().await;
                tracing::info!("shutting down");
                token.cancel();
            });
            app.run().await
        }
    }
}

/// `events replay`: NDJSON to stdout or a file; the count goes to stderr.
async fn replay(
    config: &Config,
    filter: &wa_gateway::replay::ReplayFilter,
    from_nats: bool,
    out: Option<PathBuf>,
) -> anyhow::Result<()> {
    use std::io::Write;
    let mut sink: Box<dyn Write> = match &out {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path)
                .with_context(|| format!("Failed to create {}", path.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let written = if from_nats {
        let settings = wa_gateway::backbone::nats::NatsSettings::from_config(config)
            .context("--from-nats needs WA_NATS_URL")?;
        let nats = wa_gateway::backbone::nats::NatsBackbone::connect(&settings).await?;
        wa_gateway::replay::from_nats(&nats, filter, &mut sink).await?
    } else {
        let path = config.data_dir.join("events.db");
        anyhow::ensure!(
            path.exists(),
            "no event log at {} (set WA_DATA_DIR)",
            path.display()
        );
        let pool = wa_gateway::store::open_sqlite(&path, 2).await?;
        wa_gateway::replay::from_log(&pool, filter, &mut sink).await?
    };
    sink.flush()?;
    eprintln!("replayed {written} events");
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// The sealer of stored secrets, from `WA_SECRETS_KEY` or the key file.
fn sealer(config: &Config) -> anyhow::Result<wa_gateway::secrets::Sealer> {
    wa_gateway::secrets::load_or_create(
        config.secrets_key.as_ref(),
        &config.secrets_key_previous,
        &wa_gateway::secrets::key_file(&config.data_dir, config.secrets_key_file.as_deref()),
    )
}
