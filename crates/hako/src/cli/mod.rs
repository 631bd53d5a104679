//! The command line: Docker's verbs and flags, each a call to the daemon's API.

mod build;
mod containers;
mod copy;
mod images;
mod networks;
mod registry;
mod system;
mod volumes;

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
    /// Create and run a new container from an image
    Run(containers::RunArgs),
    /// Create a new container
    Create(containers::CreateArgs),
    /// Start one or more stopped containers
    Start(containers::StartArgs),
    /// List containers
    Ps(containers::PsArgs),
    /// Fetch the logs of a container
    Logs(containers::LogsArgs),
    /// Stop one or more running containers
    Stop(containers::StopArgs),
    /// Restart one or more containers
    Restart(containers::StopArgs),
    /// Kill one or more running containers
    Kill(containers::KillArgs),
    /// Remove one or more containers
    Rm(containers::RmArgs),
    /// Block until one or more containers stop, then print their exit codes
    Wait(containers::WaitArgs),
    /// Execute a command in a running container
    Exec(containers::ExecArgs),
    /// Pause all processes within one or more containers
    Pause(containers::NamesArgs),
    /// Unpause all processes within one or more containers
    Unpause(containers::NamesArgs),
    /// Rename a container
    Rename(containers::RenameArgs),
    /// Display the running processes of a container
    Top(containers::OneArgs),
    /// List port mappings or a specific mapping for the container
    Port(containers::PortArgs),
    /// Inspect changes to files or directories on a container's filesystem
    Diff(containers::OneArgs),
    /// Create a new image from a container's changes
    Commit(containers::CommitArgs),
    /// Build an image from a Dockerfile
    Build(build::BuildArgs),
    /// Display a live stream of container(s) resource usage statistics
    Stats(containers::StatsArgs),
    /// Attach local standard input, output, and error streams to a running container
    Attach(containers::AttachArgs),
    /// Copy files/folders between a container and the local filesystem
    Cp(copy::CpArgs),
    /// Export a container's filesystem as a tar archive
    Export(copy::ExportArgs),
    /// Manage volumes
    #[command(subcommand)]
    Volume(volumes::VolumeCmd),
    /// Manage networks
    Network(networks::NetworkArgs),
    /// Manage containers
    #[command(subcommand)]
    Container(ContainerCmd),
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
    /// Download an image from a registry
    Pull(registry::PullArgs),
    /// Upload an image to a registry
    Push(registry::PushArgs),
    /// Log in to a registry (credentials go to docker's config.json)
    Login(registry::LoginArgs),
    /// Log out from a registry
    Logout(registry::LogoutArgs),
}

#[derive(Subcommand)]
pub enum ContainerCmd {
    /// Remove all stopped containers
    Prune(containers::PruneArgs),
    /// List port mappings or a specific mapping for the container
    Port(containers::PortArgs),
}

impl Cli {
    /// The daemon and the registry serve many clients at once; every other command is one
    /// client, which one thread runs with no threads to start and stop.
    pub fn serves(&self) -> bool {
        matches!(
            self.cmd,
            Cmd::Daemon(_) | Cmd::Registry(registry::RegistryCmd::Serve(_))
        )
    }
}

pub async fn run(cli: Cli) -> Result<u8, anyhow::Error> {
    if let Cmd::Daemon(args) = cli.cmd {
        return crate::daemon::run(args).await.map(|_| 0);
    }
    let pinned = std::env::var("HAKO_API_VERSION")
        .or_else(|_| std::env::var("DOCKER_API_VERSION"))
        .ok();
    let client = Client::new(&cli.host, pinned.as_deref())?;
    match cli.cmd {
        Cmd::Daemon(_) => unreachable!("handled above"),
        Cmd::Run(a) => return containers::run(&client, a).await,
        Cmd::Create(a) => return containers::create(&client, a).await,
        Cmd::Start(a) => return containers::start(&client, a).await,
        Cmd::Ps(a) => return containers::ps(&client, a).await,
        Cmd::Logs(a) => return containers::logs(&client, a).await,
        Cmd::Stop(a) => return containers::stop(&client, a, "stop").await,
        Cmd::Restart(a) => return containers::stop(&client, a, "restart").await,
        Cmd::Kill(a) => return containers::kill(&client, a).await,
        Cmd::Rm(a) => return containers::rm(&client, a).await,
        Cmd::Wait(a) => return containers::wait(&client, a).await,
        Cmd::Exec(a) => return containers::exec(&client, a).await,
        Cmd::Pause(a) => return containers::pause(&client, a, "pause").await,
        Cmd::Unpause(a) => return containers::pause(&client, a, "unpause").await,
        Cmd::Rename(a) => return containers::rename(&client, a).await,
        Cmd::Top(a) => return containers::top(&client, a).await,
        Cmd::Port(a) => return containers::port(&client, a).await,
        Cmd::Diff(a) => return containers::diff(&client, a).await,
        Cmd::Commit(a) => return containers::commit(&client, a).await,
        Cmd::Stats(a) => return containers::stats(&client, a).await,
        Cmd::Attach(a) => return containers::attach(&client, a).await,
        Cmd::Cp(a) => copy::cp(&client, a).await,
        Cmd::Build(a) => build::build(&client, a).await,
        Cmd::Export(a) => copy::export(&client, a).await,
        Cmd::Volume(c) => return volumes::run(&client, c).await,
        Cmd::Network(a) => return networks::run(&client, a).await,
        Cmd::Container(ContainerCmd::Prune(a)) => return containers::prune(&client, a).await,
        Cmd::Container(ContainerCmd::Port(a)) => return containers::port(&client, a).await,
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
        Cmd::Pull(a) => registry::pull_cmd(&client, a).await,
        Cmd::Push(a) => registry::push_cmd(&client, a).await,
        Cmd::Login(a) => registry::login_cmd(&client, a).await,
        Cmd::Logout(a) => registry::logout_cmd(a).await,
    }
    .map(|()| 0)
}

/// The message printed for an error.
pub fn describe(e: &anyhow::Error) -> String {
    if e.root_cause().downcast_ref::<images::SilentError>().is_some() {
        return String::new();
    }
    if let Some(ce) = e.root_cause().downcast_ref::<ClientError>() {
        return ce.to_string();
    }
    match e.downcast_ref::<ClientError>() {
        Some(ce) => ce.to_string(),
        None => format!("Error: {e:#}"),
    }
}

/// Docker's exit codes: 125 when the daemon cannot be reached, 1 for an error it reported,
/// or what the command chose (`run`: 125, 126, 127).
pub fn exit_code(e: &anyhow::Error) -> u8 {
    if let Some(containers::ExitWith(code)) = e.downcast_ref::<containers::ExitWith>() {
        return *code;
    }
    match e.downcast_ref::<ClientError>() {
        Some(ClientError::Connect { .. }) => 125,
        _ => 1,
    }
}
