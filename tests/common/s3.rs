//! A real S3-compatible server for the backup-store tests: moto's server mode, installed
//! by `scripts/test`, started on a free loopback port and stopped with the test.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct S3Server {
    child: Child,
    pub endpoint: String,
}

impl S3Server {
    /// Start moto and create `bucket`. Fails the test, naming the script that installs
    /// moto, when it is missing: a missing tool never passes silently.
    pub async fn start(bucket: &str) -> S3Server {
        let addr = super::process::free_addr();
        let port = addr.rsplit(':').next().expect("port").to_owned();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start moto_server ({e}): run scripts/test, which installs it (pip install 'moto[server]')"
                )
            });
        let server = S3Server {
            child,
            endpoint: format!("http://{addr}"),
        };
        let http = reqwest::Client::new();
        let started = Instant::now();
        loop {
            // moto does not check signatures: a plain PUT creates the bucket.
            match http
                .put(format!("{}/{bucket}", server.endpoint))
                .send()
                .await
            {
                Ok(r) if r.status().is_success() => break,
                _ if started.elapsed() < Duration::from_secs(60) => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                other => panic!("moto_server did not come up on {addr}: {other:?}"),
            }
        }
        server
    }

    /// Every object key in `bucket`.
    pub async fn keys(&self, bucket: &str) -> Vec<String> {
        let body = reqwest::get(format!("{}/{bucket}?list-type=2", self.endpoint))
            .await
            .expect("list")
            .text()
            .await
            .expect("body");
        body.split("<Key>")
            .skip(1)
            .filter_map(|part| part.split_once("</Key>").map(|(k, _)| k.to_owned()))
            .collect()
    }

    pub async fn get(&self, bucket: &str, key: &str) -> Vec<u8> {
        reqwest::get(format!("{}/{bucket}/{key}", self.endpoint))
            .await
            .expect("get")
            .bytes()
            .await
            .expect("body")
            .to_vec()
    }

    /// Overwrite an object, as someone tampering with the store would.
    pub async fn put(&self, bucket: &str, key: &str, bytes: Vec<u8>) {
        let status = reqwest::Client::new()
            .put(format!("{}/{bucket}/{key}", self.endpoint))
            .body(bytes)
            .send()
            .await
            .expect("put")
            .status();
        assert!(status.is_success(), "put {key}: {status}");
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
