//! `warden sandbox kite`: a local Kite Connect simulator.

/// Command-line options of `warden sandbox kite`.
#[derive(Debug, Clone, clap::Args)]
pub struct KiteArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9190")]
    pub listen: std::net::SocketAddr,
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("not implemented yet")]
    NotImplemented,
}

pub async fn run(_args: KiteArgs) -> Result<(), SandboxError> {
    Err(SandboxError::NotImplemented)
}
