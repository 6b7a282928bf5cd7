//! The `warden` binary: command-line parsing and dispatch. `anyhow` lives only here.

use std::path::PathBuf;
use std::process::ExitCode;

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
    },
    /// Restart one program via the running warden
    Restart { name: String },
    /// Token operations on the running warden
    Token {
        #[command(subcommand)]
        op: TokenOp,
    },
    /// Print the Kite login URL for a manual login
    LoginUrl,
    /// Local stand-ins for Kite Connect and a backend
    Sandbox {
        #[command(subcommand)]
        what: SandboxCmd,
    },
}

#[derive(Debug, Subcommand)]
enum TokenOp {
    /// Ask the running warden to refresh the token now
    Refresh,
    /// Token state, expiry and last error (never the token itself)
    Status,
    /// Lift a credential block after you fixed its cause (allows one automated attempt)
    Unblock,
}

#[derive(Debug, Subcommand)]
enum SandboxCmd {
    /// A local Kite Connect simulator
    Kite(warden::sandbox::kite::KiteArgs),
    /// The demo backend child
    Backend(warden::sandbox::backend::BackendArgs),
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
    let result = match cli.command.unwrap_or(Command::Run) {
        Command::Check => return check(&config),
        Command::Run => return run(&config),
        Command::Sandbox { what } => runtime().and_then(|rt| {
            rt.block_on(async {
                match what {
                    SandboxCmd::Kite(a) => warden::sandbox::kite::run(a).await,
                    SandboxCmd::Backend(a) => warden::sandbox::backend::run(a).await,
                }
            })
            .map_err(anyhow::Error::from)
        }),
        Command::Status { json } => return client(ClientCommand::Status { json }, &config),
        Command::Restart { name } => return client(ClientCommand::Restart { name }, &config),
        Command::Token {
            op: TokenOp::Refresh,
        } => return client(ClientCommand::TokenRefresh, &config),
        Command::Token {
            op: TokenOp::Status,
        } => return client(ClientCommand::TokenStatus, &config),
        Command::Token {
            op: TokenOp::Unblock,
        } => return client(ClientCommand::TokenUnblock, &config),
        Command::LoginUrl => return client(ClientCommand::LoginUrl, &config),
    };
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
    // Before any thread exists: takes NOTIFY_SOCKET & co. out of the environment programs inherit.
    warden::sdnotify::init();
    let cfg = match warden::config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    if let Some(t) = cfg
        .token
        .as_ref()
        .filter(|t| t.store.kind == warden::config::StoreKind::Redis)
    {
        let api_key = t.kite.as_ref().map(|k| k.api_key.as_str()).unwrap_or("");
        if let Err(e) = warden::token::fleet::store::RedisStore::new(&t.store, api_key) {
            eprintln!("{}: token.store: {e}", path.display());
            return ExitCode::from(2);
        }
    }
    let not_writable = warden::token::writable::check(&cfg);
    if !not_writable.is_empty() {
        for e in &not_writable {
            eprintln!("{}: {e}", path.display());
        }
        return ExitCode::from(1);
    }
    warden::logs::init(cfg.supervisor.log_format);
    for w in &cfg.warnings {
        tracing::warn!("{}", w.located(path, ""));
    }
    if let Err(e) = warden::reaper::become_subreaper() {
        tracing::warn!("cannot become a child subreaper ({e}); orphans of programs will not be reaped by warden");
    }
    let result = runtime().and_then(|rt| {
        rt.block_on(async {
            let reaper = warden::reaper::Reaper::start()?;
            tokio::spawn(warden::memtrim::keep_trimmed());
            warden::supervisor::Supervisor::new(cfg, reaper)
                .run()
                .await?;
            Ok(())
        })
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::from(1)
        }
    }
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
    match warden::config::load(path) {
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
