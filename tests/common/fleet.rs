//! A one-client fleet wired to a test database and an in-process Vercel emulator.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use steward::emulator::vercel::{EmulatorConfig, RunningEmulator};

use super::TestDb;

pub const TOKEN: &str = "vercel-test-token-5b1e";
pub const FINGERPRINT_KEY: &str = "fingerprint-key-for-tests";
/// A secret whose bytes must never appear in any output.
pub const STRIPE: &str = "sk_live_SECRET_9f8e7d6c5b4a";
pub const SHA1: &str = "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1";
pub const SHA2: &str = "b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2";

pub struct World {
    pub db: TestDb,
    pub emulator: RunningEmulator,
    pub dir: tempfile::TempDir,
}

impl World {
    pub async fn new() -> World {
        let db = TestDb::create().await;
        let mut config = EmulatorConfig::new(TOKEN);
        config.build_time = std::time::Duration::from_millis(200);
        let emulator = RunningEmulator::start(config).await.expect("emulator");
        emulator.create_project("shop-web", None);
        // A client steward already took promotion over (`adopt --take-over-promotion`):
        // tests/promotion.rs starts from Vercel's default instead.
        emulator.set_auto_assign("shop-web", false);
        let dir = tempfile::tempdir().expect("tempdir");
        let world = World { db, emulator, dir };
        world.write_fleet(&super::repo_root().join("migrations"), "");
        world.write_client(SHA1, "2024_11_18_001", "info", "");
        world
    }

    /// (Re)write `fleet.yaml` with this migrations folder and extra `spec` lines.
    pub fn write_fleet(&self, migrations: &Path, extra: &str) {
        let root = self.dir.path();
        fs::create_dir_all(root.join("clients")).expect("mkdir");
        fs::write(
            root.join("fleet.yaml"),
            format!(
                "apiVersion: steward/v1\nkind: Fleet\nspec:\n  migrations: {}\n  backups: {{dir: backups}}\n  vercel:\n    apiUrl: {}\n    token: {{env: TEST_VERCEL_TOKEN}}\n    connectTo: [{{host: \"*.vercel.app\", to: \"{}\", scheme: http}}]\n  fingerprintKey: {{env: TEST_FINGERPRINT_KEY}}\n{extra}",
                migrations.display(),
                self.emulator.base_url,
                self.emulator.authority()
            ),
        )
        .expect("write");
    }

    /// (Re)write the client manifest: code sha, schema version, LOG_LEVEL, extra spec lines.
    pub fn write_client(&self, sha: &str, schema: &str, log_level: &str, extra: &str) {
        fs::write(
            self.dir.path().join("clients/shop.yaml"),
            format!(
                "apiVersion: steward/v1\nkind: Client\nmetadata: {{name: shop}}\nspec:\n  code: {{project: shop-web, version: {sha}}}\n  database:\n    url: {{env: TEST_SHOP_DATABASE_URL}}\n    schemaVersion: {schema}\n    verify: {{rlsTables: [accounts]}}\n  env:\n    LOG_LEVEL: {log_level}\n    STRIPE_SECRET_KEY: {{env: TEST_STRIPE_KEY, sensitive: true}}\n  policy:\n    apply: auto\n    bake: 600ms\n    health: {{path: /api/health, timeout: 2s}}\n{extra}"
            ),
        )
        .expect("write");
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn steward(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run steward")
    }

    /// A setup step (`adopt`, `apply`, `migrate`): it must succeed, or the test stops
    /// here with both streams instead of failing later for a reason it cannot name.
    pub fn setup(&self, args: &[&str]) -> Output {
        let output = self.steward(args);
        super::assert_exit(&output, 0);
        output
    }

    /// `steward ARGS --fleet DIR` with the world's secrets in its environment.
    pub fn command(&self, args: &[&str]) -> Command {
        self.command_at(self.path(), args)
    }

    /// Like [`World::command`], on a fleet at another path (a copy, or a symlink to one).
    pub fn command_at(&self, fleet: &Path, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_steward"));
        command
            .args(args)
            .arg("--fleet")
            .arg(fleet)
            .env("TEST_VERCEL_TOKEN", TOKEN)
            .env("TEST_FINGERPRINT_KEY", FINGERPRINT_KEY)
            .env("TEST_SHOP_DATABASE_URL", &self.db.url)
            .env("TEST_STRIPE_KEY", STRIPE)
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info");
        command
    }

    /// Fail the test if a secret's bytes appear in this output.
    pub fn assert_no_secret(&self, output: &Output) {
        for secret in [STRIPE, TOKEN, FINGERPRINT_KEY] {
            for stream in [&output.stdout, &output.stderr] {
                assert!(
                    !stream.windows(secret.len()).any(|w| w == secret.as_bytes()),
                    "secret leaked in output:\n{}\n{}",
                    String::from_utf8_lossy(&output.stdout),
                    String::from_utf8_lossy(&output.stderr)
                );
            }
        }
    }

    pub fn production_sha(&self) -> Option<String> {
        self.emulator.with_state(|s| {
            let p = s.projects.values().find(|p| p.name == "shop-web")?;
            let id = p.production.as_ref()?;
            s.deployments.get(id).map(|d| d.sha.clone())
        })
    }

    pub fn env(&self, key: &str) -> Option<(String, String)> {
        self.emulator.with_state(|s| {
            let p = s.projects.values().find(|p| p.name == "shop-web")?;
            p.env
                .iter()
                .find(|e| e.key == key)
                .map(|e| (e.value.clone(), e.kind.clone()))
        })
    }
}
