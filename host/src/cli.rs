//! The command line: `serve`, `demo`, `token`, and `component check|load|test|new`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::Config;
use crate::policy::component_config::{parse_toml, resolve_config};
use crate::policy::{ComponentVersion, SlotKind};

/// `gateway-host --version`: the host's version and the WIT package version it serves.
static VERSION_LINE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "{} ({}@{})",
        env!("CARGO_PKG_VERSION"),
        crate::policy::wit_version::PACKAGE,
        crate::policy::wit_version::version_text()
    )
});

/// gateway-host: one upstream Discord gateway link, fanned out to browsers, with
/// hot-swappable WebAssembly policy components.
#[derive(Debug, Parser)]
#[command(name = "gateway-host", version = VERSION_LINE.as_str(), about, long_about = None)]
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
    /// Validate a component offline: compile, WIT version, imports, world, instantiate,
    /// init. Only `init` is called, never the slot's other functions. `init` gets the same
    /// configuration `serve` would give it: --component-config if given, else the `.toml`
    /// beside FILE (same stem), else the host config file's slot keys.
    Check {
        /// Slot: event-router, rate-limiter, command-validator or voice-filter.
        #[arg(long)]
        slot: SlotKind,
        /// The component (.wasm).
        file: PathBuf,
        /// Host configuration file (limits; its slot keys if nothing closer configures FILE).
        #[arg(long)]
        config: Option<PathBuf>,
        /// The component's own configuration (a flat TOML table).
        #[arg(long)]
        component_config: Option<PathBuf>,
    },
    /// Hot-load a component into a running host through its admin API.
    Load {
        /// Slot: event-router, rate-limiter, command-validator or voice-filter.
        #[arg(long)]
        slot: SlotKind,
        /// The component (.wasm).
        file: PathBuf,
        /// The component's configuration (a flat TOML table), sent with it; without it the
        /// component gets an empty configuration.
        #[arg(long)]
        component_config: Option<PathBuf>,
        /// Admin listener of the running host.
        #[arg(long, env = "GATEWAY_ADMIN_ADDR", default_value = crate::config::DEFAULT_ADMIN_ADDR)]
        admin_addr: String,
        /// Admin token of the running host.
        #[arg(long, env = "GATEWAY_ADMIN_TOKEN", hide_env_values = true)]
        admin_token: String,
    },
    /// Run a component against a case file (JSON Lines: input and expected verdict per
    /// line); exit 0 if every case passes, 1 if one fails, 2 if the case file is bad.
    Test {
        /// Slot: event-router, rate-limiter, command-validator or voice-filter.
        #[arg(long)]
        slot: SlotKind,
        /// The component (.wasm).
        file: PathBuf,
        /// The case file (see docs/component-authors.md).
        #[arg(long)]
        cases: PathBuf,
        /// Configuration file whose slot settings are handed to `init` (and whose limits apply).
        #[arg(long)]
        config: Option<PathBuf>,
        /// The component's own config (flat TOML `key = value`), handed to `init`.
        #[arg(long)]
        component_config: Option<PathBuf>,
    },
    /// Create a component crate for a slot from the built-in template.
    New {
        /// Slot: event-router, rate-limiter, command-validator or voice-filter.
        #[arg(long)]
        slot: SlotKind,
        /// Crate name (lowercase letters, digits, '-', '_'); also the directory name.
        name: String,
        /// Directory to create the crate in.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
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
            let config = Config::load(config.as_deref())?;
            let upstream = crate::server::Upstream::from_config_and_lookup(&config.discord, |k| {
                std::env::var(k).ok()
            })?;
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
        Command::Component(ComponentCommand::Check {
            slot,
            file,
            config,
            component_config,
        }) => check(slot, &file, config, component_config),
        Command::Component(ComponentCommand::Load {
            slot,
            file,
            component_config,
            admin_addr,
            admin_token,
        }) => load(
            slot,
            &file,
            component_config.as_deref(),
            &admin_addr,
            &admin_token,
        ),
        Command::Component(ComponentCommand::Test {
            slot,
            file,
            cases,
            config,
            component_config,
        }) => crate::authoring::test_component(
            slot,
            &file,
            &cases,
            config.as_deref(),
            component_config.as_deref(),
        ),
        Command::Component(ComponentCommand::New { slot, name, dir }) => {
            let root = crate::authoring::template::create(slot, &name, &dir)?;
            println!(
                "{}",
                crate::authoring::template::next_steps(slot, &name, &root)
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn check(
    slot: SlotKind,
    file: &std::path::Path,
    config: Option<PathBuf>,
    component_config: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let config = Config::load(config.as_deref())?;
    match check_component(&config, slot, file, component_config.as_deref())? {
        Ok(version) => {
            println!(
                "ok: {} implements {slot} (sha256 {}, {} bytes)",
                file.display(),
                version.sha256(),
                version.info().size_bytes
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            println!(
                "refused: {} for slot {slot} (step {}): {e}",
                file.display(),
                crate::admin::load_step(&e)
            );
            Ok(ExitCode::from(1))
        }
    }
}

/// `component check`: load `file` for `slot` exactly as `serve` would load it from a
/// components directory (same configuration rule, see [`resolve_config`]: the explicit
/// `component_config`, else the `.toml` beside `file`, else `config`'s slot keys), without
/// touching any live slot. Only `init` runs. The outer error is a file that could not be
/// read; the inner one the step the component failed at.
pub fn check_component(
    config: &Config,
    slot: SlotKind,
    file: &std::path::Path,
    component_config: Option<&std::path::Path>,
) -> anyhow::Result<Result<ComponentVersion, crate::policy::LoadError>> {
    let bytes =
        std::fs::read(file).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
    let init_config = resolve_config(Some(file), component_config, &config.slot(slot).config)
        .map_err(anyhow::Error::msg)?;
    let runtime = crate::policy::runtime::PolicyRuntime::new(config.policy.limits.clone())?;
    Ok(ComponentVersion::load(
        &runtime,
        slot,
        &bytes,
        init_config,
        file.display().to_string(),
    ))
}

fn load(
    slot: SlotKind,
    file: &std::path::Path,
    component_config: Option<&std::path::Path>,
    admin_addr: &str,
    token: &str,
) -> anyhow::Result<ExitCode> {
    let bytes =
        std::fs::read(file).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
    let (content_type, body) = match component_config {
        None => ("application/wasm".to_string(), bytes),
        Some(path) => {
            let config = std::fs::read(path)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
            // Refuse locally what the host would refuse, with the file named.
            let text = std::str::from_utf8(&config)
                .map_err(|_| anyhow::anyhow!("{}: is not UTF-8 text", path.display()))?;
            parse_toml(text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            multipart_body(&bytes, &config)
        }
    };
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
        .header("Content-Type", &content_type)
        .send(&body[..])
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

/// A `multipart/form-data` body with the parts `component` (the wasm) and `config` (TOML),
/// and its content type. The boundary is random and checked not to occur in either part.
pub fn multipart_body(component: &[u8], config: &[u8]) -> (String, Vec<u8>) {
    let boundary = loop {
        let candidate = format!("gateway-host-{:032x}", rand::random::<u128>());
        let found = |data: &[u8]| {
            data.windows(candidate.len())
                .any(|w| w == candidate.as_bytes())
        };
        if !found(component) && !found(config) {
            break candidate;
        }
    };
    let mut body = Vec::with_capacity(component.len() + config.len() + 512);
    let mut part = |name: &str, filename: &str, content_type: &str, data: &[u8]| {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\nContent-Type: {content_type}\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    };
    part("component", "component.wasm", "application/wasm", component);
    part("config", "config.toml", "application/toml", config);
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}
