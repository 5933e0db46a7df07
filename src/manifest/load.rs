//! Loading a fleet directory: read every manifest under budgets, check each against its
//! schema, merge `spec.defaults` under each client, then check what only makes sense
//! across files (names, waves, versions that must exist). Every problem is collected.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::config::{ClientConfig, CodeConfig, CodeVersion, DatabaseConfig, Health, Policy};
use super::diagnostic::{Diagnostic, Position, nearest};
use super::schedule::{Schedule, Window, parse_timezone};
use super::schema::{self, Kind};
use super::types::{ClientManifest, ClientSpec, EnvValue, FleetManifest, RehearsePolicy};
use super::yaml::{self, Document, Spans};
use crate::migrations::{Catalog, Version};
use crate::secret::SecretRef;

/// A loaded fleet: the fleet manifest, the migrations catalog and every valid client.
#[derive(Debug, Clone)]
pub struct Fleet {
    pub dir: PathBuf,
    pub file: PathBuf,
    pub manifest: FleetManifest,
    pub migrations_dir: PathBuf,
    pub backups_dir: crate::postgres::backup::Store,
    pub catalog: Catalog,
    pub clients: BTreeMap<String, Client>,
}

/// One client: where it was declared, its merged spec, and its checked configuration.
#[derive(Debug, Clone)]
pub struct Client {
    pub file: PathBuf,
    pub spec: ClientSpec,
    pub config: ClientConfig,
}

/// Everything a load found: the fleet (when `fleet.yaml` itself is usable), the clients
/// that are valid, and every diagnostic. A broken client file leaves the others usable,
/// which is what the daemon needs; commands that want all-or-nothing use [`Fleet::load`].
#[derive(Debug)]
pub struct Loaded {
    pub fleet: Option<Fleet>,
    /// Client names (file stems) whose manifests have errors.
    pub invalid: Vec<String>,
    pub diagnostics: Vec<Diagnostic>,
}

impl Loaded {
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics.iter().filter(|d| d.is_error())
    }

    pub fn has_errors(&self) -> bool {
        self.errors().next().is_some()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("the fleet at {} is invalid:\n{}", dir.display(), render(diagnostics))]
    Invalid {
        dir: PathBuf,
        diagnostics: Vec<Diagnostic>,
    },
    #[error("no client `{name}` in the fleet at {}{}", dir.display(), hint(suggestion))]
    UnknownClient {
        name: String,
        dir: PathBuf,
        suggestion: Option<String>,
    },
}

fn render(diagnostics: &[Diagnostic]) -> String {
    diagnostics
        .iter()
        .filter(|d| d.is_error())
        .map(|d| format!("  {d}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn hint(suggestion: &Option<String>) -> String {
    suggestion
        .as_ref()
        .map(|s| format!(" (did you mean `{s}`?)"))
        .unwrap_or_default()
}

/// Options for a load.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoadOptions {
    /// Unset secret variables are errors instead of warnings.
    pub require_secrets: bool,
}

impl Fleet {
    /// Load a fleet and refuse it if anything is wrong.
    pub fn load(dir: &Path) -> Result<Fleet, FleetError> {
        let loaded = load(dir, LoadOptions::default());
        match loaded.fleet {
            Some(fleet) if !loaded.has_errors() => Ok(fleet),
            _ => Err(FleetError::Invalid {
                dir: dir.to_path_buf(),
                diagnostics: loaded.diagnostics,
            }),
        }
    }

    pub fn client(&self, name: &str) -> Result<&Client, FleetError> {
        self.clients
            .get(name)
            .ok_or_else(|| FleetError::UnknownClient {
                name: name.to_owned(),
                dir: self.dir.clone(),
                suggestion: nearest(name, self.clients.keys().map(String::as_str)),
            })
    }

    /// The clients named, or all of them when `names` is empty.
    pub fn select(&self, names: &[String]) -> Result<Vec<&Client>, FleetError> {
        if names.is_empty() {
            return Ok(self.clients.values().collect());
        }
        names.iter().map(|name| self.client(name)).collect()
    }

    /// Index of a wave in `spec.waves`; clients without one go last.
    pub fn wave_index(&self, client: &Client) -> usize {
        let waves = &self.manifest.spec.waves;
        client
            .config
            .wave
            .as_ref()
            .and_then(|w| waves.iter().position(|x| x == w))
            .unwrap_or(waves.len())
    }
}

/// Read a file that came from a PR: refuse it before reading when it resolves outside
/// the fleet folder (a symlink to `/etc/…` or another checkout) or is too large.
fn read_capped(root: &Path, path: &Path) -> Result<String, String> {
    let resolved = fs::canonicalize(path).map_err(|e| format!("cannot read: {e}"))?;
    if !resolved.starts_with(root) {
        return Err(
            "refused: this manifest is a symlink to a file outside the fleet folder, and steward does not read it"
                .to_owned(),
        );
    }
    let file = fs::File::open(path).map_err(|e| format!("cannot read: {e}"))?;
    let mut text = String::new();
    let limit = yaml::MAX_FILE_BYTES as u64;
    file.take(limit + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read as UTF-8 text: {e}"))?;
    if text.len() as u64 > limit {
        return Err(format!(
            "file is larger than {limit} bytes; manifests are limited to that size"
        ));
    }
    Ok(text)
}

struct Parsed {
    file: PathBuf,
    doc: Document,
}

/// Read and schema-check one manifest. `None` when it has errors (already reported).
fn parse_file(root: &Path, path: &Path, kind: Kind, out: &mut Vec<Diagnostic>) -> Option<Parsed> {
    let text = match read_capped(root, path) {
        Ok(text) => text,
        Err(message) => {
            out.push(Diagnostic::error(path, Position::FILE, "", message));
            return None;
        }
    };
    let doc = match yaml::parse(&text) {
        Ok(doc) => doc,
        Err(err) => {
            out.push(Diagnostic::error(path, err.at, "", err.message));
            return None;
        }
    };
    let problems = schema::check(kind, path, &doc);
    if problems.is_empty() {
        Some(Parsed {
            file: path.to_path_buf(),
            doc,
        })
    } else {
        out.extend(problems);
        None
    }
}

/// Load everything, collecting every diagnostic.
pub fn load(dir: &Path, options: LoadOptions) -> Loaded {
    let mut diagnostics = Vec::new();
    // Manifests are read only from inside this folder, wherever a symlink points.
    let root = fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let fleet_file = dir.join("fleet.yaml");
    let fleet_parsed = if fleet_file.is_file() {
        parse_file(&root, &fleet_file, Kind::Fleet, &mut diagnostics)
    } else {
        diagnostics.push(Diagnostic::error(
            &fleet_file,
            Position::FILE,
            "",
            format!(
                "no fleet.yaml in {} (pass --fleet DIR or set STEWARD_FLEET)",
                dir.display()
            ),
        ));
        None
    };

    let mut client_files = Vec::new();
    let clients_dir = dir.join("clients");
    match fs::read_dir(&clients_dir) {
        Ok(entries) => {
            for path in entries.filter_map(|e| e.ok().map(|e| e.path())) {
                match path.extension().and_then(|e| e.to_str()) {
                    Some("yaml") => client_files.push(path),
                    Some("yml") => diagnostics.push(Diagnostic::warning(
                        &path,
                        Position::FILE,
                        "",
                        "ignored: client manifests end in .yaml",
                    )),
                    _ => {}
                }
            }
        }
        Err(err) => diagnostics.push(Diagnostic::error(
            &clients_dir,
            Position::FILE,
            "",
            format!("cannot read the clients folder: {err}"),
        )),
    }
    client_files.sort();

    let mut invalid = Vec::new();
    let mut parsed_clients = Vec::new();
    for path in &client_files {
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_owned();
        match parse_file(&root, path, Kind::Client, &mut diagnostics) {
            Some(parsed) => parsed_clients.push((stem, parsed)),
            None => invalid.push(stem),
        }
    }

    let Some(fleet_parsed) = fleet_parsed else {
        return Loaded {
            fleet: None,
            invalid,
            diagnostics,
        };
    };
    let manifest: FleetManifest = match serde_json::from_value(fleet_parsed.doc.value.clone()) {
        Ok(m) => m,
        Err(err) => {
            diagnostics.push(Diagnostic::error(
                &fleet_file,
                Position::FILE,
                "",
                err.to_string(),
            ));
            return Loaded {
                fleet: None,
                invalid,
                diagnostics,
            };
        }
    };

    let migrations_dir = dir.join(&manifest.spec.migrations);
    let catalog = match Catalog::load(&migrations_dir) {
        Ok(catalog) => catalog,
        Err(errors) => {
            let at = fleet_parsed.doc.spans.value("/spec/migrations");
            for err in errors {
                diagnostics.push(Diagnostic::error(
                    &fleet_file,
                    at,
                    "spec.migrations",
                    err.to_string(),
                ));
            }
            Catalog {
                dir: migrations_dir.clone(),
                migrations: Vec::new(),
            }
        }
    };
    check_fleet(
        &fleet_file,
        &fleet_parsed.doc,
        &manifest,
        options,
        &mut diagnostics,
    );

    let defaults = fleet_parsed
        .doc
        .value
        .pointer("/spec/defaults")
        .cloned()
        .unwrap_or(Value::Null);
    let mut clients: BTreeMap<String, Client> = BTreeMap::new();
    let mut declared: BTreeMap<String, PathBuf> = BTreeMap::new();
    for (stem, parsed) in parsed_clients {
        // Duplicates are checked on the declared name, whatever else is wrong with the file.
        let name = parsed
            .doc
            .value
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or(&stem)
            .to_owned();
        let duplicate = declared.get(&name).cloned();
        if let Some(first) = &duplicate {
            let at = parsed.doc.spans.value("/metadata/name");
            diagnostics.push(Diagnostic::error(
                &parsed.file,
                at,
                "metadata.name",
                format!(
                    "duplicate client name `{name}`, also declared in {}",
                    first.display()
                ),
            ));
        } else {
            declared.insert(name, parsed.file.clone());
        }
        let ctx = Context {
            fleet: &fleet_parsed,
            client: &parsed,
            manifest: &manifest,
            catalog: &catalog,
            options,
        };
        let before = diagnostics.iter().filter(|d| d.is_error()).count();
        let client = resolve_client(&ctx, &stem, &defaults, &mut diagnostics);
        let clean = diagnostics.iter().filter(|d| d.is_error()).count() == before;
        match client {
            Some(client) if clean && duplicate.is_none() => {
                clients.insert(client.config.name.clone(), client);
            }
            _ => invalid.push(stem),
        }
    }

    let backups_dir = crate::postgres::backup::Store {
        dir: backups_dir(dir, &manifest, &fleet_file, &fleet_parsed, &mut diagnostics),
        keep: manifest.spec.backups.keep,
        remote: manifest.spec.backups.store.as_ref().map(|url| {
            crate::postgres::remote::RemoteConfig {
                url: url.clone(),
                s3: manifest.spec.backups.s3.clone(),
            }
        }),
    };
    if manifest.spec.backups.store.is_some() && manifest.spec.backups.s3.is_none() {
        diagnostics.push(Diagnostic::error(
            &fleet_file,
            fleet_parsed.doc.spans.value("/spec/backups/store"),
            "spec.backups.s3",
            "spec.backups.store needs spec.backups.s3: accessKeyId and secretAccessKey (and, off AWS, endpoint) as secret references",
        ));
    }
    let fleet = Fleet {
        dir: dir.to_path_buf(),
        file: fleet_file,
        manifest,
        migrations_dir,
        backups_dir,
        catalog,
        clients,
    };
    diagnostics.sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
    Loaded {
        fleet: Some(fleet),
        invalid,
        diagnostics,
    }
}

fn check_fleet(
    file: &Path,
    doc: &Document,
    manifest: &FleetManifest,
    options: LoadOptions,
    out: &mut Vec<Diagnostic>,
) {
    let spec = &manifest.spec;
    let mut seen = Vec::new();
    for (i, wave) in spec.waves.iter().enumerate() {
        if seen.contains(&wave) {
            let at = doc.spans.value(&format!("/spec/waves/{i}"));
            out.push(Diagnostic::error(
                file,
                at,
                format!("spec.waves.{i}"),
                format!("wave `{wave}` is listed twice"),
            ));
        }
        seen.push(wave);
    }
    let mut refs: Vec<(&SecretRef, String)> = vec![
        (&spec.vercel.token, "/spec/vercel/token".to_owned()),
        (&spec.fingerprint_key, "/spec/fingerprintKey".to_owned()),
    ];
    if let Some(token) = spec.github.as_ref().and_then(|g| g.token.as_ref()) {
        refs.push((token, "/spec/github/token".to_owned()));
    }
    for (i, hook) in spec.notify.webhooks.iter().enumerate() {
        refs.push((&hook.url, format!("/spec/notify/webhooks/{i}/url")));
    }
    if let Some(smtp) = &spec.notify.smtp {
        refs.push((&smtp.server, "/spec/notify/smtp/server".to_owned()));
        if smtp.from.parse::<lettre::message::Mailbox>().is_err() {
            out.push(Diagnostic::error(
                file,
                doc.spans.value("/spec/notify/smtp/from"),
                "spec.notify.smtp.from",
                format!(
                    "`{}` is not a mail sender like `Ops <ops@example.com>`",
                    smtp.from
                ),
            ));
        }
    }
    for (secret, pointer) in refs {
        check_secret(file, &doc.spans, &pointer, &secret.env, options, out);
    }
    for (i, route) in spec.vercel.connect_to.iter().enumerate() {
        if !route.to.contains(':') {
            let at = doc.spans.value(&format!("/spec/vercel/connectTo/{i}/to"));
            out.push(Diagnostic::error(
                file,
                at,
                format!("spec.vercel.connectTo.{i}.to"),
                format!("`{}` must be host:port", route.to),
            ));
        }
    }
}

fn check_secret(
    file: &Path,
    spans: &Spans,
    pointer: &str,
    var: &str,
    options: LoadOptions,
    out: &mut Vec<Diagnostic>,
) {
    if SecretRef::env(var).is_available() {
        return;
    }
    let at = spans.value(pointer);
    let field = schema::dotted(pointer);
    let message = format!("secret variable {var} is not set in steward's environment");
    out.push(if options.require_secrets {
        Diagnostic::error(file, at, field, message)
    } else {
        Diagnostic::warning(file, at, field, message)
    });
}

/// Where the fleet's backups go: `spec.backups.dir`, or a folder under the user's state
/// directory. Dumps hold client data: one inside a Git work tree is one `git add .` away
/// from a repository, so that gets a warning.
fn backups_dir(
    dir: &Path,
    manifest: &FleetManifest,
    file: &Path,
    parsed: &Parsed,
    diagnostics: &mut Vec<Diagnostic>,
) -> PathBuf {
    let Some(configured) = &manifest.spec.backups.dir else {
        let fleet = manifest
            .metadata
            .as_ref()
            .and_then(|m| m.name.as_deref())
            .unwrap_or("default");
        return default_backups_root().join(fleet);
    };
    let path = dir.join(configured);
    if let Some(work_tree) = git_work_tree(&path) {
        diagnostics.push(Diagnostic::warning(
            file,
            parsed.doc.spans.value("/spec/backups/dir"),
            "spec.backups.dir",
            format!(
                "backups go inside the Git work tree at {}: dumps hold client data and must never be committed; choose a folder outside it, or leave spec.backups.dir unset for the private default",
                work_tree.display()
            ),
        ));
    }
    path
}

/// `$XDG_STATE_HOME/steward/backups`, else `~/.local/state/steward/backups`, else (no home
/// at all, as in some containers) `./steward-backups` beside the process, which the
/// operator is expected to mount.
pub fn default_backups_root() -> PathBuf {
    dirs::state_dir()
        .or_else(|| dirs::home_dir().map(|h| h.join(".local/state")))
        .map_or_else(
            || PathBuf::from("steward-backups"),
            |state| state.join("steward").join("backups"),
        )
}

/// The Git work tree holding `path` (or its nearest existing ancestor), if any.
fn git_work_tree(path: &Path) -> Option<PathBuf> {
    let existing = path.ancestors().find(|p| p.exists())?;
    let absolute = fs::canonicalize(existing).ok()?;
    absolute
        .ancestors()
        .find(|p| p.join(".git").exists())
        .map(Path::to_path_buf)
}

struct Context<'a> {
    fleet: &'a Parsed,
    client: &'a Parsed,
    manifest: &'a FleetManifest,
    catalog: &'a Catalog,
    options: LoadOptions,
}

impl Context<'_> {
    /// Where a merged spec field came from: the client file, else the fleet defaults.
    fn locate(&self, spec_pointer: &str) -> (&Path, Position) {
        let client_ptr = format!("/spec{spec_pointer}");
        if self.client.doc.value.pointer(&client_ptr).is_some() {
            return (&self.client.file, self.client.doc.spans.value(&client_ptr));
        }
        let fleet_ptr = format!("/spec/defaults{spec_pointer}");
        if self.fleet.doc.value.pointer(&fleet_ptr).is_some() {
            return (&self.fleet.file, self.fleet.doc.spans.value(&fleet_ptr));
        }
        (&self.client.file, self.client.doc.spans.key("/spec"))
    }

    fn error(&self, spec_pointer: &str, message: impl Into<String>) -> Diagnostic {
        let (file, at) = self.locate(spec_pointer);
        Diagnostic::error(
            file,
            at,
            format!("spec.{}", schema::dotted(spec_pointer)),
            message,
        )
    }

    fn missing(&self, spec_pointer: &str) -> Diagnostic {
        let field = format!("spec.{}", schema::dotted(spec_pointer));
        Diagnostic::error(
            &self.client.file,
            self.client.doc.spans.key("/spec"),
            field.clone(),
            format!("`{field}` is required (set it here or in the fleet's spec.defaults)"),
        )
    }
}

/// Validate `policy.rollout`: stages rising strictly to a last one of 100, each but the
/// last with a duration, and an error rate that reads as one.
fn rollout(
    ctx: &Context<'_>,
    spec: &super::types::StagedRolloutSpec,
    out: &mut Vec<Diagnostic>,
) -> Option<super::Rollout> {
    let errors = out.len();
    if spec.stages.is_empty() {
        out.push(ctx.error(
            "/policy/rollout/stages",
            "at least one stage is required, the last one `percent: 100`",
        ));
    }
    let last = spec.stages.len().saturating_sub(1);
    let mut stages = Vec::new();
    for (i, stage) in spec.stages.iter().enumerate() {
        let at = format!("/policy/rollout/stages/{i}");
        if !(1..=100).contains(&stage.percent) {
            out.push(ctx.error(
                &format!("{at}/percent"),
                format!("{}% is not a share of traffic: use 1 to 100", stage.percent),
            ));
        }
        if i > 0 && stage.percent <= spec.stages[i - 1].percent {
            out.push(ctx.error(
                &format!("{at}/percent"),
                format!(
                    "stages must rise: {}% follows {}%",
                    stage.percent,
                    spec.stages[i - 1].percent
                ),
            ));
        }
        if i == last && stage.percent != 100 {
            out.push(ctx.error(
                &format!("{at}/percent"),
                format!(
                    "the last stage must be 100% (all traffic), not {}%",
                    stage.percent
                ),
            ));
        }
        let duration = stage.duration.map(|d| d.get()).unwrap_or_default();
        if i < last && duration.is_zero() {
            out.push(ctx.error(
                &at,
                format!(
                    "the {}% stage needs `for:` (how long it is watched before the next)",
                    stage.percent
                ),
            ));
        }
        stages.push(super::RolloutStage {
            percent: stage.percent,
            duration,
        });
    }
    let a = spec.analysis.clone().unwrap_or_default();
    let defaults = super::Analysis::default();
    let max_error_bp = match a.max_error_rate.as_deref().map(super::config::parse_rate) {
        None => defaults.max_error_bp,
        Some(Ok(bp)) => bp,
        Some(Err(message)) => {
            out.push(ctx.error("/policy/rollout/analysis/maxErrorRate", message));
            defaults.max_error_bp
        }
    };
    let analysis = super::Analysis {
        max_error_bp,
        min_requests: a.min_requests.unwrap_or(defaults.min_requests),
        health: a.health.unwrap_or(defaults.health),
        on_insufficient_traffic: a
            .on_insufficient_traffic
            .unwrap_or(defaults.on_insufficient_traffic),
    };
    (out.len() == errors).then_some(super::Rollout { stages, analysis })
}

/// Deep-merge `over` onto `base`: mappings merge key by key, anything else is replaced.
pub fn merge(base: &Value, over: &Value) -> Value {
    match (base, over) {
        (Value::Object(base), Value::Object(over)) => {
            let mut out = base.clone();
            for (key, value) in over {
                let merged = match out.get(key) {
                    Some(existing) => merge(existing, value),
                    None => value.clone(),
                };
                out.insert(key.clone(), merged);
            }
            Value::Object(out)
        }
        (_, Value::Null) => base.clone(),
        (_, over) => over.clone(),
    }
}

fn resolve_client(
    ctx: &Context<'_>,
    stem: &str,
    defaults: &Value,
    out: &mut Vec<Diagnostic>,
) -> Option<Client> {
    let file = &ctx.client.file;
    let manifest: ClientManifest = match serde_json::from_value(ctx.client.doc.value.clone()) {
        Ok(m) => m,
        Err(err) => {
            out.push(Diagnostic::error(file, Position::FILE, "", err.to_string()));
            return None;
        }
    };
    let name = manifest.metadata.name.clone();
    if name != stem {
        out.push(Diagnostic::error(
            file,
            ctx.client.doc.spans.value("/metadata/name"),
            "metadata.name",
            format!("name `{name}` does not match the file name `{stem}.yaml`"),
        ));
    }
    let own = ctx
        .client
        .doc
        .value
        .pointer("/spec")
        .cloned()
        .unwrap_or(Value::Null);
    let merged = merge(defaults, &own);
    let spec: ClientSpec = match serde_json::from_value(if merged.is_null() {
        Value::Object(Default::default())
    } else {
        merged
    }) {
        Ok(spec) => spec,
        Err(err) => {
            out.push(Diagnostic::error(
                file,
                ctx.client.doc.spans.key("/spec"),
                "spec",
                err.to_string(),
            ));
            return None;
        }
    };

    let waves = &ctx.manifest.spec.waves;
    if let Some(wave) = &spec.wave
        && !waves.contains(wave)
    {
        let listed = if waves.is_empty() {
            "spec.waves is empty".to_owned()
        } else {
            format!("spec.waves is [{}]", waves.join(", "))
        };
        out.push(
            ctx.error(
                "/wave",
                format!("wave `{wave}` is not declared in fleet.yaml ({listed})"),
            )
            .suggest(nearest(wave, waves.iter().map(String::as_str))),
        );
    }

    let code = spec.code.clone().unwrap_or_default();
    let project = code.project.clone().or_else(|| {
        out.push(ctx.missing("/code/project"));
        None
    });
    let version = match &code.version {
        None => {
            out.push(ctx.missing("/code/version"));
            None
        }
        Some(text) => CodeVersion::parse(text)
            .map_err(|m| out.push(ctx.error("/code/version", m)))
            .ok(),
    };

    let db = spec.database.clone().unwrap_or_default();
    let url = db.url.clone().or_else(|| {
        out.push(ctx.missing("/database/url"));
        None
    });
    if let Some(url) = &url {
        let (path, at) = ctx.locate("/database/url");
        let spans = Spans::default();
        let mut found = Vec::new();
        check_secret(path, &spans, "", &url.env, ctx.options, &mut found);
        out.extend(found.into_iter().map(|mut d| {
            d.line = at.line;
            d.column = at.column;
            d.field = "spec.database.url".to_owned();
            d
        }));
    }
    if let Some(url) = spec.rehearsal.as_ref().and_then(|r| r.url.as_ref()) {
        let (path, at) = ctx.locate("/rehearsal/url");
        let mut found = Vec::new();
        check_secret(
            path,
            &Spans::default(),
            "",
            &url.env,
            ctx.options,
            &mut found,
        );
        out.extend(found.into_iter().map(|mut d| {
            d.line = at.line;
            d.column = at.column;
            d.field = "spec.rehearsal.url".to_owned();
            d
        }));
    }
    let schema_version = match &db.schema_version {
        None => {
            out.push(ctx.missing("/database/schemaVersion"));
            None
        }
        Some(text) => match text.parse::<Version>() {
            Err(err) => {
                out.push(ctx.error("/database/schemaVersion", err.to_string()));
                None
            }
            Ok(v) if !ctx.catalog.contains(&v) && !ctx.catalog.migrations.is_empty() => {
                let known: Vec<&str> = ctx
                    .catalog
                    .migrations
                    .iter()
                    .map(|m| m.version.as_str())
                    .collect();
                out.push(
                    ctx.error(
                        "/database/schemaVersion",
                        format!(
                            "schema version {v} is not in the migrations folder {}",
                            ctx.catalog.dir.display()
                        ),
                    )
                    .suggest(nearest(v.as_str(), known)),
                );
                None
            }
            Ok(v) => Some(v),
        },
    };

    let env = spec.env.clone().unwrap_or_default();
    for (key, value) in &env {
        let pointer = format!("/env/{}", yaml::escape(key));
        let valid = key
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            out.push(ctx.error(
                &pointer,
                format!(
                    "`{key}` is not a valid environment variable name ([A-Za-z_][A-Za-z0-9_]*)"
                ),
            ));
        } else if key.starts_with("VERCEL_") {
            out.push(ctx.error(
                &pointer,
                format!("`{key}`: names starting with VERCEL_ are reserved by Vercel"),
            ));
        }
        if let EnvValue::Secret(secret) = value {
            let (path, at) = ctx.locate(&pointer);
            let mut found = Vec::new();
            check_secret(
                path,
                &Spans::default(),
                "",
                &secret.env,
                ctx.options,
                &mut found,
            );
            out.extend(found.into_iter().map(|mut d| {
                d.line = at.line;
                d.column = at.column;
                d.field = format!("spec.env.{key}");
                d
            }));
        }
    }

    let sched = spec.schedule.clone().unwrap_or_default();
    let timezone = match parse_timezone(sched.timezone.as_deref().unwrap_or("UTC")) {
        Ok(tz) => Some(tz),
        Err(message) => {
            let suggestion = sched
                .timezone
                .as_deref()
                .and_then(|t| nearest(t, chrono_tz::TZ_VARIANTS.iter().map(|z| z.name())));
            out.push(ctx.error("/schedule/timezone", message).suggest(suggestion));
            None
        }
    };
    let mut windows = Vec::new();
    for (i, text) in sched.windows.clone().unwrap_or_default().iter().enumerate() {
        match text.parse::<Window>() {
            Ok(w) => windows.push(w),
            Err(err) => out.push(ctx.error(&format!("/schedule/windows/{i}"), err.to_string())),
        }
    }

    let defaults = Policy::default();
    let p = spec.policy.clone().unwrap_or_default();
    let h = p.health.clone().unwrap_or_default();
    let health = Health {
        path: h.path.clone().unwrap_or(defaults.health.path.clone()),
        expect_status: h.expect_status.unwrap_or(defaults.health.expect_status),
        timeout: h.timeout.map_or(defaults.health.timeout, |t| t.get()),
    };
    if !health.path.starts_with('/') {
        out.push(ctx.error(
            "/policy/health/path",
            format!("`{}` must start with /", health.path),
        ));
    }
    let policy = Policy {
        apply: p.apply.unwrap_or(defaults.apply),
        destructive: p.destructive.unwrap_or(defaults.destructive),
        backup: p.backup.unwrap_or(defaults.backup),
        rollback: p.rollback.unwrap_or(defaults.rollback),
        bake: p.bake.map_or(defaults.bake, |b| b.get()),
        health,
        irreversible: p.irreversible.unwrap_or(defaults.irreversible),
        rehearse: p.rehearse.unwrap_or(defaults.rehearse),
        max_lock_time: p.max_lock_time.map(|t| t.get()),
        drift: p.drift.unwrap_or(defaults.drift),
        rollout: p.rollout.as_ref().and_then(|r| rollout(ctx, r, out)),
        take_over_promotion: p
            .take_over_promotion
            .unwrap_or(defaults.take_over_promotion),
        outside_change: p.outside_change.unwrap_or(defaults.outside_change),
    };
    if policy.max_lock_time.is_some() && policy.rehearse != RehearsePolicy::Required {
        out.push(ctx.error(
            "/policy/maxLockTime",
            "policy.maxLockTime is measured by a rehearsal: set policy.rehearse: required too",
        ));
    }

    let contacts = spec.notify.clone().unwrap_or_default();
    for (i, hook) in contacts.webhooks.iter().flatten().enumerate() {
        let pointer = format!("/notify/webhooks/{i}/url");
        let (path, at) = ctx.locate(&pointer);
        let mut found = Vec::new();
        check_secret(
            path,
            &Spans::default(),
            "",
            &hook.url.env,
            ctx.options,
            &mut found,
        );
        out.extend(found.into_iter().map(|mut d| {
            d.line = at.line;
            d.column = at.column;
            d.field = format!("spec.notify.webhooks.{i}.url");
            d
        }));
    }
    for (i, address) in contacts.email.iter().flatten().enumerate() {
        if address.parse::<lettre::message::Mailbox>().is_err() {
            out.push(ctx.error(
                &format!("/notify/email/{i}"),
                format!("`{address}` is not an email address"),
            ));
        }
    }
    if !contacts.email.as_ref().is_none_or(Vec::is_empty) && ctx.manifest.spec.notify.smtp.is_none()
    {
        out.push(ctx.error(
            "/notify/email",
            "client emails need a mail server: set spec.notify.smtp in fleet.yaml",
        ));
    }

    let verify = db.verify.clone().unwrap_or_default();
    let config = ClientConfig {
        name,
        labels: manifest.metadata.labels.clone(),
        wave: spec.wave.clone(),
        suspend: spec.suspend.unwrap_or(false),
        code: CodeConfig {
            project: project?,
            version: version?,
        },
        database: DatabaseConfig {
            url: url?,
            identity: db.identity,
            schema_version: schema_version?,
            rls_tables: verify.rls_tables.unwrap_or_default(),
            checks: verify.checks.unwrap_or_default(),
        },
        env,
        schedule: Schedule {
            timezone: timezone?,
            windows,
            urgent: sched.urgent.unwrap_or(false),
        },
        policy,
        rehearsal_url: spec.rehearsal.as_ref().and_then(|r| r.url.clone()),
    };
    Some(Client {
        file: file.clone(),
        spec,
        config,
    })
}

#[cfg(test)]
mod tests {
    use super::merge;
    use serde_json::json;

    #[test]
    fn merging_defaults_keeps_what_the_client_leaves_out_and_lets_the_client_win() {
        let defaults =
            json!({"policy": {"apply": "auto", "bake": "10m"}, "env": {"A": "1", "B": "2"}});
        let client = json!({"policy": {"bake": "5s"}, "env": {"B": "3"}});
        let merged = merge(&defaults, &client);
        assert_eq!(
            merged,
            json!({"policy": {"apply": "auto", "bake": "5s"}, "env": {"A": "1", "B": "3"}})
        );
    }
}
