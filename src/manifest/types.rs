//! The manifest formats, `apiVersion: steward/v1`: serde types that are also the source of
//! the published JSON Schemas (`steward schema`). Unknown keys are rejected everywhere.
//!
//! A client file holds a *partial* [`ClientSpec`]: anything it leaves out comes from the
//! fleet's `spec.defaults`. Fields that must end up set after that merge (the project,
//! the code version, the database URL, the schema version) are checked by `validate`.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::duration::HumanDuration;
use crate::secret::SecretRef;

pub const API_VERSION: &str = "steward/v1";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ApiVersion {
    #[serde(rename = "steward/v1")]
    V1,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum FleetKind {
    Fleet,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ClientKind {
    Client,
}

/// `fleet.yaml`: settings shared by the whole fleet.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(title = "steward Fleet manifest")]
pub struct FleetManifest {
    pub api_version: ApiVersion,
    pub kind: FleetKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<FleetMetadata>,
    pub spec: FleetSpec,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FleetMetadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FleetSpec {
    /// The migrations folder, relative to fleet.yaml.
    #[serde(default = "default_migrations")]
    pub migrations: String,
    pub vercel: VercelSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub github: Option<GithubSpec>,
    #[serde(default)]
    pub backups: BackupsSpec,
    /// Key for the fingerprints of env values (HMAC-SHA256); never stored in a manifest.
    #[serde(default = "default_fingerprint_key")]
    pub fingerprint_key: SecretRef,
    /// Any part of a client's spec; merged under every client (the client wins).
    #[serde(default)]
    pub defaults: ClientSpec,
    /// Rollout waves, in order. A client's `spec.wave` must name one of them.
    #[serde(default)]
    pub waves: Vec<String>,
    #[serde(default)]
    pub rollout: RolloutSpec,
    #[serde(default)]
    pub notify: NotifySpec,
}

fn default_migrations() -> String {
    "../migrations".to_owned()
}

fn default_fingerprint_key() -> SecretRef {
    SecretRef::env("STEWARD_FINGERPRINT_KEY")
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VercelSpec {
    #[serde(default = "default_vercel_api")]
    pub api_url: String,
    pub token: SecretRef,
    /// Team id or slug; sent as `teamId` on every call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    /// Route deployment hostnames elsewhere, like curl's `--connect-to`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub connect_to: Vec<ConnectTo>,
}

fn default_vercel_api() -> String {
    "https://api.vercel.com".to_owned()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConnectTo {
    /// A host name, or `*.suffix` for every host under it.
    pub host: String,
    /// `host:port` to connect to instead.
    pub to: String,
    #[serde(default)]
    pub scheme: Scheme,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    #[default]
    Https,
    Http,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GithubSpec {
    /// `owner/name` of the application repository (tags are resolved there).
    #[schemars(regex(pattern = r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$"))]
    pub repo: String,
    #[serde(default = "default_github_api")]
    pub api_url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<SecretRef>,
}

fn default_github_api() -> String {
    "https://api.github.com".to_owned()
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackupsSpec {
    /// Where backups go, relative to fleet.yaml; one folder per client. Dumps hold the
    /// clients' data, so the default is private to the user and outside any checkout:
    /// `$XDG_STATE_HOME/steward/backups/<fleet name>` (`~/.local/state/...` when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
    /// Retention, applied after each successful backup: a backup stays while it is among
    /// the newest `last` or younger than `days`; the newest is never removed. Default
    /// `{last: 10, days: 30}`.
    #[serde(default)]
    pub keep: KeepSpec,
    /// A copy of every backup off the machine: `s3://bucket/prefix` on any S3-compatible
    /// store (`s3` says where and with which credentials). The local folder stays the
    /// working copy; a restore on a machine that lost it reads the store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?$"))]
    pub store: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Spec>,
}

/// How to reach the S3-compatible store; every value that locates or opens it is a secret
/// reference, read only when a backup is written or read.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct S3Spec {
    /// The endpoint URL, for stores other than AWS (MinIO, R2, moto...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<SecretRef>,
    /// The region (default `us-east-1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<SecretRef>,
    pub access_key_id: SecretRef,
    pub secret_access_key: SecretRef,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KeepSpec {
    /// How many of the newest backups always stay (at least 1).
    #[serde(default = "default_keep_last")]
    #[schemars(range(min = 1))]
    pub last: u32,
    /// Backups younger than this many days stay too.
    #[serde(default = "default_keep_days")]
    pub days: u32,
}

impl Default for KeepSpec {
    fn default() -> Self {
        KeepSpec {
            last: default_keep_last(),
            days: default_keep_days(),
        }
    }
}

fn default_keep_last() -> u32 {
    10
}

fn default_keep_days() -> u32 {
    30
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RolloutSpec {
    /// Failed clients in one wave that halt the rollout (default 0: the first failure halts).
    #[serde(default)]
    pub max_failures: u32,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NotifySpec {
    /// The operators' channels: every client's events, in operator words.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub webhooks: Vec<Webhook>,
    /// The mail server client emails go through (`spec.notify.email` of a client).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smtp: Option<SmtpSpec>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SmtpSpec {
    /// `smtps://user:pass@host:port` (TLS from the start) or `smtp://user:pass@host:port`
    /// (STARTTLS required; plain only to a loopback address), as a secret reference: the
    /// URL carries the credentials.
    pub server: SecretRef,
    /// The sender, like `Ops <ops@example.com>`.
    pub from: String,
}

/// A client's own contacts (`spec.notify` of a client, or of `spec.defaults`): they hear
/// about their updates in plain words, without plan hashes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientNotifySpec {
    /// Slack-style webhooks of the client's own channels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhooks: Option<Vec<Webhook>>,
    /// Addresses mailed through the fleet's `spec.notify.smtp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<Vec<String>>,
    /// Told to the client with every announcement of a change (what users should know).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Webhook {
    /// The webhook URL; a secret, since Slack-style URLs carry their own credential.
    pub url: SecretRef,
    /// Events to send (default: all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<NotifyEvent>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum NotifyEvent {
    /// A change waits for the client's maintenance window (sent once per change).
    Scheduled,
    BeforeUpdate,
    AfterUpdate,
    Failure,
    Rollback,
}

/// `clients/<name>.yaml`: one client.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(title = "steward Client manifest")]
pub struct ClientManifest {
    pub api_version: ApiVersion,
    pub kind: ClientKind,
    pub metadata: ClientMetadata,
    #[serde(default)]
    pub spec: ClientSpec,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientMetadata {
    /// Must equal the file name without `.yaml`.
    #[schemars(regex(pattern = r"^[a-z0-9][a-z0-9-]{0,62}$"))]
    pub name: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// A client's desired state. Every field is optional in a file; defaults fill the gaps.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wave: Option<String>,
    /// Stop converging this client (steward observes but changes nothing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<CodeSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<DatabaseSpec>,
    /// Production environment variables: a literal string or a secret reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<BTreeMap<String, EnvValue>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<ScheduleSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<PolicySpec>,
    /// Where rehearsals run (`steward migrate --rehearse`, `policy.rehearse: required`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rehearsal: Option<RehearsalSpec>,
    /// The client's own contacts for update communication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<ClientNotifySpec>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RehearsalSpec {
    /// A Postgres server URL (its database part is where steward connects to create and
    /// drop the scratch database), as a secret reference. Default: the client's own
    /// server, when its role may create databases.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<SecretRef>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CodeSpec {
    /// The Vercel project id or name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// A 40-hex commit SHA, or a tag of the app repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DatabaseSpec {
    /// The direct (or session-mode pooler) Postgres URL, as a secret reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<SecretRef>,
    /// Pin the database's identity uuid (written by `steward adopt`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<uuid::Uuid>,
    /// The schema version, `YYYY_MM_DD_NNN`, that must exist in the migrations folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]{4}_[0-9]{2}_[0-9]{2}_[0-9]{3}$"))]
    pub schema_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<VerifySpec>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VerifySpec {
    /// Tables that must have row-level security enabled and at least one policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rls_tables: Option<Vec<String>>,
    /// Queries that must return true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checks: Option<Vec<Check>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Check {
    pub name: String,
    /// A query returning one boolean.
    pub sql: String,
}

/// An environment variable's value: a literal, or a reference to a secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum EnvValue {
    Literal(String),
    Secret(EnvSecret),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvSecret {
    /// The variable in steward's environment that holds the value.
    #[schemars(regex(pattern = r"^[A-Za-z_][A-Za-z0-9_]*$"))]
    pub env: String,
    /// Store as Vercel `sensitive` (never readable back). Default true.
    #[serde(default = "yes")]
    pub sensitive: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScheduleSpec {
    /// IANA time zone of the windows, like `Europe/Berlin`. Default `UTC`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// Maintenance windows like `Sat 02:00-05:00` or `Mon-Fri 22:00-23:30`. None: any time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(inner(regex(pattern = crate::manifest::schedule::PATTERN)))]
    pub windows: Option<Vec<String>>,
    /// Bypass the windows (an urgent fix goes out now).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urgent: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicySpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apply: Option<ApplyPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destructive: Option<DestructivePolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<BackupPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<RollbackPolicy>,
    /// Health-check production for this long after promote (`10m`, `30s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bake: Option<HumanDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthSpec>,
    /// A downgrade through a migration without `.down.sql`: `block` (default) or
    /// `restore` the latest backup, when it was taken at the target version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub irreversible: Option<IrreversiblePolicy>,
    /// `required`: rehearse pending migrations on a scratch copy of the latest backup
    /// before planning them; a failed rehearsal blocks the plan. Default `skip`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rehearse: Option<RehearsePolicy>,
    /// Block a plan whose rehearsal held an ACCESS EXCLUSIVE lock on an existing table
    /// longer than this (`2s`). Needs `rehearse: required`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_lock_time: Option<HumanDuration>,
    /// A live schema that differs from the one recorded after the last run: `block`
    /// (default) or `warn`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift: Option<DriftPolicy>,
    /// `true`: steward turns the Vercel project's auto-assignment of production domains
    /// off (a plan step, undone by turning it back on), so a push to the production
    /// branch builds staged instead of going live. Default `false`: a project that
    /// auto-promotes is a block until this, or `steward adopt --take-over-promotion`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub take_over_promotion: Option<bool>,
    /// Production moved to a commit steward did not promote (a push that went live, a
    /// promote in the dashboard): `hold` (default) until an operator decides, or
    /// `revert` to the manifest's commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outside_change: Option<OutsideChangePolicy>,
    /// Release new code in stages of live traffic through Vercel's rolling releases,
    /// each judged on the canary's 5xx rate and health, instead of promote + bake.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<StagedRolloutSpec>,
}

/// `policy.rollout`: the stages and how each is judged.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StagedRolloutSpec {
    /// The canary's share of traffic at each stage, rising, the last one 100:
    /// `[{percent: 10, for: 5m}, {percent: 50, for: 10m}, {percent: 100}]`.
    pub stages: Vec<RolloutStageSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<AnalysisSpec>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RolloutStageSpec {
    /// Percent of production traffic on the new deployment, 1 to 100.
    #[schemars(range(min = 1, max = 100))]
    pub percent: u8,
    /// How long the stage is watched before the next one (every stage but the last).
    #[serde(default, rename = "for", skip_serializing_if = "Option::is_none")]
    pub duration: Option<HumanDuration>,
}

/// How a stage is judged.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AnalysisSpec {
    /// The highest 5xx share of the canary's requests that passes, like `1%` or `0.5%`.
    /// Default `1%`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_error_rate: Option<String>,
    /// Requests the canary must have served in a stage to be judged. Default 50.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_requests: Option<u64>,
    /// Also health-check the new deployment through each stage. Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<bool>,
    /// A stage that ends with fewer than `minRequests`: `hold` (default: traffic goes
    /// back to the previous deployment and the client waits for an operator) or
    /// `proceed` to the next stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_insufficient_traffic: Option<InsufficientTraffic>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum InsufficientTraffic {
    Hold,
    Proceed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OutsideChangePolicy {
    /// The client is held, not converged, and nothing is deployed until an operator
    /// pins the manifest to the live commit or runs `steward apply --revert-outside-change`.
    Hold,
    /// The manifest's commit is deployed and promoted again, as for any drift.
    Revert,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RehearsePolicy {
    /// Plans are made without a rehearsal (`steward migrate --rehearse` still works).
    Skip,
    /// Every plan that migrates up is rehearsed on a scratch copy first.
    Required,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DriftPolicy {
    /// A schema changed by hand blocks the plan until `steward drift accept`.
    Block,
    /// A schema changed by hand is shown in the plan, which still runs.
    Warn,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum IrreversiblePolicy {
    /// The plan is blocked; an operator restores by hand (`steward restore`).
    Block,
    /// The plan restores the latest backup when it is at the target version, discarding
    /// every write made since that backup.
    Restore,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ApplyPolicy {
    /// The daemon applies changes by itself.
    Auto,
    /// Changes wait for `steward apply` by a person (the guide's approval gate).
    Manual,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DestructivePolicy {
    Deny,
    Allow,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum BackupPolicy {
    Required,
    Skip,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RollbackPolicy {
    Auto,
    Manual,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HealthSpec {
    /// Path requested on the deployment, like `/api/health`. Default `/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Expected HTTP status. Default 200.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 100, max = 599))]
    pub expect_status: Option<u16>,
    /// Per-request timeout. Default `10s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<HumanDuration>,
}
