//! The `warden` binary: command-line parsing and dispatch. `anyhow` lives only here.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;

use clap::{Parser, Subcommand};
use warden::client::ClientCommand;

#[derive(Debug, Parser)]
#[command(
    name = "warden",
    version,
    about = "Supervisor for trading stacks that keeps the Kite access token alive"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    config: ConfigArg,
}

#[derive(Debug, Clone, clap::Args)]
struct ConfigArg {
    /// Config file [default: $WARDEN_CONFIG or ./supervisor.toml]
    #[arg(short = 'c', long = "config", global = true)]
    config: Option<PathBuf>,
}

impl ConfigArg {
    fn path(&self) -> PathBuf {
        self.config
            .clone()
            .or_else(|| std::env::var_os("WARDEN_CONFIG").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("supervisor.toml"))
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Supervise the programs of the config (the default)
    Run,
    /// Validate the config; print each problem with its key path and line
    Check,
    /// Show programs and token state of the running warden
    Status {
        #[arg(long)]
        json: bool,
        /// Redraw the table every 2 s until Ctrl-C (keeps trying while warden is away)
        #[arg(long, conflicts_with = "json")]
        watch: bool,
    },
    /// Preflight: config, files, broker, clock, programs; a checklist with the fix for each ✗
    Doctor {
        #[arg(long)]
        json: bool,
    },
    /// Restart one program via the running warden
    Restart { name: String },
    /// The event history of the running warden (times in its configured timezone)
    Events {
        /// Keep printing new events as they happen, until interrupted
        #[arg(long)]
        follow: bool,
        /// One JSON object per line instead of human lines
        #[arg(long)]
        json: bool,
        /// How many of the newest events to show (at most 1000)
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Only events after this: an event's seq or an RFC 3339 time (2026-12-07T09:15:00+05:30)
        #[arg(long)]
        since: Option<String>,
    },
    /// Token operations on the running warden
    Token {
        #[command(subcommand)]
        op: TokenOp,
    },
    /// Print the login URL for a manual login (NAME: which token, when there are several)
    LoginUrl { name: Option<String> },
    /// Local stand-ins for the brokers (Kite, Angel One, Dhan, Upstox, Fyers) and a backend
    #[cfg(feature = "sandbox")]
    Sandbox {
        #[command(subcommand)]
        what: Box<SandboxCmd>,
    },
}

#[derive(Debug, Subcommand)]
enum TokenOp {
    /// Ask the running warden to refresh the token now (NAME: which token, when there are several)
    Refresh { name: Option<String> },
    /// Token state, expiry and last error, never the token itself (NAME: only that token)
    Status { name: Option<String> },
    /// Lift a credential block after you fixed its cause (allows one automated attempt)
    Unblock { name: Option<String> },
}

#[cfg(feature = "sandbox")]
#[derive(Debug, Subcommand)]
enum SandboxCmd {
    /// A local Kite Connect simulator
    Kite(warden::sandbox::kite::KiteArgs),
    /// The demo backend child
    Backend(warden::sandbox::backend::BackendArgs),
    /// A local Angel One SmartAPI simulator
    Angelone(warden::sandbox::angelone::AngeloneArgs),
    /// A local DhanHQ v2 simulator
    Dhan(warden::sandbox::dhan::DhanArgs),
    /// A local Upstox v2 simulator (with the Access Token Request)
    Upstox(warden::sandbox::upstox::UpstoxArgs),
    /// A local Fyers API v3 simulator
    Fyers(warden::sandbox::fyers::FyersArgs),
}

fn main() -> ExitCode {
    // Programs (and `${WARDEN_EXE}` in the config) can find this very binary, e.g. to run
    // `warden sandbox …` as a child. Set before any thread exists.
    if std::env::var_os("WARDEN_EXE").is_none() {
        if let Ok(exe) = std::env::current_exe() {
            std::env::set_var("WARDEN_EXE", exe);
        }
    }
    let cli = Cli::parse();
    let config = cli.config.path();
    match cli.command.unwrap_or(Command::Run) {
        Command::Check => check(&config),
        Command::Run => run(&config),
        #[cfg(feature = "sandbox")]
        Command::Sandbox { what } => sandbox(*what),
        Command::Status { watch: true, .. } => watch(&config),
        Command::Status { json, .. } => client(ClientCommand::Status { json }, &config),
        Command::Doctor { json } => doctor(&config, json),
        Command::Restart { name } => client(ClientCommand::Restart { name }, &config),
        Command::Events {
            follow,
            json,
            limit,
            since,
        } => events(
            &config,
            &warden::client::EventsOptions {
                follow,
                json,
                limit,
                since,
            },
        ),
        Command::Token {
            op: TokenOp::Refresh { name },
        } => client(ClientCommand::TokenRefresh { name }, &config),
        Command::Token {
            op: TokenOp::Status { name },
        } => client(ClientCommand::TokenStatus { name }, &config),
        Command::Token {
            op: TokenOp::Unblock { name },
        } => client(ClientCommand::TokenUnblock { name }, &config),
        Command::LoginUrl { name } => client(ClientCommand::LoginUrl { name }, &config),
    }
}

/// `warden sandbox …`: exit 1 when a stand-in cannot start or fails.
#[cfg(feature = "sandbox")]
fn sandbox(what: SandboxCmd) -> ExitCode {
    let result = runtime().and_then(|rt| {
        rt.block_on(async {
            match what {
                SandboxCmd::Kite(a) => warden::sandbox::kite::run(a).await,
                SandboxCmd::Backend(a) => warden::sandbox::backend::run(a).await,
                SandboxCmd::Angelone(a) => warden::sandbox::angelone::run(a).await,
                SandboxCmd::Dhan(a) => warden::sandbox::dhan::run(a).await,
                SandboxCmd::Upstox(a) => warden::sandbox::upstox::run(a).await,
                SandboxCmd::Fyers(a) => warden::sandbox::fyers::run(a).await,
            }
        })
        .map_err(anyhow::Error::from)
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("warden: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// `warden run`: exit 2 for a bad config, 1 for a runtime failure, 0 after a graceful stop.
fn run(path: &std::path::Path) -> ExitCode {
    // SPEC §7.1: before any secret is read, so that a program running as the same user cannot
    // read them from warden's memory or /proc/<warden>/environ (a non-dumpable process's /proc
    // files belong to root, and ptrace is refused). Programs are dumpable again after exec.
    let not_dumpable = nix::sys::prctl::set_dumpable(false);
    // Before any thread exists: takes NOTIFY_SOCKET & co. out of the environment programs inherit.
    warden::sdnotify::init();
    let cfg = match load_checked(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let not_writable = warden::token::writable::check(&cfg);
    if !not_writable.is_empty() {
        for e in &not_writable {
            eprintln!("{}: {e}", path.display());
        }
        return ExitCode::from(1);
    }
    // Taken out of the environment before any thread exists, so programs do not inherit it.
    let addr_file = std::env::var_os(ADDR_FILE_ENV).map(PathBuf::from);
    std::env::remove_var(ADDR_FILE_ENV);
    warden::logs::init(cfg.supervisor.log_format);
    if let Err(e) = not_dumpable {
        tracing::warn!("cannot mark warden non-dumpable ({e}); programs running as the same user could read its memory");
    }
    for w in &cfg.warnings {
        tracing::warn!("{}", w.located(path, ""));
    }
    // Room for 512 HTTP connections besides every program's pipes; programs get the old limit.
    match warden::rlimit::raise_open_files() {
        Ok(Some((before, after))) => {
            tracing::info!(
                "open-file limit raised from {before} to {after} (programs keep {before})"
            )
        }
        Ok(None) => {}
        Err(e) => tracing::warn!("cannot raise the open-file limit ({e}); keeping it"),
    }
    if let Err(e) = warden::reaper::become_subreaper() {
        tracing::warn!("cannot become a child subreaper ({e}); orphans of programs will not be reaped by warden");
    }
    let result = runtime().and_then(|rt| {
        rt.block_on(async {
            let reaper = warden::reaper::Reaper::start()?;
            let parts = compose(&cfg, reaper, addr_file.as_deref()).await?;
            let journal = parts.journal.clone();
            let supervised = warden::supervisor::Supervisor::new(cfg, parts).run().await;
            // The last events of a stop may still wait in the writer's queue.
            journal.flush(std::time::Duration::from_millis(500));
            supervised?;
            Ok(())
        })
    });
    let code = match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::from(1)
        }
    };
    // The log is written by a thread of its own; give it a moment to pass on the last lines,
    // but never wait on a reader that stopped reading.
    warden::log_sink::flush(std::time::Duration::from_millis(500));
    code
}

/// Names a file `warden run` writes its bound HTTP address to (`127.0.0.1:41234`), for
/// scripts and tests that configure `listen = "127.0.0.1:0"`.
const ADDR_FILE_ENV: &str = "WARDEN_HTTP_ADDR_FILE";

/// The composition root: everything the supervisor works with is built here and passed in.
async fn compose(
    cfg: &warden::config::Config,
    reaper: warden::reaper::Reaper,
    addr_file: Option<&std::path::Path>,
) -> anyhow::Result<warden::supervisor::Parts> {
    let metrics = Arc::new(warden::metrics::Metrics::new());
    reaper.set_metrics(metrics.clone());
    let notifier = warden::notify::Notifier::with_options(
        &cfg.notify,
        warden::notify::NotifierOptions {
            state_dir: Some(cfg.supervisor.state_dir.clone()),
            ..Default::default()
        },
    );
    notifier.set_metrics(&metrics);
    let journal = warden::journal::Journal::open(&cfg.supervisor.state_dir);
    notifier.set_journal(&journal);
    let (sig_tx, signals) = tokio::sync::mpsc::unbounded_channel();
    warden::signals::listen(sig_tx).context("cannot install signal handlers")?;
    let listener = warden::http::bind(cfg.http.listen).await?;
    if let Some(file) = addr_file {
        let addr = listener.local_addr()?;
        write_addr_file(file, &addr.to_string())
            .with_context(|| format!("cannot write {ADDR_FILE_ENV}={}", file.display()))?;
    }
    // One keeper per token (SPEC §9.1): each gets its broker client and, in fleet mode, its
    // own fleet (its own leader election), with metrics labelled by its name.
    let token_metrics = metrics.clone();
    let token_parts: warden::supervisor::TokenPartsFactory = Box::new(move |t| {
        let name = t.display_name();
        let metrics = Arc::new(token_metrics.for_token(&name));
        match start_fleet(t, &metrics) {
            Ok(fleet) => Some(warden::supervisor::TokenParts {
                broker: warden::token::broker::KiteBroker::new(t.kite.clone()),
                fleet,
            }),
            Err(e) => {
                // Logging in without the fleet lock would kill the other wardens' token.
                tracing::error!(
                    token = %name,
                    "fleet mode cannot start ({e}); this warden will not manage this token"
                );
                None
            }
        }
    });
    Ok(warden::supervisor::Parts {
        reaper,
        metrics,
        notifier,
        listener,
        signals,
        token_parts,
        journal,
    })
}

type StartedFleet = (
    warden::token::fleet::Fleet,
    tokio::sync::mpsc::UnboundedReceiver<warden::token::fleet::FleetEvent>,
);

/// Fleet mode (`token.store.kind = "redis"`) only; connects lazily.
fn start_fleet(
    t: &warden::config::TokenConfig,
    metrics: &Arc<warden::metrics::Metrics>,
) -> Result<Option<StartedFleet>, warden::token::fleet::FleetError> {
    if t.store.kind != warden::config::StoreKind::Redis {
        return Ok(None);
    }
    let kite = t.kite.clone().unwrap_or_default();
    // A `[tokens.NAME]` token's keys live under its name (SPEC §9.1): each broker account has
    // its own lock and leader, and wardens sharing it must name it alike.
    let mut store = t.store.clone();
    if t.named {
        store.key_prefix = format!("{}{}:", store.key_prefix, t.name);
    }
    warden::token::fleet::Fleet::start(&store, &kite, metrics.clone()).map(Some)
}

/// Written whole (temp file, then rename): a reader never sees half an address.
fn write_addr_file(file: &std::path::Path, addr: &str) -> std::io::Result<()> {
    let mut tmp = file.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, format!("{addr}\n"))?;
    std::fs::rename(&tmp, file)
}

/// Load and validate a config exactly as `warden run` will: `warden check` and `warden run`
/// accept the same files. The error is ready to print.
fn load_checked(path: &std::path::Path) -> Result<warden::config::Config, String> {
    let cfg = warden::config::load(path).map_err(|e| e.to_string())?;
    for t in cfg
        .token_list()
        .into_iter()
        .filter(|t| t.store.kind == warden::config::StoreKind::Redis)
    {
        let kite = t.kite.clone().unwrap_or_default();
        let table = if t.named {
            format!("tokens.{}", t.name)
        } else {
            "token".to_string()
        };
        warden::token::fleet::Fleet::check(&t.store, &kite)
            .map_err(|e| format!("{}: {table}.store: {e}", path.display()))?;
    }
    Ok(cfg)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// The client subcommands: ask the running warden; exit 1 when it cannot, 2 for a bad config.
fn client(cmd: ClientCommand, path: &std::path::Path) -> ExitCode {
    match warden::client::run(&cmd, path) {
        Ok(out) => {
            // A closed pipe (`warden status | head -1`) is not an error worth a panic.
            let _ = std::io::Write::write_all(&mut std::io::stdout(), out.as_bytes());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("warden: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn check(path: &std::path::Path) -> ExitCode {
    match load_checked(path) {
        Ok(cfg) => {
            // Warnings do not change the exit code: the config is valid.
            for w in &cfg.warnings {
                eprintln!("{}", w.located(path, "warning: "));
            }
            // A directory that does not exist here may exist where warden runs (a check in CI,
            // a container volume): only a warning. One that exists and refuses writes is an
            // error.
            let (missing, refusing): (Vec<_>, Vec<_>) = warden::token::writable::check(&cfg)
                .into_iter()
                .partition(|p| p.missing);
            for e in &missing {
                eprintln!("{}: warning: {e}", path.display());
            }
            if !refusing.is_empty() {
                for e in &refusing {
                    eprintln!("{}: {e}", path.display());
                }
                return ExitCode::from(2);
            }
            println!("{}: ok", path.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
    }
}

/// `warden events`: 1 when warden cannot be asked, 2 for a bad config.
fn events(path: &std::path::Path, opts: &warden::client::EventsOptions) -> ExitCode {
    match warden::client::events(path, opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("warden: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// `warden status --watch`: runs until interrupted or stdout closes; 2 for a bad config.
fn watch(path: &std::path::Path) -> ExitCode {
    match warden::client::watch(path, std::time::Duration::from_secs(2)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("warden: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// `warden doctor`: 0 when nothing failed, 1 when something did, 2 for a config that does not
/// load (unless all it lacks is credentials or an api_token: those are failed checks).
fn doctor(path: &std::path::Path, json: bool) -> ExitCode {
    // A config whose only gaps are credentials (or an api_token) is checked all the same: the
    // gaps become failed checks of their tokens.
    let (cfg, set_up) = match load_checked(path) {
        Ok(cfg) => (cfg, Vec::new()),
        Err(message) => {
            match warden::config::load_tolerating(path, &warden::doctor::is_set_up_problem) {
                // Nothing tolerated: what failed was not the file (a fleet's store, say).
                Ok(loaded) if !loaded.1.is_empty() => loaded,
                _ => {
                    eprintln!("{message}");
                    return ExitCode::from(2);
                }
            }
        }
    };
    let checks = match runtime() {
        Ok(rt) => rt.block_on(warden::doctor::run(&cfg, &set_up)),
        Err(e) => {
            eprintln!("warden: {e:#}");
            return ExitCode::from(1);
        }
    };
    let code = u8::from(warden::doctor::any_failed(&checks));
    let out = if json {
        warden::doctor::render_json(&checks)
    } else {
        warden::doctor::render_text(&checks)
    };
    let _ = std::io::Write::write_all(&mut std::io::stdout(), out.as_bytes());
    ExitCode::from(code)
}
