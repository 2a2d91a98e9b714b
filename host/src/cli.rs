//! The command line: `serve`, `demo`, `token`, and `component check|load`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::Config;
use crate::policy::{ComponentVersion, SlotKind};

/// gateway-host: one upstream Discord gateway link, fanned out to browsers, with
/// hot-swappable WebAssembly policy components.
#[derive(Debug, Parser)]
#[command(name = "gateway-host", version, about, long_about = None)]
pub struct Cli {
    /// Log format (filter with RUST_LOG, default `info`).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "GATEWAY_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the host: the upstream link (LINK_URL, LINK_TOKEN required), or direct Discord
    /// mode (DISCORD_BOT_TOKEN set, LINK_URL not set), and the listeners on
    /// GATEWAY_HTTP_ADDR and GATEWAY_ADMIN_ADDR.
    Serve {
        /// TOML configuration file (see docs/configuration.md); the environment overrides it.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Run the demo: an embedded simulator, the default components and the demo page
    /// (GATEWAY_HTTP_ADDR, default 127.0.0.1:8080). No other set-up needed.
    Demo {
        /// TOML configuration file (see docs/configuration.md); the environment overrides it.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Direct Discord mode against an embedded fake Discord instead of the simulator.
        #[arg(long)]
        discord_fake: bool,
    },
    /// Mint a caller token (HS256 with GATEWAY_JWT_SECRET, at least 32 bytes) for
    /// development and tests; with --config, it carries the `[auth]` issuer and audience.
    Token {
        /// The user id (`sub`).
        #[arg(long)]
        sub: String,
        /// Topic patterns the token may subscribe to, comma-separated (e.g. guild:*,channel:2).
        #[arg(long, value_delimiter = ',', default_value = "*")]
        topics: Vec<String>,
        /// Command kinds the token may send, comma-separated (send-message, add-reaction, typing-start, *).
        #[arg(long, value_delimiter = ',', default_value = "*")]
        cmds: Vec<String>,
        /// Event types the token may publish through POST /api/internal/events, comma-separated (e.g. APP_*); default none.
        #[arg(long, value_delimiter = ',')]
        publish: Vec<String>,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl: u64,
        /// The signing secret.
        #[arg(long, env = "GATEWAY_JWT_SECRET", hide_env_values = true)]
        secret: String,
        /// Configuration file whose `[auth]` issuer/audience the token carries.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Check or hot-load a policy component.
    #[command(subcommand)]
    Component(ComponentCommand),
}

#[derive(Debug, Subcommand)]
enum ComponentCommand {
    /// Validate a component offline: compile, world check, instantiate, init.
    Check {
        /// Slot: event-router, rate-limiter, command-validator or voice-filter.
        #[arg(long)]
        slot: SlotKind,
        /// The component (.wasm).
        file: PathBuf,
        /// Configuration file whose slot settings are handed to `init`.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Hot-load a component into a running host through its admin API.
    Load {
        /// Slot: event-router, rate-limiter, command-validator or voice-filter.
        #[arg(long)]
        slot: SlotKind,
        /// The component (.wasm).
        file: PathBuf,
        /// Admin listener of the running host.
        #[arg(long, env = "GATEWAY_ADMIN_ADDR", default_value = crate::config::DEFAULT_ADMIN_ADDR)]
        admin_addr: String,
        /// Admin token of the running host.
        #[arg(long, env = "GATEWAY_ADMIN_TOKEN", hide_env_values = true)]
        admin_token: String,
    },
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match run(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let layer = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Json => crate::logging::JsonLogLayer::new(std::io::stderr).boxed(),
    };
    // Secrets never reach the log, whatever RUST_LOG says (see link::redact).
    let layer = layer.with_filter(tracing_subscriber::filter::filter_fn(
        crate::link::redact::may_log,
    ));
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(layer)
        .try_init();
}

fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve { config } => {
            let upstream = crate::server::Upstream::from_env()?;
            let config = Config::load(config.as_deref())?;
            let runtime = tokio::runtime::Runtime::new()?;
            let shutdown = crate::server::shutdown_signal();
            let result = runtime.block_on(crate::server::serve(config, upstream, shutdown));
            // Whatever is still running (a stuck connection, a blocking call) must not hold
            // the exit: the shutdown deadline has already passed for it.
            runtime.shutdown_timeout(std::time::Duration::from_secs(1));
            result?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo {
            config,
            discord_fake,
        } => {
            let config = Config::load(config.as_deref())?;
            let runtime = tokio::runtime::Runtime::new()?;
            let shutdown = crate::server::shutdown_signal();
            let result = if discord_fake {
                runtime.block_on(crate::demo::run_discord_fake(config, shutdown))
            } else {
                runtime.block_on(crate::demo::run(config, shutdown))
            };
            runtime.shutdown_timeout(std::time::Duration::from_secs(1));
            result?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Token {
            sub,
            topics,
            cmds,
            publish,
            ttl,
            secret,
            config,
        } => {
            let ttl = std::time::Duration::from_secs(ttl);
            let settings = match config {
                Some(path) => Config::load(Some(&path))?.auth,
                None => crate::auth::AuthSettings::default(),
            };
            let secret = crate::config::Secret::new(secret);
            crate::auth::check_secret(&secret).map_err(anyhow::Error::msg)?;
            let auth = crate::auth::Authenticator::with_settings(&secret, settings);
            println!(
                "{}",
                auth.mint_with_publish(&sub, topics, cmds, publish, ttl)?
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Component(ComponentCommand::Check { slot, file, config }) => {
            check(slot, &file, config)
        }
        Command::Component(ComponentCommand::Load {
            slot,
            file,
            admin_addr,
            admin_token,
        }) => load(slot, &file, &admin_addr, &admin_token),
    }
}

fn check(
    slot: SlotKind,
    file: &std::path::Path,
    config: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let config = Config::load(config.as_deref())?;
    let bytes =
        std::fs::read(file).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
    let runtime = crate::policy::runtime::PolicyRuntime::new(config.policy.limits.clone())?;
    match ComponentVersion::load(
        &runtime,
        slot,
        &bytes,
        config.slot(slot).config,
        file.display().to_string(),
    ) {
        Ok(version) => {
            println!(
                "ok: {} implements {slot} (sha256 {}, {} bytes)",
                file.display(),
                version.sha256(),
                bytes.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            println!("refused: {} for slot {slot}: {e}", file.display());
            Ok(ExitCode::from(1))
        }
    }
}

fn load(
    slot: SlotKind,
    file: &std::path::Path,
    admin_addr: &str,
    token: &str,
) -> anyhow::Result<ExitCode> {
    let bytes =
        std::fs::read(file).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
    let base = if admin_addr.contains("://") {
        admin_addr.to_string()
    } else {
        format!("http://{admin_addr}")
    };
    let url = format!("{}/admin/components/{slot}", base.trim_end_matches('/'));
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut response = agent
        .put(&url)
        .header("Authorization", &format!("Bearer {token}"))
        .header("Content-Type", "application/wasm")
        .send(&bytes[..])
        .map_err(|e| anyhow::anyhow!("cannot reach the admin API at {url}: {e}"))?;
    let status = response.status();
    let body = response.body_mut().read_to_string().unwrap_or_default();
    println!("{body}");
    if status.is_success() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("load refused ({status})");
        Ok(ExitCode::from(1))
    }
}
