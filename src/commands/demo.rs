//! `steward demo`: steward converging a three-client fleet on this machine, with only a
//! local Postgres. It starts the Vercel emulator in-process, creates three databases,
//! writes a fleet from `examples/demo/`, and runs the real CLI against them: adopt, a
//! first rollout, then a second where one client's build fails and is rolled back.
//! Everything it created is removed at the end (unless `--keep`).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use sqlx::{Connection, Executor, PgConnection};

use crate::cli::DemoArgs;
use crate::emulator::vercel::{EmulatorConfig, RunningEmulator};
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
                .execute(format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)").as_str())
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
            .execute(format!("CREATE DATABASE \"{db}\"").as_str())
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

    printer.note(format!(
        "steward demo: 3 clients — alpha (wave canary), bravo and charlie (wave main) — on {}, Vercel emulated at {}",
        args.database_url.split('@').next_back().unwrap_or("Postgres"),
        emulator.base_url
    ));
    heading(
        "1. Adopt each client's database (its identity, so steward never migrates the wrong one)",
    );
    for (name, _) in CLIENTS {
        steward(&["adopt", name])?;
    }
    heading("2. The plan for the first rollout (what a PR comment would show)");
    steward(&["plan"])?;
    heading("3. The daemon converges the fleet, wave by wave (steward run --once)");
    steward(&["run", "--once"])?;
    heading("4. A release: new code and schema for everyone; charlie's build is broken");
    write_clients(true)?;
    emulator.update_faults(|f| {
        f.fail_shas.insert(VERSIONS[2].3.to_owned());
    });
    steward(&["plan"])?;
    heading("5. The daemon rolls the release out; charlie's failed build is undone");
    steward(&["run", "--once"])?;
    heading("6. Where every client stands (steward status)");
    steward(&["status"])?;
    heading("7. charlie's update records (steward history charlie)");
    steward(&["history", "charlie", "--limit", "8"])?;
    Ok(Exit::Success)
}
