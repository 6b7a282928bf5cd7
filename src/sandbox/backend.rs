//! `warden sandbox backend`: the demo child of SPEC §8.

/// Command-line options of `warden sandbox backend`.
#[derive(Debug, Clone, clap::Args)]
pub struct BackendArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8000")]
    pub listen: std::net::SocketAddr,
}

pub async fn run(_args: BackendArgs) -> Result<(), super::kite::SandboxError> {
    Err(super::kite::SandboxError::NotImplemented)
}
