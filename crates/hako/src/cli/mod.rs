//! The command line: Docker's verbs and flags, each a call to the daemon's API.

mod images;
mod registry;
mod system;

use clap::{Parser, Subcommand};

use hako_api::{Client, ClientError};

pub const DEFAULT_HOST: &str = "unix:///run/hako/hako.sock";
pub const DEFAULT_ROOT: &str = "/var/lib/hako";

#[derive(Parser)]
#[command(
    name = "hako",
    version,
    about = "hako: containers, images, registry and apps in one program"
)]
pub struct Cli {
    /// Daemon socket to connect to
    #[arg(short = 'H', long = "host", env = "HAKO_HOST", default_value = DEFAULT_HOST)]
    pub host: String,
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Subcommand)]
pub enum Cmd {
    /// Run the daemon: own the state under --root and serve the Engine API
    Daemon(crate::daemon::DaemonArgs),
    /// Show the client and daemon versions
    Version(system::VersionArgs),
    /// Display system-wide information
    Info(system::InfoArgs),
    /// List images
    #[command(visible_alias = "image-ls")]
    Images(images::ImagesArgs),
    /// Import the contents from a tarball to create a filesystem image
    Import(images::ImportArgs),
    /// Load images from a tar archive or STDIN
    Load(images::LoadArgs),
    /// Save one or more images to a tar archive (streamed to STDOUT by default)
    Save(images::SaveArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag(images::TagArgs),
    /// Remove one or more images
    Rmi(images::RmiArgs),
    /// Return low-level information on objects
    Inspect(images::InspectArgs),
    /// Show the history of an image
    History(images::HistoryArgs),
    /// Manage images
    #[command(subcommand)]
    Image(images::ImageCmd),
    /// Manage hako
    #[command(subcommand)]
    System(system::SystemCmd),
    /// Run or maintain an OCI distribution registry (`hako registry serve`, `hako registry gc`)
    #[command(subcommand)]
    Registry(registry::RegistryCmd),
}

pub async fn run(cli: Cli) -> Result<u8, anyhow::Error> {
    if let Cmd::Daemon(args) = cli.cmd {
        return crate::daemon::run(args).await.map(|_| 0);
    }
    let client = Client::new(&cli.host)?;
    match cli.cmd {
        Cmd::Daemon(_) => unreachable!("handled above"),
        Cmd::Version(a) => system::version(&client, a).await,
        Cmd::Info(a) => system::info(&client, a).await,
        Cmd::Images(a) => images::list(&client, a).await,
        Cmd::Import(a) => images::import(&client, a).await,
        Cmd::Load(a) => images::load(&client, a).await,
        Cmd::Save(a) => images::save(&client, a).await,
        Cmd::Tag(a) => images::tag(&client, a).await,
        Cmd::Rmi(a) => images::rmi(&client, a).await,
        Cmd::Inspect(a) => images::inspect(&client, a).await,
        Cmd::History(a) => images::history(&client, a).await,
        Cmd::Image(c) => images::image_cmd(&client, c).await,
        Cmd::System(c) => system::system_cmd(&client, c).await,
        Cmd::Registry(c) => registry::run(c).await,
    }
    .map(|()| 0)
}

/// The message printed for an error.
pub fn describe(e: &anyhow::Error) -> String {
    if e.downcast_ref::<images::SilentError>().is_some() {
        return String::new();
    }
    match e.downcast_ref::<ClientError>() {
        Some(ce) => ce.to_string(),
        None => format!("Error: {e:#}"),
    }
}

/// Docker's exit codes: 125 when the daemon cannot be reached, 1 for an error it reported.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    match e.downcast_ref::<ClientError>() {
        Some(ClientError::Connect { .. }) => 125,
        _ => 1,
    }
}
