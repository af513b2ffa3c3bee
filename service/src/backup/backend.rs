//! Where a backup store's files live: a directory (local, or a mount every node shares), or an
//! S3-compatible bucket (`s3://bucket/prefix`, through `object_store`). The store above sees
//! files by relative name; each backend makes a write atomic its own way (a directory: a
//! temporary file synced and renamed; S3: a PUT is all or nothing).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use object_store::ObjectStore;
use object_store::path::Path as ObjectPath;

use crate::error::{ServiceError, ServiceResult};
use loci_storage::crypto::random_bytes;

/// How to reach an S3-compatible store (credentials default to the `AWS_*` environment).
#[derive(Clone, Debug, Default)]
pub struct S3Options {
    /// e.g. `http://127.0.0.1:9000` (MinIO, Garage, moto); unset: AWS.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key: Option<String>,
    pub secret_key: Option<String>,
}

pub enum Backend {
    Dir(PathBuf),
    S3(S3Backend),
}

pub struct S3Backend {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    location: String,
    /// A runtime of its own (on its own thread), so the store's synchronous calls work from
    /// async tasks and blocking ones alike.
    handle: tokio::runtime::Handle,
}

fn io(what: &str, path: &Path, e: std::io::Error) -> ServiceError {
    ServiceError::internal(format!("backup store: {what} {}: {e}", path.display()))
}

fn s3_err(what: &str, rel: &str, e: object_store::Error) -> ServiceError {
    ServiceError::internal(format!("backup store: {what} {rel}: {e}"))
}

impl Backend {
    /// `location`: a directory path, or `s3://bucket[/prefix]`.
    pub fn open(location: &str, s3: &S3Options) -> ServiceResult<Backend> {
        let Some(rest) = location.strip_prefix("s3://") else {
            let root = PathBuf::from(location);
            for d in ["manifests", "chunks", "keys"] {
                let p = root.join(d);
                std::fs::create_dir_all(&p).map_err(|e| io("cannot create", &p, e))?;
            }
            return Ok(Backend::Dir(root));
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(ServiceError::bad_request(format!("'{location}' names no bucket (s3://bucket/prefix)")));
        }
        let mut b = object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket);
        if let Some(e) = &s3.endpoint {
            b = b.with_endpoint(e).with_allow_http(e.starts_with("http://"));
        }
        b = b.with_region(s3.region.clone().unwrap_or_else(|| "us-east-1".into()));
        if let Some(k) = &s3.access_key {
            b = b.with_access_key_id(k);
        }
        if let Some(k) = &s3.secret_key {
            b = b.with_secret_access_key(k);
        }
        let store = b.build().map_err(|e| ServiceError::bad_request(format!("backup store {location}: {e}")))?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("loci-backup-s3")
            .enable_all()
            .build()
            .map_err(|e| ServiceError::internal(format!("backup store runtime: {e}")))?;
        let handle = rt.handle().clone();
        std::thread::Builder::new()
            .name("loci-backup-s3".into())
            .spawn(move || rt.block_on(std::future::pending::<()>()))
            .map_err(|e| ServiceError::internal(format!("backup store thread: {e}")))?;
        Ok(Backend::S3(S3Backend {
            store: Arc::new(store),
            prefix: prefix.trim_matches('/').to_string(),
            location: location.to_string(),
            handle,
        }))
    }

    /// Where it is, for logs and the API (`/mnt/backups`, `s3://bucket/prefix`).
    pub fn location(&self) -> String {
        match self {
            Backend::Dir(root) => root.display().to_string(),
            Backend::S3(s) => s.location.clone(),
        }
    }

    pub fn write(&self, rel: &str, data: &[u8]) -> ServiceResult<()> {
        match self {
            Backend::Dir(root) => {
                use std::io::Write;
                let path = root.join(rel);
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(|e| io("cannot create", dir, e))?;
                }
                let mut tmp_name = [0u8; 8];
                random_bytes(&mut tmp_name);
                let tmp = path.with_extension(format!("tmp-{}", hex::encode(tmp_name)));
                let mut f = std::fs::File::create(&tmp).map_err(|e| io("cannot write", &tmp, e))?;
                f.write_all(data).and_then(|_| f.sync_all()).map_err(|e| io("cannot write", &tmp, e))?;
                std::fs::rename(&tmp, &path).map_err(|e| io("cannot rename", &path, e))?;
                if let Some(dir) = path.parent() {
                    let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
                }
                Ok(())
            }
            Backend::S3(s) => {
                let (store, path, data) = (s.store.clone(), s.path(rel), data.to_vec());
                s.run(async move { store.put(&path, data.into()).await.map(|_| ()) })
                    .map_err(|e| s3_err("cannot write", rel, e))
            }
        }
    }

    pub fn read(&self, rel: &str) -> ServiceResult<Option<Vec<u8>>> {
        match self {
            Backend::Dir(root) => {
                let path = root.join(rel);
                match std::fs::read(&path) {
                    Ok(b) => Ok(Some(b)),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(io("cannot read", &path, e)),
                }
            }
            Backend::S3(s) => {
                let (store, path) = (s.store.clone(), s.path(rel));
                let got = s.run(async move {
                    match store.get(&path).await {
                        Ok(r) => r.bytes().await.map(|b| Some(b.to_vec())),
                        Err(object_store::Error::NotFound { .. }) => Ok(None),
                        Err(e) => Err(e),
                    }
                });
                got.map_err(|e| s3_err("cannot read", rel, e))
            }
        }
    }

    /// Whether the file was there.
    pub fn remove(&self, rel: &str) -> ServiceResult<bool> {
        match self {
            Backend::Dir(root) => {
                let path = root.join(rel);
                match std::fs::remove_file(&path) {
                    Ok(()) => Ok(true),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
                    Err(e) => Err(io("cannot remove", &path, e)),
                }
            }
            Backend::S3(_) => {
                if self.modified(rel)?.is_none() {
                    return Ok(false);
                }
                let Backend::S3(s) = self else { return Ok(false) };
                let (store, path) = (s.store.clone(), s.path(rel));
                s.run(async move { store.delete(&path).await }).map_err(|e| s3_err("cannot remove", rel, e))?;
                Ok(true)
            }
        }
    }

    /// When the file was last written (`None`: absent).
    pub fn modified(&self, rel: &str) -> ServiceResult<Option<SystemTime>> {
        match self {
            Backend::Dir(root) => Ok(std::fs::metadata(root.join(rel)).ok().and_then(|m| m.modified().ok())),
            Backend::S3(s) => {
                let (store, path) = (s.store.clone(), s.path(rel));
                let got = s.run(async move {
                    match store.head(&path).await {
                        Ok(m) => Ok(Some(SystemTime::from(m.last_modified))),
                        Err(object_store::Error::NotFound { .. }) => Ok(None),
                        Err(e) => Err(e),
                    }
                });
                got.map_err(|e| s3_err("cannot read", rel, e))
            }
        }
    }

    pub fn exists(&self, rel: &str) -> ServiceResult<bool> {
        Ok(self.modified(rel)?.is_some())
    }

    /// Refresh a file's time when it is older than `older_than` (a directory sets it; S3
    /// writes the object again).
    pub fn touch(&self, rel: &str, older_than: std::time::Duration) -> ServiceResult<()> {
        let Some(at) = self.modified(rel)? else { return Ok(()) };
        if at.elapsed().is_ok_and(|age| age < older_than) {
            return Ok(());
        }
        match self {
            Backend::Dir(root) => {
                if let Ok(f) = std::fs::File::options().append(true).open(root.join(rel)) {
                    let _ = f.set_modified(SystemTime::now());
                }
                Ok(())
            }
            Backend::S3(_) => match self.read(rel)? {
                Some(b) => self.write(rel, &b),
                None => Ok(()),
            },
        }
    }

    /// Create `rel` with `data` unless it exists (the first of several writers wins); then
    /// what it holds.
    pub fn create_or_read(&self, rel: &str, data: &[u8]) -> ServiceResult<Vec<u8>> {
        match self {
            Backend::Dir(root) => {
                let mut n = [0u8; 8];
                random_bytes(&mut n);
                let mine = format!("{rel}-{}.new", hex::encode(n));
                self.write(&mine, data)?;
                let (from, to) = (root.join(&mine), root.join(rel));
                // A hard link does not replace an existing name.
                let linked = std::fs::hard_link(&from, &to);
                let _ = std::fs::remove_file(&from);
                match linked {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(io("cannot create", &to, e)),
                }
            }
            Backend::S3(s) => {
                let (store, path, body) = (s.store.clone(), s.path(rel), data.to_vec());
                let put = s.run(async move {
                    let opts = object_store::PutOptions::from(object_store::PutMode::Create);
                    match store.put_opts(&path, body.clone().into(), opts).await {
                        Ok(_) | Err(object_store::Error::AlreadyExists { .. }) => Ok(()),
                        // A store without conditional writes: the last writer wins, and every
                        // node reads back what is there.
                        Err(object_store::Error::NotImplemented) => {
                            if store.head(&path).await.is_ok() {
                                Ok(())
                            } else {
                                store.put(&path, body.into()).await.map(|_| ())
                            }
                        }
                        Err(e) => Err(e),
                    }
                });
                put.map_err(|e| s3_err("cannot create", rel, e))?;
            }
        }
        self.read(rel)?.ok_or_else(|| ServiceError::internal(format!("backup store: {rel} vanished")))
    }

    /// The file names directly under `dir`, sorted (temporary files left out).
    pub fn names(&self, dir: &str) -> ServiceResult<Vec<String>> {
        let mut out: Vec<String> = match self {
            Backend::Dir(root) => {
                let path = root.join(dir);
                match std::fs::read_dir(&path) {
                    Ok(rd) => rd.filter_map(|e| e.ok()).filter_map(|e| e.file_name().into_string().ok()).collect(),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
                    Err(e) => return Err(io("cannot list", &path, e)),
                }
            }
            Backend::S3(s) => {
                let (store, path) = (s.store.clone(), s.path(dir));
                let listed = s.run(async move { store.list_with_delimiter(Some(&path)).await });
                listed
                    .map_err(|e| s3_err("cannot list", dir, e))?
                    .objects
                    .into_iter()
                    .filter_map(|m| m.location.filename().map(str::to_string))
                    .collect()
            }
        };
        out.retain(|n| !n.contains(".tmp-") && !n.ends_with(".new"));
        out.sort();
        Ok(out)
    }
}

impl S3Backend {
    fn path(&self, rel: &str) -> ObjectPath {
        if self.prefix.is_empty() { ObjectPath::from(rel) } else { ObjectPath::from(format!("{}/{rel}", self.prefix)) }
    }

    /// Run a store call on the store's runtime and wait for it.
    fn run<T: Send + 'static>(
        &self,
        f: impl std::future::Future<Output = Result<T, object_store::Error>> + Send + 'static,
    ) -> Result<T, object_store::Error> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.handle.spawn(async move {
            let _ = tx.send(f.await);
        });
        rx.recv().map_err(|_| object_store::Error::Generic {
            store: "S3",
            source: "the backup store's runtime stopped".into(),
        })?
    }
}
