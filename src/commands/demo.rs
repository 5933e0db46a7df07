//! `steward demo`: steward converging a three-client fleet on this machine, with only a
//! local Postgres. It starts the Vercel emulator in-process, creates three databases,
//! writes a fleet from `examples/demo/`, and runs the real CLI against them: adopt (with
//! production promotion taken over from Vercel's Git integration), a first rollout, then a
//! second where one client's build fails and is rolled back, then a staged rollout judged
//! on live traffic and one aborted at its first stage.
//! Everything it created is removed at the end (unless `--keep`).

use sqlx::AssertSqlSafe;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use sqlx::{Connection, Executor, PgConnection};

use crate::cli::DemoArgs;
use crate::emulator::vercel::{EmulatorConfig, RunningEmulator, Traffic};
use crate::exit::Exit;
use crate::output::{Printer, Style};

const FLEET: &str = include_str!("../../examples/demo/fleet.yaml");
const CLIENTS: [(&str, &str); 3] = [
    (
        "alpha",
        include_str!("../../examples/demo/clients/alpha.yaml"),
    ),
    (
        "bravo",
        include_str!("../../examples/demo/clients/bravo.yaml"),
    ),
    (
        "charlie",
        include_str!("../../examples/demo/clients/charlie.yaml"),
    ),
];
const MIGRATIONS: &[(&str, &str)] = &[
    (
        "2024_11_04_001_accounts.down.sql",
        include_str!("../../migrations/2024_11_04_001_accounts.down.sql"),
    ),
    (
        "2024_11_04_001_accounts.up.sql",
        include_str!("../../migrations/2024_11_04_001_accounts.up.sql"),
    ),
    (
        "2024_11_04_001_accounts.verify.sql",
        include_str!("../../migrations/2024_11_04_001_accounts.verify.sql"),
    ),
    (
        "2024_11_18_001_members.down.sql",
        include_str!("../../migrations/2024_11_18_001_members.down.sql"),
    ),
    (
        "2024_11_18_001_members.up.sql",
        include_str!("../../migrations/2024_11_18_001_members.up.sql"),
    ),
    (
        "2024_11_18_001_members.verify.sql",
        include_str!("../../migrations/2024_11_18_001_members.verify.sql"),
    ),
    (
        "2024_12_02_001_invoices.down.sql",
        include_str!("../../migrations/2024_12_02_001_invoices.down.sql"),
    ),
    (
        "2024_12_02_001_invoices.up.sql",
        include_str!("../../migrations/2024_12_02_001_invoices.up.sql"),
    ),
    (
        "2024_12_02_001_invoices.verify.sql",
        include_str!("../../migrations/2024_12_02_001_invoices.verify.sql"),
    ),
    (
        "2024_12_18_001_invoice_due_date.down.sql",
        include_str!("../../migrations/2024_12_18_001_invoice_due_date.down.sql"),
    ),
    (
        "2024_12_18_001_invoice_due_date.up.sql",
        include_str!("../../migrations/2024_12_18_001_invoice_due_date.up.sql"),
    ),
    (
        "2024_12_18_001_invoice_due_date.verify.sql",
        include_str!("../../migrations/2024_12_18_001_invoice_due_date.verify.sql"),
    ),
    (
        "2025_01_13_001_invoice_status_index.down.sql",
        include_str!("../../migrations/2025_01_13_001_invoice_status_index.down.sql"),
    ),
    (
        "2025_01_13_001_invoice_status_index.up.sql",
        include_str!("../../migrations/2025_01_13_001_invoice_status_index.up.sql"),
    ),
];

const TOKEN: &str = "demo-vercel-token";

/// (client, first sha, first schema, second sha, second schema, second log level)
const VERSIONS: [(&str, &str, &str, &str, &str); 3] = [
    (
        "alpha",
        "a1c0ffee00000000000000000000000000000001",
        "2024_12_02_001",
        "a2c0ffee00000000000000000000000000000002",
        "2025_01_13_001",
    ),
    (
        "bravo",
        "b1c0ffee00000000000000000000000000000001",
        "2024_11_18_001",
        "b2c0ffee00000000000000000000000000000002",
        "2025_01_13_001",
    ),
    (
        "charlie",
        "c1c0ffee00000000000000000000000000000001",
        "2024_11_04_001",
        "c2badbad00000000000000000000000000000002",
        "2024_12_18_001",
    ),
];

fn database_url(server: &str, name: &str) -> String {
    let (base, query) = server
        .split_once('?')
        .map_or((server, None), |(b, q)| (b, Some(q)));
    let base = base.rsplit_once('/').map_or(base, |(b, _)| b);
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

pub async fn run(args: DemoArgs, printer: &Printer) -> Result<Exit> {
    let color = printer.color();
    let heading = |text: &str| {
        printer.note(format!(
            "\n{}",
            crate::output::paint(color, text, Style::Bold)
        ))
    };
    let mut admin = match PgConnection::connect(&args.database_url).await {
        Ok(conn) => conn,
        Err(err) => bail!(
            "no Postgres answers at {} ({err}).\nThe demo needs a local Postgres where this user may CREATE DATABASE. Start one with:\n  pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start\nor point DATABASE_URL at one.",
            args.database_url
        ),
    };
    let mut emulator_config = EmulatorConfig::new(TOKEN);
    emulator_config.build_time = Duration::from_millis(1500);
    let emulator = RunningEmulator::start(emulator_config).await?;
    let work = tempfile::Builder::new().prefix("steward-demo-").tempdir()?;
    let dbs: Vec<(String, String)> = CLIENTS
        .iter()
        .map(|(name, _)| {
            let db = format!("steward_demo_{}_{name}", std::process::id());
            let url = database_url(&args.database_url, &db);
            (db, url)
        })
        .collect();
    let result = demo(
        &args,
        printer,
        &heading,
        &emulator,
        work.path(),
        &dbs,
        &mut admin,
    )
    .await;
    if args.keep {
        let kept = work.keep();
        printer.note(format!(
            "\nkept the fleet at {} and the databases {}",
            kept.display(),
            dbs.iter()
                .map(|(d, _)| d.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    } else {
        for (db, _) in &dbs {
            let _ = admin
                .execute(AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)"
                )))
                .await;
        }
        printer.note("\ncleaned up: demo databases dropped, temporary fleet removed");
    }
    emulator.shutdown();
    result
}

async fn demo(
    args: &DemoArgs,
    printer: &Printer,
    heading: &dyn Fn(&str),
    emulator: &RunningEmulator,
    dir: &Path,
    dbs: &[(String, String)],
    admin: &mut PgConnection,
) -> Result<Exit> {
    for (db, _) in dbs {
        admin
            .execute(AssertSqlSafe(format!("CREATE DATABASE \"{db}\"")))
            .await
            .with_context(|| format!("cannot create database {db}"))?;
    }
    for (name, _) in CLIENTS {
        emulator.create_project(&format!("{name}-web"), None);
    }
    let migrations = dir.join("migrations");
    std::fs::create_dir_all(dir.join("fleet/clients"))?;
    std::fs::create_dir_all(&migrations)?;
    for (file, sql) in MIGRATIONS {
        std::fs::write(migrations.join(file), sql)?;
    }
    let fleet_dir = dir.join("fleet");
    let fleet = FLEET
        .replace("${MIGRATIONS}", &migrations.display().to_string())
        .replace("${VERCEL_API}", &emulator.base_url)
        .replace("${VERCEL_ADDR}", &emulator.authority())
        .replace("${BACKUPS}", &dir.join("backups").display().to_string());
    std::fs::write(fleet_dir.join("fleet.yaml"), fleet)?;
    let write_clients = |second: bool| -> Result<()> {
        for ((name, template), (_, sha1, schema1, sha2, schema2)) in CLIENTS.iter().zip(VERSIONS) {
            let upper = name.to_uppercase();
            let (sha, schema, level) = if second {
                (
                    sha2,
                    schema2,
                    if *name == "bravo" { "debug" } else { "info" },
                )
            } else {
                (sha1, schema1, "info")
            };
            let text = template
                .replace(&format!("${{{upper}_SHA}}"), sha)
                .replace(&format!("${{{upper}_SCHEMA}}"), schema)
                .replace(&format!("${{{upper}_LOG_LEVEL}}"), level);
            std::fs::write(fleet_dir.join("clients").join(format!("{name}.yaml")), text)?;
        }
        Ok(())
    };
    write_clients(false)?;

    let exe = std::env::current_exe()?;
    let steward = |cmd: &[&str]| -> Result<i32> {
        let mut command = Command::new(&exe);
        command.args(cmd).arg("--fleet").arg(&fleet_dir);
        command
            .env("STEWARD_DEMO_VERCEL_TOKEN", TOKEN)
            .env("STEWARD_DEMO_FINGERPRINT_KEY", "demo-fingerprint-key")
            .env("STEWARD_ACTOR", "steward demo");
        for ((name, _), (_, url)) in CLIENTS.iter().zip(dbs) {
            let upper = name.to_uppercase();
            command.env(format!("STEWARD_DEMO_{upper}_DATABASE_URL"), url);
            command.env(
                format!("STEWARD_DEMO_{upper}_STRIPE_KEY"),
                format!("sk_demo_{name}_not_a_real_key"),
            );
        }
        let status = command.stdin(Stdio::null()).status()?;
        Ok(status.code().unwrap_or(1))
    };

    // Each step must do what the demo says it shows; a demo that exits 0 after a step
    // went wrong would teach the wrong thing.
    let expect = |cmd: &[&str], want: &[i32]| -> Result<()> {
        let code = steward(cmd)?;
        if !want.contains(&code) {
            bail!(
                "demo step `steward {}` exited with {code}, expected {}",
                cmd.join(" "),
                want.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(" or ")
            );
        }
        Ok(())
    };

    printer.note(format!(
        "steward demo: 3 clients — alpha (wave canary), bravo and charlie (wave main) — on {}, Vercel emulated at {}",
        args.database_url.split('@').next_back().unwrap_or("Postgres"),
        emulator.base_url
    ));
    heading(
        "1. Adopt each client's database (its identity, so steward never migrates the wrong one) and take production promotion over from Vercel's Git integration",
    );
    // The emulated projects start as Vercel creates them, auto-assigning production
    // domains to every push; onboarding turns that off, so only steward promotes.
    for (name, _) in CLIENTS {
        expect(&["adopt", name, "--take-over-promotion"], &[0])?;
    }
    heading("2. The plan for the first rollout (what a PR comment would show)");
    expect(&["plan"], &[0])?;
    heading("3. The daemon converges the fleet, wave by wave (steward run --once)");
    expect(&["run", "--once"], &[0])?;
    check_first_rollout(emulator, dbs).await?;
    heading("4. A release: new code and schema for everyone; charlie's build is broken");
    write_clients(true)?;
    emulator.update_faults(|f| {
        f.fail_shas.insert(VERSIONS[2].3.to_owned());
    });
    expect(&["plan"], &[0])?;
    heading("5. The daemon rolls the release out; charlie's failed build is undone");
    // A failed client makes the pass exit non-zero: that is what this step shows.
    expect(&["run", "--once"], &[1])?;
    check_release(emulator, dbs).await?;
    heading("6. Where every client stands (steward status)");
    expect(&["status"], &[0, 1])?;
    heading("7. charlie's update records (steward history charlie)");
    expect(&["history", "charlie", "--limit", "8"], &[0])?;

    // Staged rollouts (policy.rollout): live traffic on every deployment, 20% of it
    // failing on bravo's next commit.
    emulator.set_traffic(
        "*",
        Traffic {
            requests_per_second: 100.0,
            error_rate: 0.0,
        },
    );
    emulator.set_traffic(
        STAGED[1].1,
        Traffic {
            requests_per_second: 100.0,
            error_rate: 0.2,
        },
    );
    for (client, sha) in STAGED {
        let path = fleet_dir.join("clients").join(format!("{client}.yaml"));
        let text = std::fs::read_to_string(&path)?;
        let (_, _, _, released, _) = VERSIONS
            .iter()
            .find(|v| v.0 == client)
            .context("a demo client")?;
        std::fs::write(&path, format!("{}{ROLLOUT}", text.replace(released, sha)))?;
    }
    heading(
        "8. A staged rollout: alpha's next commit takes 10%, then 50%, then all of production, each stage judged on its live 5xx rate",
    );
    expect(&["apply", "alpha", "--yes"], &[0])?;
    heading(
        "9. A staged rollout aborted: bravo's next commit fails 20% of its requests, so its first stage sends all traffic back at once",
    );
    expect(&["apply", "bravo", "--yes"], &[1])?;
    check_staged(emulator)?;
    Ok(Exit::Success)
}

/// The next commit of alpha and bravo, released in stages (step 8 and 9).
const STAGED: [(&str, &str); 2] = [
    ("alpha", "a3c0ffee00000000000000000000000000000003"),
    ("bravo", "b3badbad00000000000000000000000000000003"),
];

/// The policy the staged steps add to a client: short stages, so the demo stays quick.
const ROLLOUT: &str = "  policy:\n    rollout:\n      stages: [{percent: 10, for: 2s}, {percent: 50, for: 2s}, {percent: 100}]\n      analysis: {maxErrorRate: \"1%\", minRequests: 10}\n";

/// After steps 8 and 9: alpha on its staged commit; bravo's aborted, its previous commit
/// still in production.
fn check_staged(emulator: &RunningEmulator) -> Result<()> {
    let alpha = production_sha(emulator, "alpha");
    if alpha.as_deref() != Some(STAGED[0].1) {
        bail!("demo check: after its staged rollout alpha runs {alpha:?}");
    }
    let bravo = production_sha(emulator, "bravo");
    if bravo.as_deref() != Some(VERSIONS[1].3) {
        bail!("demo check: after its aborted rollout bravo runs {bravo:?}");
    }
    Ok(())
}

/// The production commit of a client's project in the emulator.
fn production_sha(emulator: &RunningEmulator, client: &str) -> Option<String> {
    emulator.with_state(|s| {
        let project = s
            .projects
            .values()
            .find(|p| p.name == format!("{client}-web"))?;
        let id = project.production.as_ref()?;
        s.deployments.get(id).map(|d| d.sha.clone())
    })
}

/// When the first deployment of a client's project was created (emulator clock, ms).
fn first_deployment_at(emulator: &RunningEmulator, client: &str) -> Option<u64> {
    emulator.with_state(|s| {
        let project = s
            .projects
            .values()
            .find(|p| p.name == format!("{client}-web"))?;
        s.deployments
            .values()
            .filter(|d| d.project_id == project.id)
            .map(|d| d.created_at)
            .min()
    })
}

/// The highest applied schema version in a client's database.
async fn schema_version(url: &str) -> Result<Option<String>> {
    let mut conn = PgConnection::connect(url).await?;
    let version: Option<String> = sqlx::query_scalar(
        "SELECT max(version::text) FROM (SELECT DISTINCT ON (version) version, status FROM system_versions ORDER BY version, applied_at DESC) v WHERE status = 'applied'",
    )
    .fetch_one(&mut conn)
    .await?;
    Ok(version)
}

/// After step 3: every client on its first commit and schema, canary before main.
async fn check_first_rollout(emulator: &RunningEmulator, dbs: &[(String, String)]) -> Result<()> {
    for ((client, sha1, schema, ..), (_, url)) in VERSIONS.iter().zip(dbs) {
        let sha = production_sha(emulator, client);
        if sha.as_deref() != Some(*sha1) {
            bail!("demo check: after the first rollout {client} runs {sha:?} in production");
        }
        let live = schema_version(url).await?;
        if live.as_deref() != Some(*schema) {
            bail!(
                "demo check: after the first rollout {client}'s schema is {live:?}, not {schema}"
            );
        }
    }
    let canary = first_deployment_at(emulator, "alpha");
    for client in ["bravo", "charlie"] {
        let main = first_deployment_at(emulator, client);
        if canary.is_none() || main < canary {
            bail!("demo check: wave main ({client}) was built before wave canary (alpha)");
        }
    }
    Ok(())
}

/// After step 5: alpha and bravo on the release; charlie's failed build undone, with
/// its old commit in production and its schema back where it was.
async fn check_release(emulator: &RunningEmulator, dbs: &[(String, String)]) -> Result<()> {
    for ((client, sha1, schema1, sha2, schema2), (_, url)) in VERSIONS.iter().zip(dbs) {
        let (sha, schema) = if *client == "charlie" {
            (sha1, schema1)
        } else {
            (sha2, schema2)
        };
        let live_sha = production_sha(emulator, client);
        if live_sha.as_deref() != Some(*sha) {
            bail!("demo check: after the release {client} runs {live_sha:?}, expected {sha}");
        }
        let live = schema_version(url).await?;
        if live.as_deref() != Some(*schema) {
            bail!("demo check: after the release {client}'s schema is {live:?}, expected {schema}");
        }
    }
    Ok(())
}
