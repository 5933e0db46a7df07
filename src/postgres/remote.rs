//! The off-machine copy of backups (`spec.backups.store: s3://bucket/prefix`) on any
//! S3-compatible store, through `object_store`. Dumps are streamed both ways in chunks,
//! never held whole in memory; each backup's sidecar (client, SHA-256, version) travels
//! with it and is checked before a restore or a rehearsal reads the dump.

use std::path::Path as LocalPath;
use std::sync::Arc;

use futures::StreamExt as _;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::{ObjectStore, PutPayload, WriteMultipart};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::PgError;
use crate::manifest::S3Spec;

/// Parts of a dump in flight: S3's smallest part size, one uploading while the next fills,
/// so memory stays bounded (about two parts) whatever the dump's size.
const PART: usize = 5 * 1024 * 1024;
/// Reads from the local file, copied into the part being filled.
const READ: usize = 256 * 1024;

/// Where the off-machine copies go, as the fleet manifest says.
#[derive(Debug, Clone)]
pub struct RemoteConfig {
    pub url: String,
    pub s3: Option<S3Spec>,
}

/// An opened store: the bucket, and the prefix every client folder sits under.
#[derive(Debug)]
pub struct Remote {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    url: String,
}

fn err(client: &str, message: impl Into<String>) -> PgError {
    PgError::Backup {
        client: client.to_owned(),
        message: message.into(),
    }
}

impl Remote {
    /// Resolve the secret references and build the client. Nothing is sent yet.
    pub fn open(client: &str, config: &RemoteConfig) -> Result<Remote, PgError> {
        let rest = config.url.strip_prefix("s3://").ok_or_else(|| {
            err(
                client,
                format!("spec.backups.store `{}` is not an s3:// URL", config.url),
            )
        })?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let s3 = config.s3.as_ref().ok_or_else(|| {
            err(
                client,
                "spec.backups.store needs spec.backups.s3 (credentials and, off AWS, the endpoint)",
            )
        })?;
        let secret = |field: &str, reference: &crate::secret::SecretRef| {
            reference
                .resolve()
                .map_err(|e| err(client, format!("spec.backups.s3.{field}: {e}")))
        };
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_access_key_id(secret("accessKeyId", &s3.access_key_id)?.expose())
            .with_secret_access_key(secret("secretAccessKey", &s3.secret_access_key)?.expose())
            .with_region(match &s3.region {
                Some(region) => secret("region", region)?.expose().to_owned(),
                None => "us-east-1".to_owned(),
            });
        if let Some(endpoint) = &s3.endpoint {
            let endpoint = secret("endpoint", endpoint)?;
            // A plain-HTTP endpoint is a local or test store; path-style addressing is
            // what S3-compatible servers other than AWS expect.
            builder = builder
                .with_endpoint(endpoint.expose())
                .with_allow_http(endpoint.expose().starts_with("http://"))
                .with_virtual_hosted_style_request(false);
        }
        let store = builder
            .build()
            .map_err(|e| err(client, format!("spec.backups.store: {e}")))?;
        Ok(Remote {
            store: Arc::new(store),
            prefix: prefix.trim_matches('/').to_owned(),
            url: config.url.trim_end_matches('/').to_owned(),
        })
    }

    fn key(&self, client: &str, file: &str) -> Path {
        if self.prefix.is_empty() {
            Path::from(format!("{client}/{file}"))
        } else {
            Path::from(format!("{}/{client}/{file}", self.prefix))
        }
    }

    /// `s3://bucket/prefix/client/file`, for records and messages.
    pub fn url_of(&self, client: &str, file: &str) -> String {
        format!("{}/{client}/{file}", self.url)
    }

    /// Stream a local file up, in chunks, as one multipart upload.
    pub async fn upload(&self, client: &str, local: &LocalPath, file: &str) -> Result<(), PgError> {
        let failed = |e: &dyn std::fmt::Display| {
            err(
                client,
                format!("cannot copy {file} to {}: {e}", self.url_of(client, file)),
            )
        };
        let upload = self
            .store
            .put_multipart(&self.key(client, file))
            .await
            .map_err(|e| failed(&e))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART);
        let mut reader = tokio::fs::File::open(local).await.map_err(|e| failed(&e))?;
        let mut buffer = vec![0; READ];
        loop {
            let n = match reader.read(&mut buffer).await {
                Ok(n) => n,
                Err(e) => {
                    writer.abort().await.ok();
                    return Err(failed(&e));
                }
            };
            if n == 0 {
                break;
            }
            writer.wait_for_capacity(1).await.map_err(|e| failed(&e))?;
            writer.write(&buffer[..n]);
        }
        writer.finish().await.map_err(|e| failed(&e))?;
        Ok(())
    }

    /// A small object (a sidecar), in one request.
    pub async fn put(&self, client: &str, file: &str, bytes: Vec<u8>) -> Result<(), PgError> {
        self.store
            .put(&self.key(client, file), PutPayload::from(bytes))
            .await
            .map_err(|e| {
                err(
                    client,
                    format!("cannot write {}: {e}", self.url_of(client, file)),
                )
            })?;
        Ok(())
    }

    /// Stream an object down into a private temporary file beside `to`, renamed when whole.
    pub async fn download(&self, client: &str, file: &str, to: &LocalPath) -> Result<(), PgError> {
        let failed = |e: &dyn std::fmt::Display| {
            err(
                client,
                format!("cannot read {}: {e}", self.url_of(client, file)),
            )
        };
        let folder = to.parent().unwrap_or(LocalPath::new("."));
        let temp = tempfile::Builder::new()
            .prefix(&format!(".{file}."))
            .suffix(".partial")
            .tempfile_in(folder)
            .map_err(|e| failed(&e))?;
        let mut out = tokio::fs::File::from_std(temp.reopen().map_err(|e| failed(&e))?);
        let mut stream = self
            .store
            .get(&self.key(client, file))
            .await
            .map_err(|e| failed(&e))?
            .into_stream();
        while let Some(chunk) = stream.next().await {
            out.write_all(&chunk.map_err(|e| failed(&e))?)
                .await
                .map_err(|e| failed(&e))?;
        }
        out.flush().await.map_err(|e| failed(&e))?;
        temp.persist(to).map_err(|e| failed(&e.error))?;
        Ok(())
    }

    /// Every sidecar kept for a client: (file name, its bytes).
    pub async fn sidecars(&self, client: &str) -> Result<Vec<(String, Vec<u8>)>, PgError> {
        let folder = self.key(client, "");
        let mut listing = self.store.list(Some(&folder));
        let mut names = Vec::new();
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(|e| {
                err(
                    client,
                    format!("cannot list {}: {e}", self.url_of(client, "")),
                )
            })?;
            if let Some(name) = meta.location.filename()
                && name.ends_with(".json")
            {
                names.push(name.to_owned());
            }
        }
        let mut out = Vec::new();
        for name in names {
            let bytes = self
                .store
                .get(&self.key(client, &name))
                .await
                .map_err(|e| {
                    err(
                        client,
                        format!("cannot read {}: {e}", self.url_of(client, &name)),
                    )
                })?
                .bytes()
                .await
                .map_err(|e| {
                    err(
                        client,
                        format!("cannot read {}: {e}", self.url_of(client, &name)),
                    )
                })?;
            out.push((name, bytes.to_vec()));
        }
        Ok(out)
    }

    pub async fn delete(&self, client: &str, file: &str) -> Result<(), PgError> {
        self.store
            .delete(&self.key(client, file))
            .await
            .map_err(|e| {
                err(
                    client,
                    format!("cannot remove {}: {e}", self.url_of(client, file)),
                )
            })
    }
}
