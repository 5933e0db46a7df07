//! The command-line surface (clap derive). Raw flags only; each command turns them into
//! validated settings before doing any work.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

pub use crate::status::Phase;

#[derive(Debug, Parser)]
#[command(
    name = "steward",
    version,
    about = "Converge a fleet of client deployments (Vercel + Postgres) to what their Git manifests declare",
    long_about = None,
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Log format on stderr (filter with RUST_LOG).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Attempts one Vercel API call may make (429s and 5xx are retried).
    #[arg(long, global = true, env = "STEWARD_VERCEL_MAX_ATTEMPTS", default_value_t = 4,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub vercel_max_attempts: u32,
    /// Time one Vercel API call may spend waiting, between attempts and for a rate-limit
    /// window to reset (Retry-After included); past it the call fails naming the limit.
    #[arg(long, global = true, env = "STEWARD_VERCEL_MAX_WAIT", default_value = "90s",
          value_parser = parse_duration)]
    pub vercel_max_wait: std::time::Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PlanFormat {
    Text,
    Markdown,
    Json,
}

/// Where the fleet lives. Shared by every command that reads manifests.
#[derive(Debug, Clone, Args)]
pub struct FleetArgs {
    /// The fleet directory (holds fleet.yaml and clients/).
    #[arg(long, env = "STEWARD_FLEET", default_value = "./fleet")]
    pub fleet: PathBuf,
}

/// One client of the fleet, by name.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// The client's name (its manifest is clients/<CLIENT>.yaml).
    pub client: String,
    #[command(flatten)]
    pub fleet: FleetArgs,
}

/// Show a change's plan instead of running it.
#[derive(Debug, Clone, Args)]
pub struct DryRunArgs {
    /// Show the plan this command would run (its steps, guards and refusals, exit 3 when
    /// refused) and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// The dry run's format: text, markdown or JSON (docs/plan-json.md).
    #[arg(long, value_enum, default_value_t = PlanFormat::Text, requires = "dry_run")]
    pub format: PlanFormat,
}

/// One client, and a change to it that can be shown first.
#[derive(Debug, Args)]
pub struct ChangeArgs {
    #[command(flatten)]
    pub target: ClientArgs,
    #[command(flatten)]
    pub preview: DryRunArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check every manifest: types, unknown keys, references, versions. Exit 0 valid, 1 invalid.
    Validate(ValidateArgs),
    /// Write the JSON Schemas of the manifest formats.
    Schema(SchemaArgs),
    /// Lint every migration with a real SQL parser: destructive statements, locking hazards.
    Lint(LintArgs),
    /// Mark a client's database as belonging to that client (identity), optionally baselining.
    Adopt(AdoptArgs),
    /// Check that a client can be updated: config, connection, identity, checksums, backup.
    Preflight(ClientArgs),
    /// Take a pg_dump backup of a client's database, checked readable.
    Backup(ChangeArgs),
    /// List a client's backups.
    Backups(ClientArgs),
    /// Restore a client's database from a backup.
    Restore(RestoreArgs),
    /// Apply (or roll back) a client's schema migrations.
    Migrate(MigrateArgs),
    /// Verify a client's schema: version, verify files, checks, RLS.
    Verify(VerifyArgs),
    /// Resolve an in_progress or failed migration row after a crash, on record.
    Repair(RepairArgs),
    /// Show clients: converged, pending, holding or failed, with schema, code and env state.
    Status(StatusArgs),
    /// Show a client's update records.
    History(HistoryArgs),
    /// Show what steward would do (dry run). Never writes.
    Plan(PlanArgs),
    /// Compute the plan and carry it out, step by step, undoing on failure.
    Apply(ApplyArgs),
    /// Allow a Failed client to be tried again with the same release.
    Retry(ChangeArgs),
    /// Roll a client's production deployment back now.
    Rollback(RollbackArgs),
    /// Stop all of a client's traffic now: pause its Vercel project (every URL answers 503).
    Pause(ChangeArgs),
    /// Let a paused client's traffic flow again: unpause its Vercel project.
    Unpause(ChangeArgs),
    /// Run the daemon: watch the fleet checkout and converge it unattended.
    Run(RunArgs),
    /// Show steward converging a demo fleet on this machine (needs only a local Postgres).
    Demo(DemoArgs),
    /// Run a local emulator of an external API (for tests, demos and benchmarks).
    Emulate(EmulateArgs),
    /// Post or update the plan as a sticky PR comment and set a commit status.
    Comment(CommentArgs),
    /// Show how a client's live schema differs from the one recorded after its last run;
    /// without CLIENT, which clients differ from the others at the same schema version.
    Drift(DriftArgs),
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct DriftArgs {
    #[command(subcommand)]
    pub action: Option<DriftAction>,
    /// The client to check (default: compare the whole fleet).
    pub client: Option<String>,
    /// The fleet directory; `--fleet` alone compares the whole fleet in $STEWARD_FLEET
    /// (default ./fleet).
    #[arg(long, num_args = 0..=1, default_missing_value = "", value_name = "DIR")]
    pub fleet: Option<String>,
    /// Output as text for people or JSON for scripts.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
}

impl DriftArgs {
    /// `--fleet DIR`, else `$STEWARD_FLEET`, else `./fleet`.
    pub fn fleet_dir(&self) -> PathBuf {
        self.fleet
            .clone()
            .filter(|dir| !dir.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("STEWARD_FLEET").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("./fleet"))
    }
}

#[derive(Debug, Subcommand)]
pub enum DriftAction {
    /// Record the client's live schema as the reference (a person reviewed it), on record.
    Accept(ChangeArgs),
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    #[command(flatten)]
    pub fleet: FleetArgs,
    /// Output as text for people or JSON for scripts.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
    /// Treat secret references whose variable is unset as errors, not warnings.
    #[arg(long)]
    pub require_secrets: bool,
}

#[derive(Debug, Args)]
pub struct SchemaArgs {
    /// Directory to write fleet.schema.json and client.schema.json into.
    #[arg(long, default_value = "schemas")]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct LintArgs {
    #[command(flatten)]
    pub fleet: FleetArgs,
    /// Output as text for people or JSON for scripts.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
}

#[derive(Debug, Args)]
pub struct AdoptArgs {
    #[command(flatten)]
    pub target: ClientArgs,
    /// Record versions up to VERSION as applied (for databases migrated by hand).
    #[arg(long)]
    pub baseline: Option<String>,
    /// Turn off the Vercel project's auto-assignment of production domains, so a push to
    /// the production branch builds staged and only steward promotes (recorded, with
    /// its undo).
    #[arg(long)]
    pub take_over_promotion: bool,
    #[command(flatten)]
    pub preview: DryRunArgs,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    #[command(flatten)]
    pub target: ClientArgs,
    /// A backup id (from `steward backups`) or `latest`.
    #[arg(long)]
    pub backup: String,
    /// Confirm: restoring replaces the database's contents.
    #[arg(long)]
    pub yes: bool,
    /// Stop the client's traffic (pause its Vercel project) for the restore, and let it
    /// flow again afterwards, also when the restore fails.
    #[arg(long)]
    pub pause_traffic: bool,
    #[command(flatten)]
    pub preview: DryRunArgs,
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub target: ClientArgs,
    /// Target version (default: the manifest's schemaVersion). Lower than current rolls back.
    #[arg(long)]
    pub to: Option<String>,
    #[command(flatten)]
    pub preview: DryRunArgs,
    /// Run the pending migrations and verify checks on a scratch copy of the latest backup
    /// (spec.rehearsal.url, else the client's server), report each one's duration, locks
    /// and rows, then drop the copy. Production is never locked.
    #[arg(long, conflicts_with = "dry_run")]
    pub rehearse: bool,
    /// How long to retry for the migration lock before refusing.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub lock_timeout: std::time::Duration,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub target: ClientArgs,
    /// Fail unless the database is at this schema version (the guide's
    /// verify-after-migration --expected-version).
    #[arg(long)]
    pub expected_version: Option<String>,
}

#[derive(Debug, Args)]
pub struct RepairArgs {
    #[command(flatten)]
    pub target: ClientArgs,
    /// The migration version whose in_progress or failed row to resolve.
    #[arg(long)]
    pub version: String,
    /// What really happened to it: `applied` (it ran to the end) or `rolled-back` (it
    /// left no trace). Look at the database before choosing.
    #[arg(long, value_enum)]
    pub mark: RepairMark,
    #[command(flatten)]
    pub preview: DryRunArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RepairMark {
    Applied,
    RolledBack,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Clients to show (default: all).
    pub clients: Vec<String>,
    #[command(flatten)]
    pub fleet: FleetArgs,
    /// Only clients of this rollout wave (a name from the fleet's `spec.waves`).
    #[arg(long)]
    pub wave: Option<String>,
    /// Only clients in this phase.
    #[arg(long, value_enum)]
    pub phase: Option<Phase>,
    /// Output as text for people or JSON for scripts.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    #[command(flatten)]
    pub target: ClientArgs,
    /// Output as text for people or JSON for scripts.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
    /// Show at most this many records, newest first.
    #[arg(long, default_value_t = 20)]
    pub limit: u32,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Clients to plan (default: all).
    pub clients: Vec<String>,
    #[command(flatten)]
    pub fleet: FleetArgs,
    /// Output as text, markdown (for PR comments) or JSON (docs/plan-json.md).
    #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
    pub format: PlanFormat,
    /// Exit 2 when the plan has changes (0 none, 1 error, 3 blocked).
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// Also write the plan to FILE.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Plan only the clients a change since REV touches (for PRs).
    #[arg(long)]
    pub changed_since: Option<String>,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// Clients to apply (default: all).
    pub clients: Vec<String>,
    #[command(flatten)]
    pub fleet: FleetArgs,
    /// Refuse unless the recomputed plan has this hash (the one that was reviewed); for a
    /// `policy.apply: manual` client this is the approval.
    #[arg(long)]
    pub plan_hash: Option<String>,
    /// Start even outside the maintenance window (recorded with who ran it).
    #[arg(long)]
    pub ignore_window: bool,
    /// Production moved to a commit steward did not promote and policy.outsideChange
    /// holds the client: put the manifest's commit back (recorded with who ran it).
    #[arg(long)]
    pub revert_outside_change: bool,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub yes: bool,
    /// Show the plan and stop.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    #[command(flatten)]
    pub target: ClientArgs,
    /// Roll the code (production deployment) back.
    #[arg(long)]
    pub code: bool,
    /// The deployment to go back to (default: the previous production deployment).
    #[arg(long)]
    pub to: Option<String>,
    #[command(flatten)]
    pub preview: DryRunArgs,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub fleet: FleetArgs,
    /// Address of the status server (/healthz, /readyz, /metrics, /status).
    #[arg(long)]
    pub listen: Option<String>,
    /// Resync the whole fleet at least this often, even without a commit.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub interval: std::time::Duration,
    /// Look at each converged client's database live at least this often; passes in
    /// between reuse the last look (Vercel is read every pass). A manifest change to the
    /// client's database, a plan with steps, or any run looks again at once. `0s`: every
    /// pass connects to every database.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub db_resync: std::time::Duration,
    /// Clients reconciled at once.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Take only shard I of N (clients by stable hash), written I/N.
    #[arg(long)]
    pub shard: Option<String>,
    /// One pass over the fleet, then exit with the plan exit-code convention.
    #[arg(long)]
    pub once: bool,
    /// Run `git pull --ff-only` in the checkout before each resync (when steward owns its
    /// checkout instead of a git-sync sidecar).
    #[arg(long)]
    pub pull: bool,
    #[command(flatten)]
    pub status_server: StatusServerArgs,
}

/// The status server's bounds: slow or idle clients cannot hold it (or the daemon's file
/// descriptors) for longer than these allow.
#[derive(Debug, Clone, Args)]
pub struct StatusServerArgs {
    /// Connections the status server keeps open at once; more wait in the kernel's
    /// backlog. Default: 256, or a quarter of `ulimit -n` when that is fewer.
    #[arg(long, env = "STEWARD_STATUS_MAX_CONNECTIONS",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub status_max_connections: Option<u64>,
    /// Time a connection has to send its request head (idle keep-alive included).
    #[arg(long, env = "STEWARD_STATUS_HEADER_TIMEOUT", default_value = "5s",
          value_parser = parse_duration)]
    pub status_header_timeout: std::time::Duration,
    /// Time a request has to be read and answered.
    #[arg(long, env = "STEWARD_STATUS_REQUEST_TIMEOUT", default_value = "10s",
          value_parser = parse_duration)]
    pub status_request_timeout: std::time::Duration,
    /// Largest request body accepted, in bytes (GitHub webhook deliveries).
    #[arg(long, env = "STEWARD_STATUS_MAX_BODY", default_value_t = 1024 * 1024)]
    pub status_max_body: usize,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Postgres server to create the demo databases on.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    pub database_url: String,
    /// Keep the demo databases and fleet afterwards.
    #[arg(long)]
    pub keep: bool,
}

#[derive(Debug, Args)]
pub struct EmulateArgs {
    #[command(subcommand)]
    pub api: EmulatedApi,
}

#[derive(Debug, Subcommand)]
pub enum EmulatedApi {
    /// The Vercel REST API.
    Vercel(EmulateVercelArgs),
    /// The GitHub REST API (comments, statuses, tags).
    Github(EmulateGithubArgs),
}

#[derive(Debug, Args)]
pub struct EmulateVercelArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:4010")]
    pub listen: String,
    /// The bearer token the emulator accepts.
    #[arg(long, env = "VERCEL_TOKEN", hide_env_values = true)]
    pub token: String,
    /// Create a project with this name (repeatable).
    #[arg(long = "project")]
    pub projects: Vec<String>,
    /// Keep state in this file across restarts.
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// How long a build takes.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub build_time: std::time::Duration,
}

#[derive(Debug, Args)]
pub struct EmulateGithubArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:4020")]
    pub listen: String,
    /// The token the emulator accepts.
    #[arg(long, env = "GITHUB_TOKEN", hide_env_values = true)]
    pub token: String,
}

#[derive(Debug, Args)]
pub struct CommentArgs {
    /// The repository, OWNER/NAME.
    #[arg(long)]
    pub repo: String,
    /// The pull request number.
    #[arg(long)]
    pub pr: u64,
    /// The plan (JSON from `steward plan --format json`), a file or `-` for stdin.
    #[arg(long, default_value = "-")]
    pub plan: String,
    /// The PR head commit to set the `steward/plan` status on.
    #[arg(long)]
    pub sha: Option<String>,
    /// A fleet whose `spec.github` gives the API URL and token (both optional).
    #[arg(long)]
    pub fleet: Option<PathBuf>,
    /// The GitHub API (GitHub Enterprise: https://HOST/api/v3). Default: the fleet's
    /// `spec.github.apiUrl`, else https://api.github.com.
    #[arg(long, env = "GITHUB_API_URL")]
    pub api_url: Option<String>,
    /// Where readers find the full plan when it is too long for a comment (a CI artifact
    /// name or URL). Default: the --plan file.
    #[arg(long)]
    pub full_plan_at: Option<String>,
}

/// Parse durations written like `500ms`, `5s`, `10m`, `1h`.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    crate::manifest::duration::parse(text).map_err(|err| err.to_string())
}
