//! Backups that outlive the machine: `spec.backups.store` on a real S3-compatible server
//! (moto, installed by `scripts/test`), a real Postgres and the `steward` binary.

mod common;

use std::fs;

use common::assert_exit;
use common::fleet::World;
use common::s3::S3Server;

const BUCKET: &str = "steward-backups";

/// The world's fleet with its backups copied to the store under `fleet-a/`.
fn with_store(world: &World, s3: &S3Server) -> Vec<(&'static str, String)> {
    let fleet = world.path().join("fleet.yaml");
    let text = fs::read_to_string(&fleet).expect("fleet.yaml");
    fs::write(
        &fleet,
        text.replace(
            "  backups: {dir: backups}\n",
            &format!(
                "  backups:\n    dir: backups\n    store: s3://{BUCKET}/fleet-a\n    s3:\n      endpoint: {{env: TEST_S3_ENDPOINT}}\n      accessKeyId: {{env: TEST_S3_KEY}}\n      secretAccessKey: {{env: TEST_S3_SECRET}}\n"
            ),
        ),
    )
    .expect("write");
    vec![
        ("TEST_S3_ENDPOINT", s3.endpoint.clone()),
        ("TEST_S3_KEY", "testing".to_owned()),
        ("TEST_S3_SECRET", "s3-secret-never-printed".to_owned()),
    ]
}

fn run(world: &World, env: &[(&str, String)], args: &[&str]) -> std::process::Output {
    let mut command = world.command(args);
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("run steward")
}

async fn has_members(world: &World) -> bool {
    let mut conn = world.db.connect().await;
    sqlx::query_scalar::<_, bool>("select to_regclass('members') is not null")
        .fetch_one(&mut conn)
        .await
        .expect("regclass")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_goes_to_the_store_and_restores_on_a_machine_that_lost_its_folder() {
    let s3 = S3Server::start(BUCKET).await;
    let world = World::new().await;
    let env = with_store(&world, &s3);
    assert_exit(&run(&world, &env, &["adopt", "shop"]), 0);
    assert_exit(&run(&world, &env, &["apply", "shop", "--yes"]), 0);
    let backup = run(&world, &env, &["backup", "shop"]);
    assert_exit(&backup, 0);
    world.assert_no_secret(&backup);
    let said = format!("{}{}", common::stdout(&backup), common::stderr(&backup));
    assert!(!said.contains("s3-secret-never-printed"), "{said}");

    let keys = s3.keys(BUCKET).await;
    let dumps: Vec<&String> = keys.iter().filter(|k| k.ends_with(".dump")).collect();
    let sidecars: Vec<&String> = keys.iter().filter(|k| k.ends_with(".json")).collect();
    assert!(
        !dumps.is_empty() && dumps.len() == sidecars.len(),
        "every dump with its sidecar: {keys:?}"
    );
    assert!(
        keys.iter().all(|k| k.starts_with("fleet-a/shop/")),
        "{keys:?}"
    );
    // The machine loses its disk; the schema is changed by hand.
    fs::remove_dir_all(world.path().join("backups")).expect("rm");
    let mut conn = world.db.connect().await;
    sqlx::raw_sql("drop table members cascade")
        .execute(&mut conn)
        .await
        .expect("drop");
    assert!(!has_members(&world).await);

    // The store's sidecars come back down: every backup is listed again.
    let listed = run(&world, &env, &["backups", "shop"]);
    assert_exit(&listed, 0);
    for dump in &dumps {
        let id = dump
            .trim_start_matches("fleet-a/shop/")
            .trim_end_matches(".dump");
        assert!(
            common::stdout(&listed).contains(id),
            "{id} listed: {}",
            common::stdout(&listed)
        );
    }
    let restored = run(
        &world,
        &env,
        &["restore", "shop", "--backup", "latest", "--yes"],
    );
    assert_exit(&restored, 0);
    assert!(has_members(&world).await, "restored from the store's copy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dump_altered_in_the_store_is_refused_before_it_is_restored() {
    let s3 = S3Server::start(BUCKET).await;
    let world = World::new().await;
    let env = with_store(&world, &s3);
    assert_exit(&run(&world, &env, &["adopt", "shop"]), 0);
    assert_exit(&run(&world, &env, &["apply", "shop", "--yes"]), 0);
    assert_exit(&run(&world, &env, &["backup", "shop"]), 0);
    let keys = s3.keys(BUCKET).await;
    let newest = keys
        .iter()
        .filter(|k| k.ends_with(".dump"))
        .max()
        .expect("a dump")
        .clone();
    let mut bytes = s3.get(BUCKET, &newest).await;
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    s3.put(BUCKET, &newest, bytes).await;
    fs::remove_dir_all(world.path().join("backups")).expect("rm");

    let refused = run(
        &world,
        &env,
        &["restore", "shop", "--backup", "latest", "--yes"],
    );
    assert_exit(&refused, 3);
    assert!(
        common::stderr(&refused).contains("SHA-256"),
        "{}",
        common::stderr(&refused)
    );
    assert!(has_members(&world).await, "the database was not touched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_prunes_the_store_as_it_prunes_the_folder() {
    let s3 = S3Server::start(BUCKET).await;
    let world = World::new().await;
    let mut env = with_store(&world, &s3);
    let fleet = world.path().join("fleet.yaml");
    let text = fs::read_to_string(&fleet).expect("fleet.yaml");
    fs::write(
        &fleet,
        text.replace(
            "    dir: backups\n",
            "    dir: backups\n    keep: {last: 2, days: 0}\n",
        ),
    )
    .expect("write");
    env.push(("STEWARD_ACTOR", "retention test".to_owned()));
    assert_exit(&run(&world, &env, &["adopt", "shop"]), 0);
    for _ in 0..4 {
        assert_exit(&run(&world, &env, &["backup", "shop"]), 0);
    }
    let keys = s3.keys(BUCKET).await;
    assert_eq!(
        keys.iter().filter(|k| k.ends_with(".dump")).count(),
        2,
        "{keys:?}"
    );
    let local = fs::read_dir(world.path().join("backups/shop"))
        .expect("folder")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "dump"))
        })
        .count();
    assert_eq!(local, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_without_credentials_is_an_error_naming_the_field() {
    let world = World::new().await;
    let fleet = world.path().join("fleet.yaml");
    let text = fs::read_to_string(&fleet).expect("fleet.yaml");
    fs::write(
        &fleet,
        text.replace(
            "  backups: {dir: backups}\n",
            &format!("  backups:\n    dir: backups\n    store: s3://{BUCKET}/x\n"),
        ),
    )
    .expect("write");
    let out = world.steward(&["validate"]);
    assert_exit(&out, 1);
    let said = format!("{}{}", common::stdout(&out), common::stderr(&out));
    assert!(
        said.contains("spec.backups.s3") && said.contains("fleet.yaml:"),
        "{said}"
    );
}
