//! A local Hugging Face Hub server (axum, in-process, on 127.0.0.1) speaking the subset of the
//! Hub HTTP API that hf-hub 1.0, this crate's client and the Python `huggingface_hub` client
//! use — a faithful stand-in for tests (feature `server`).
//!
//! Endpoints (`{type}` is `models` or `datasets`; resolve URLs of datasets start `/datasets/`):
//! * `GET /api/{type}/{ns}/{name}` and `.../revision/{rev}` →
//!   `{"id","sha","private","siblings":[{"rfilename","size","blobId"}],...}`;
//! * `HEAD|GET /{datasets/}{ns}/{name}/resolve/{rev}/{path}` with `ETag` (git blob sha1, or the
//!   sha256 for files of 1 MiB and more, which also get `X-Linked-Etag`/`X-Linked-Size` like LFS
//!   files on the real Hub), `X-Repo-Commit`, `Content-Length`, `Accept-Ranges` and `Range`;
//! * `POST /api/{type}/{ns}/{name}/preupload/{rev}` (every file "regular");
//! * `POST /api/{type}/{ns}/{name}/commit/{rev}` (NDJSON `header`, `file` base64, `deletedFile`,
//!   `deletedFolder`) → `{"commitOid","commitUrl"}`; the commit sha is the sha1 of the parent,
//!   the message and the files, so it is deterministic;
//! * `POST /api/repos/create` (409 when it exists), `PUT /api/{type}/{ns}/{name}/settings`
//!   (`{"private": bool}`), `GET /api/whoami-v2`.
//!
//! Errors carry `X-Error-Code` (`RepoNotFound`, `RevisionNotFound`, `EntryNotFound`) and
//! `X-Error-Message` like the real Hub. Auth: `Authorization: Bearer <token>`; tokens map to
//! users, a user writes only its own namespace; a private repo is invisible to others (404, or
//! 401 without a token). Branches move on each commit; every commit stays downloadable by sha.
//!
//! Fault injection: [`HubServer::fail_next`] (the next N requests answer 500/503),
//! [`HubServer::delay_next`], [`HubServer::set_hide_sizes`] (no sizes announced, chunked
//! bodies), [`HubServer::set_ignore_range`], [`HubServer::set_trickle`] (a byte per
//! interval); [`HubServer::requests`] reports each request with
//! the body bytes actually handed to the connection.
//!
//! The official Python client accepts it: `scripts/hub_check.py` drives the `hub-server` binary
//! with `huggingface_hub` (how to run it is in the script).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use base64::Engine;
use serde_json::{json, Value};
use sha2::Digest;

use crate::cache;
use crate::client::git_blob_sha1;
use crate::repo::{check_repo_id, RepoKind};

/// Files at least this large are announced like LFS files (sha256 ETag, `X-Linked-*`).
const LFS_THRESHOLD: usize = 1 << 20;
/// Largest request body accepted (a commit carries its files base64-encoded).
const MAX_BODY: usize = 256 << 20;
/// Body chunk size when streaming a file.
const CHUNK: usize = 64 << 10;

/// One request the server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    /// `GET`, `HEAD`, ...
    pub method: String,
    /// The request path (not decoded).
    pub path: String,
    /// The status answered.
    pub status: u16,
    /// Body bytes handed to the connection so far (a dropped download stops early).
    pub bytes_sent: u64,
}

struct Commit {
    files: BTreeMap<String, Arc<Vec<u8>>>,
}

struct Repo {
    owner: String,
    private: bool,
    branches: BTreeMap<String, String>,
    commits: HashMap<String, Commit>,
}

#[derive(Default)]
struct Faults {
    fail: Vec<u16>,
    delays: Vec<Duration>,
    truncate: Vec<usize>,
    hide_sizes: bool,
    ignore_range: bool,
    trickle: Option<Duration>,
}

struct Log {
    method: String,
    path: String,
    status: u16,
    bytes: Arc<AtomicU64>,
}

#[derive(Default)]
struct State {
    base_url: String,
    users: HashMap<String, String>,
    repos: HashMap<(RepoKind, String), Repo>,
    faults: Faults,
    log: Vec<Log>,
}

type Shared = Arc<Mutex<State>>;

/// An early answer (boxed: a `Response` is large).
type Reject = Box<Response<Body>>;

fn lock(s: &Shared) -> MutexGuard<'_, State> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

/// A running local Hub. Stops when dropped or on [`HubServer::stop`].
pub struct HubServer {
    state: Shared,
    url: String,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl HubServer {
    /// Starts a server on `127.0.0.1` at a free port.
    pub async fn start() -> std::io::Result<HubServer> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Starts a server on `addr`.
    pub async fn start_on(addr: SocketAddr) -> std::io::Result<HubServer> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let url = format!("http://{}", listener.local_addr()?);
        let state: Shared = Arc::new(Mutex::new(State {
            base_url: url.clone(),
            ..State::default()
        }));
        let st = state.clone();
        let app = axum::Router::new().fallback(move |req: Request<Body>| {
            let st = st.clone();
            async move { handle(st, req).await }
        });
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        Ok(HubServer {
            state,
            url,
            shutdown: Some(tx),
            task: Some(task),
        })
    }

    /// The base URL, e.g. `http://127.0.0.1:41234` (use it as `HF_ENDPOINT`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Adds (or replaces) a user with its token; the user owns the namespace of its name.
    pub fn add_user(&self, name: &str, token: &str) {
        lock(&self.state)
            .users
            .insert(token.to_string(), name.to_string());
    }

    /// Creates a repo owned by its namespace, with an initial commit holding `.gitattributes`
    /// on `main`, as the real Hub does; returns that commit's sha.
    pub fn create_repo(&self, kind: RepoKind, repo: &str, private: bool) -> Result<String, String> {
        let mut st = lock(&self.state);
        create_repo_locked(&mut st, kind, repo, private)
    }

    /// Commits `files` (path, content) on top of branch `main` of `repo`; returns the sha.
    pub fn commit(
        &self,
        kind: RepoKind,
        repo: &str,
        files: &[(&str, &[u8])],
    ) -> Result<String, String> {
        let mut st = lock(&self.state);
        let r = st
            .repos
            .get_mut(&(kind, repo.to_string()))
            .ok_or_else(|| format!("no repo {repo}"))?;
        let ops = files
            .iter()
            .map(|(p, b)| Op::Add(p.to_string(), b.to_vec()))
            .collect();
        apply_commit(r, "main", "seed", None, ops)
    }

    /// Points branch (or tag) `name` of `repo` at commit `sha` (which must exist).
    pub fn set_branch(
        &self,
        kind: RepoKind,
        repo: &str,
        name: &str,
        sha: &str,
    ) -> Result<(), String> {
        let mut st = lock(&self.state);
        let r = st
            .repos
            .get_mut(&(kind, repo.to_string()))
            .ok_or_else(|| format!("no repo {repo}"))?;
        if !r.commits.contains_key(sha) {
            return Err(format!("no commit {sha} in {repo}"));
        }
        r.branches.insert(name.to_string(), sha.to_string());
        Ok(())
    }

    /// The commit branch `name` of `repo` points at.
    pub fn branch(&self, kind: RepoKind, repo: &str, name: &str) -> Option<String> {
        lock(&self.state)
            .repos
            .get(&(kind, repo.to_string()))?
            .branches
            .get(name)
            .cloned()
    }

    /// Whether `repo` is private (`None`: no such repo).
    pub fn is_private(&self, kind: RepoKind, repo: &str) -> Option<bool> {
        lock(&self.state)
            .repos
            .get(&(kind, repo.to_string()))
            .map(|r| r.private)
    }

    /// The next `n` requests answer `status` (e.g. 500 or 503) before anything else happens.
    pub fn fail_next(&self, n: usize, status: u16) {
        let mut st = lock(&self.state);
        st.faults.fail = vec![status; n];
    }

    /// The next `n` requests wait `delay` before being handled.
    pub fn delay_next(&self, n: usize, delay: Duration) {
        lock(&self.state).faults.delays = vec![delay; n];
    }

    /// The next `n` file bodies (`GET .../resolve/...`) break off after `after` bytes: the
    /// connection is aborted mid-body, as a dropped network would.
    pub fn truncate_next(&self, n: usize, after: usize) {
        lock(&self.state).faults.truncate = vec![after; n];
    }

    /// Announce no sizes: no `Content-Length`/`X-Linked-Size` on `HEAD`, chunked bodies on `GET`
    /// (a server the client cannot trust to say how big a file is).
    pub fn set_hide_sizes(&self, hide: bool) {
        lock(&self.state).faults.hide_sizes = hide;
    }

    /// Send file bodies (`GET .../resolve/...`) one byte per `interval` (`None`: at full
    /// speed): a server slow enough to stall a download but never silent for a read timeout.
    pub fn set_trickle(&self, interval: Option<Duration>) {
        lock(&self.state).faults.trickle = interval;
    }

    /// Ignore `Range` headers and always send the whole file.
    pub fn set_ignore_range(&self, ignore: bool) {
        lock(&self.state).faults.ignore_range = ignore;
    }

    /// Every request answered so far, oldest first.
    pub fn requests(&self) -> Vec<RequestRecord> {
        lock(&self.state)
            .log
            .iter()
            .map(|l| RequestRecord {
                method: l.method.clone(),
                path: l.path.clone(),
                status: l.status,
                bytes_sent: l.bytes.load(Ordering::SeqCst),
            })
            .collect()
    }

    /// Forgets the request log.
    pub fn clear_requests(&self) {
        lock(&self.state).log.clear();
    }

    /// Stops accepting connections and waits for the server task to end.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(mut task) = self.task.take() {
            // Graceful shutdown closes idle keep-alive connections too; give it a moment.
            if tokio::time::timeout(Duration::from_secs(5), &mut task)
                .await
                .is_err()
            {
                task.abort();
                let _ = task.await;
            }
        }
    }
}

impl Drop for HubServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

// ---------------------------------------------------------------------- model operations

enum Op {
    Add(String, Vec<u8>),
    Delete(String),
    DeleteFolder(String),
}

fn create_repo_locked(
    st: &mut State,
    kind: RepoKind,
    repo: &str,
    private: bool,
) -> Result<String, String> {
    let (ns, _) = check_repo_id(repo).map_err(|e| e.to_string())?;
    let key = (kind, repo.to_string());
    if st.repos.contains_key(&key) {
        return Err(format!("{repo} already exists"));
    }
    let mut r = Repo {
        owner: ns.to_string(),
        private,
        branches: BTreeMap::new(),
        commits: HashMap::new(),
    };
    let sha = apply_commit(
        &mut r,
        "main",
        "initial commit",
        None,
        vec![Op::Add(
            ".gitattributes".into(),
            b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n".to_vec(),
        )],
    )?;
    st.repos.insert(key, r);
    Ok(sha)
}

/// Applies `ops` on top of `branch` (created from nothing when the repo has no commit yet) and
/// moves the branch; returns the new commit's sha.
fn apply_commit(
    r: &mut Repo,
    branch: &str,
    message: &str,
    parent_expected: Option<&str>,
    ops: Vec<Op>,
) -> Result<String, String> {
    let parent = r.branches.get(branch).cloned();
    if parent.is_none() && !r.commits.is_empty() {
        return Err(format!("no branch {branch}"));
    }
    if let (Some(exp), Some(p)) = (parent_expected, &parent) {
        if !exp.eq_ignore_ascii_case(p) {
            return Err(format!(
                "parent commit {exp} is not the head {p} of {branch}"
            ));
        }
    }
    let mut files = parent
        .as_ref()
        .and_then(|p| r.commits.get(p))
        .map(|c| c.files.clone())
        .unwrap_or_default();
    for op in ops {
        match op {
            Op::Add(path, bytes) => {
                if !cache::is_safe_file_name(&path) {
                    return Err(format!("bad path {path:?}"));
                }
                files.insert(path, Arc::new(bytes));
            }
            Op::Delete(path) => {
                files.remove(&path);
            }
            Op::DeleteFolder(prefix) => {
                let prefix = format!("{}/", prefix.trim_end_matches('/'));
                files.retain(|p, _| !p.starts_with(&prefix));
            }
        }
    }
    let mut h = sha1::Sha1::new();
    sha1::Digest::update(&mut h, parent.as_deref().unwrap_or("").as_bytes());
    sha1::Digest::update(&mut h, b"\n");
    sha1::Digest::update(&mut h, message.as_bytes());
    sha1::Digest::update(&mut h, b"\n");
    for (p, b) in &files {
        sha1::Digest::update(&mut h, format!("{p}\0{}\n", git_blob_sha1(b)).as_bytes());
    }
    let sha = hex::encode(sha1::Digest::finalize(h));
    r.commits.insert(sha.clone(), Commit { files });
    r.branches.insert(branch.to_string(), sha.clone());
    Ok(sha)
}

/// A branch (or tag) name first, then a full commit sha.
fn resolve_rev(r: &Repo, rev: &str) -> Option<String> {
    if let Some(sha) = r.branches.get(rev) {
        return Some(sha.clone());
    }
    let l = rev.to_ascii_lowercase();
    r.commits.contains_key(&l).then_some(l)
}

fn etag_of(bytes: &[u8]) -> String {
    if bytes.len() >= LFS_THRESHOLD {
        hex::encode(sha2::Sha256::digest(bytes))
    } else {
        git_blob_sha1(bytes)
    }
}

// ---------------------------------------------------------------------- HTTP

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push(h * 16 + l);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn error(status: StatusCode, code: Option<&str>, message: &str) -> Response<Body> {
    let mut resp = Response::new(Body::from(json!({ "error": message }).to_string()));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert("content-type", HeaderValue::from_static("application/json"));
    if let Some(code) = code {
        if let Ok(v) = HeaderValue::from_str(code) {
            h.insert("x-error-code", v);
        }
    }
    if let Ok(v) = HeaderValue::from_str(message) {
        h.insert("x-error-message", v);
    }
    resp
}

fn json_ok(v: Value) -> Response<Body> {
    let mut resp = Response::new(Body::from(v.to_string()));
    resp.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    resp
}

/// `Ok(None)`: no token; `Err`: a token that matches no user.
fn auth_user(st: &State, headers: &HeaderMap) -> Result<Option<String>, Reject> {
    let Some(v) = headers.get("authorization") else {
        return Ok(None);
    };
    let v = v.to_str().unwrap_or("");
    let token = v
        .strip_prefix("Bearer ")
        .or_else(|| v.strip_prefix("bearer "))
        .unwrap_or("")
        .trim();
    if token.is_empty() {
        return Ok(None);
    }
    match st.users.get(token) {
        Some(u) => Ok(Some(u.clone())),
        None => Err(Box::new(error(
            StatusCode::UNAUTHORIZED,
            None,
            "Invalid credentials in Authorization header",
        ))),
    }
}

/// The repo if `user` may see it, else the Hub's answer (401 without a token, 404 with one).
fn visible<'a>(
    st: &'a State,
    kind: RepoKind,
    repo: &str,
    user: &Option<String>,
) -> Result<&'a Repo, Reject> {
    match st.repos.get(&(kind, repo.to_string())) {
        Some(r) if !r.private || user.as_deref() == Some(r.owner.as_str()) => Ok(r),
        _ if user.is_none() => Err(Box::new(error(
            StatusCode::UNAUTHORIZED,
            Some("RepoNotFound"),
            "Repository not found",
        ))),
        _ => Err(Box::new(error(
            StatusCode::NOT_FOUND,
            Some("RepoNotFound"),
            "Repository not found",
        ))),
    }
}

async fn handle(st: Shared, req: Request<Body>) -> Response<Body> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let (fail, delay) = {
        let mut s = lock(&st);
        (s.faults.fail.pop(), s.faults.delays.pop())
    };
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    let bytes = Arc::new(AtomicU64::new(0));
    let resp = match fail {
        Some(code) => error(
            StatusCode::from_u16(code).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
            None,
            "injected failure",
        ),
        None => {
            let (parts, body) = req.into_parts();
            match axum::body::to_bytes(body, MAX_BODY).await {
                Ok(body) => route(
                    &st,
                    &method,
                    &path,
                    &query,
                    &parts.headers,
                    &body,
                    bytes.clone(),
                ),
                Err(e) => error(StatusCode::PAYLOAD_TOO_LARGE, None, &format!("body: {e}")),
            }
        }
    };
    lock(&st).log.push(Log {
        method: method.to_string(),
        path,
        status: resp.status().as_u16(),
        bytes,
    });
    resp
}

fn kind_of(plural: &str) -> Option<RepoKind> {
    match plural {
        "models" => Some(RepoKind::Model),
        "datasets" => Some(RepoKind::Dataset),
        _ => None,
    }
}

fn route(
    st: &Shared,
    method: &Method,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body: &[u8],
    counter: Arc<AtomicU64>,
) -> Response<Body> {
    let segs: Vec<String> = path
        .trim_start_matches('/')
        .split('/')
        .map(percent_decode)
        .collect();
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    let mut state = lock(st);
    let user = match auth_user(&state, headers) {
        Ok(u) => u,
        Err(resp) => return *resp,
    };
    match (method.as_str(), s.as_slice()) {
        ("GET", ["api", "whoami-v2"]) => match user {
            Some(u) => json_ok(
                json!({"type": "user", "name": u, "orgs": [], "auth": {"accessToken": {"role": "write"}}}),
            ),
            None => error(
                StatusCode::UNAUTHORIZED,
                None,
                "Invalid username or password.",
            ),
        },
        ("POST", ["api", "repos", "create"]) => create(&mut state, &user, body),
        ("GET", ["api", t, ns, name]) => match kind_of(t) {
            Some(k) => info(&state, k, &format!("{ns}/{name}"), "main", &user, query),
            None => not_found(),
        },
        ("GET", ["api", t, ns, name, "revision", rev @ ..]) => match kind_of(t) {
            Some(k) => info(
                &state,
                k,
                &format!("{ns}/{name}"),
                &rev.join("/"),
                &user,
                query,
            ),
            None => not_found(),
        },
        ("POST", ["api", t, ns, name, "preupload", rev @ ..]) => match kind_of(t) {
            Some(k) => preupload(
                &state,
                k,
                &format!("{ns}/{name}"),
                &rev.join("/"),
                &user,
                body,
            ),
            None => not_found(),
        },
        ("POST", ["api", t, ns, name, "commit", rev @ ..]) => match kind_of(t) {
            Some(k) => commit(
                &mut state,
                k,
                &format!("{ns}/{name}"),
                &rev.join("/"),
                &user,
                body,
            ),
            None => not_found(),
        },
        ("PUT", ["api", t, ns, name, "settings"]) => match kind_of(t) {
            Some(k) => settings(&mut state, k, &format!("{ns}/{name}"), &user, body),
            None => not_found(),
        },
        ("GET" | "HEAD", ["datasets", ns, name, "resolve", rev, file @ ..]) if !file.is_empty() => {
            resolve(
                &mut state,
                method,
                RepoKind::Dataset,
                &format!("{ns}/{name}"),
                rev,
                &file.join("/"),
                &user,
                headers,
                counter,
            )
        }
        ("GET" | "HEAD", [ns, name, "resolve", rev, file @ ..]) if !file.is_empty() => resolve(
            &mut state,
            method,
            RepoKind::Model,
            &format!("{ns}/{name}"),
            rev,
            &file.join("/"),
            &user,
            headers,
            counter,
        ),
        _ => not_found(),
    }
}

fn not_found() -> Response<Body> {
    error(StatusCode::NOT_FOUND, None, "Not Found")
}

fn create(st: &mut State, user: &Option<String>, body: &[u8]) -> Response<Body> {
    let Some(user) = user else {
        return error(
            StatusCode::UNAUTHORIZED,
            None,
            "You must be authenticated to create a repo",
        );
    };
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return error(StatusCode::BAD_REQUEST, None, "body is not JSON");
    };
    let name = v.get("name").and_then(Value::as_str).unwrap_or("");
    let ns = v
        .get("organization")
        .and_then(Value::as_str)
        .unwrap_or(user.as_str());
    let kind = match v.get("type").and_then(Value::as_str).unwrap_or("model") {
        "model" => RepoKind::Model,
        "dataset" => RepoKind::Dataset,
        other => {
            return error(
                StatusCode::BAD_REQUEST,
                None,
                &format!("repo type {other} is not supported here"),
            )
        }
    };
    let private = match v.get("visibility").and_then(Value::as_str) {
        Some(vis) => vis != "public",
        None => v.get("private").and_then(Value::as_bool).unwrap_or(false),
    };
    let repo = format!("{ns}/{name}");
    if check_repo_id(&repo).is_err() {
        return error(
            StatusCode::BAD_REQUEST,
            None,
            &format!("invalid repo name {repo:?}"),
        );
    }
    if ns != user.as_str() {
        return error(
            StatusCode::FORBIDDEN,
            None,
            &format!(
                "You don't have the rights to create a {} under the namespace {ns}",
                kind.singular()
            ),
        );
    }
    let url = format!("{}/{}{repo}", st.base_url, kind.url_prefix());
    if st.repos.contains_key(&(kind, repo.clone())) {
        let mut resp = error(
            StatusCode::CONFLICT,
            None,
            &format!("You already created this {} repo", kind.singular()),
        );
        *resp.body_mut() = Body::from(
            json!({"error": format!("You already created this {} repo", kind.singular()), "url": url}).to_string(),
        );
        return resp;
    }
    match create_repo_locked(st, kind, &repo, private) {
        Ok(_) => json_ok(json!({"url": url, "name": repo, "id": repo})),
        Err(e) => error(StatusCode::BAD_REQUEST, None, &e),
    }
}

fn info(
    st: &State,
    kind: RepoKind,
    repo: &str,
    rev: &str,
    user: &Option<String>,
    query: &str,
) -> Response<Body> {
    let r = match visible(st, kind, repo, user) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    let Some(sha) = resolve_rev(r, rev) else {
        return error(
            StatusCode::NOT_FOUND,
            Some("RevisionNotFound"),
            &format!("Invalid rev id: {rev}"),
        );
    };
    let blobs = query
        .split('&')
        .any(|q| q == "blobs=true" || q == "blobs=True" || q == "blobs=1");
    let files = r.commits.get(&sha).map(|c| &c.files);
    let siblings: Vec<Value> = files
        .into_iter()
        .flatten()
        .map(|(p, b)| {
            let mut s = json!({"rfilename": p});
            if blobs {
                s["size"] = json!(b.len());
                s["blobId"] = json!(git_blob_sha1(b));
                if b.len() >= LFS_THRESHOLD {
                    s["lfs"] = json!({"size": b.len(), "sha256": etag_of(b), "pointerSize": 134});
                }
            }
            s
        })
        .collect();
    let (ns, _) = repo.split_once('/').unwrap_or((repo, ""));
    json_ok(json!({
        "_id": format!("{:x}", sha2::Sha256::digest(repo.as_bytes()))[..24].to_string(),
        "id": repo,
        "author": ns,
        "sha": sha,
        "private": r.private,
        "gated": false,
        "disabled": false,
        "downloads": 0,
        "likes": 0,
        "tags": [],
        "createdAt": "2026-01-01T00:00:00.000Z",
        "lastModified": "2026-01-01T00:00:00.000Z",
        "siblings": siblings,
    }))
}

/// The repo if `user` may write it; else 401 (no token), 404 (invisible) or 403.
fn writable<'a>(
    st: &'a mut State,
    kind: RepoKind,
    repo: &str,
    user: &Option<String>,
) -> Result<&'a mut Repo, Reject> {
    let Some(u) = user.clone() else {
        return Err(Box::new(error(
            StatusCode::UNAUTHORIZED,
            None,
            "You must be authenticated to write to a repo",
        )));
    };
    visible(st, kind, repo, user)?;
    match st.repos.get_mut(&(kind, repo.to_string())) {
        Some(r) if r.owner == u => Ok(r),
        Some(_) => Err(Box::new(error(
            StatusCode::FORBIDDEN,
            None,
            &format!("You don't have write access to {repo}"),
        ))),
        None => Err(Box::new(error(
            StatusCode::NOT_FOUND,
            Some("RepoNotFound"),
            "Repository not found",
        ))),
    }
}

fn preupload(
    st: &State,
    kind: RepoKind,
    repo: &str,
    rev: &str,
    user: &Option<String>,
    body: &[u8],
) -> Response<Body> {
    let r = match visible(st, kind, repo, user) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    if user.as_deref() != Some(r.owner.as_str()) {
        return error(
            StatusCode::FORBIDDEN,
            None,
            &format!("You don't have write access to {repo}"),
        );
    }
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let files: Vec<Value> = v
        .get("files")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|f| f.get("path").and_then(Value::as_str))
        .map(|p| json!({"path": p, "uploadMode": "regular", "shouldIgnore": false}))
        .collect();
    json_ok(json!({"files": files, "commitOid": r.branches.get(rev)}))
}

fn commit(
    st: &mut State,
    kind: RepoKind,
    repo: &str,
    rev: &str,
    user: &Option<String>,
    body: &[u8],
) -> Response<Body> {
    let base_url = st.base_url.clone();
    let r = match writable(st, kind, repo, user) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    if !r.branches.contains_key(rev) {
        return error(
            StatusCode::NOT_FOUND,
            Some("RevisionNotFound"),
            &format!("Invalid rev id: {rev}"),
        );
    }
    let text = String::from_utf8_lossy(body);
    let mut message = String::from("commit");
    let mut parent = None;
    let mut ops = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            return error(
                StatusCode::BAD_REQUEST,
                None,
                "commit payload: a line is not JSON",
            );
        };
        let val = &v["value"];
        let path = val
            .get("path")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        match v.get("key").and_then(Value::as_str) {
            Some("header") => {
                message = val
                    .get("summary")
                    .and_then(Value::as_str)
                    .unwrap_or("commit")
                    .to_string();
                parent = val
                    .get("parentCommit")
                    .and_then(Value::as_str)
                    .map(str::to_string);
            }
            Some("file") => {
                let content = val.get("content").and_then(Value::as_str).unwrap_or("");
                let bytes = match val.get("encoding").and_then(Value::as_str) {
                    Some("base64") => {
                        match base64::engine::general_purpose::STANDARD.decode(content) {
                            Ok(b) => b,
                            Err(e) => {
                                return error(
                                    StatusCode::BAD_REQUEST,
                                    None,
                                    &format!("{path}: bad base64: {e}"),
                                )
                            }
                        }
                    }
                    _ => content.as_bytes().to_vec(),
                };
                ops.push(Op::Add(path, bytes));
            }
            Some("deletedFile") => ops.push(Op::Delete(path)),
            Some("deletedFolder") => ops.push(Op::DeleteFolder(path)),
            Some("lfsFile") => {
                return error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    None,
                    "LFS uploads are not supported by the local hub",
                )
            }
            other => {
                return error(
                    StatusCode::BAD_REQUEST,
                    None,
                    &format!("unknown commit key {other:?}"),
                )
            }
        }
    }
    match apply_commit(r, rev, &message, parent.as_deref(), ops) {
        Ok(sha) => json_ok(json!({
            "success": true,
            "commitOid": sha,
            "commitUrl": format!("{base_url}/{}{repo}/commit/{sha}", kind.url_prefix()),
            "hookOutput": "",
        })),
        Err(e) if e.starts_with("parent commit") => {
            error(StatusCode::PRECONDITION_FAILED, None, &e)
        }
        Err(e) => error(StatusCode::BAD_REQUEST, None, &e),
    }
}

fn settings(
    st: &mut State,
    kind: RepoKind,
    repo: &str,
    user: &Option<String>,
    body: &[u8],
) -> Response<Body> {
    let r = match writable(st, kind, repo, user) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    if let Some(p) = v.get("private").and_then(Value::as_bool) {
        r.private = p;
    }
    if let Some(vis) = v.get("visibility").and_then(Value::as_str) {
        r.private = vis != "public";
    }
    json_ok(json!({"private": r.private}))
}

#[allow(clippy::too_many_arguments)]
fn resolve(
    st: &mut State,
    method: &Method,
    kind: RepoKind,
    repo: &str,
    rev: &str,
    file: &str,
    user: &Option<String>,
    headers: &HeaderMap,
    counter: Arc<AtomicU64>,
) -> Response<Body> {
    let truncate = if *method == Method::GET {
        st.faults.truncate.pop()
    } else {
        None
    };
    let trickle = st.faults.trickle;
    let st = &*st;
    let r = match visible(st, kind, repo, user) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    let Some(sha) = resolve_rev(r, rev) else {
        return error(
            StatusCode::NOT_FOUND,
            Some("RevisionNotFound"),
            &format!("Invalid rev id: {rev}"),
        );
    };
    let Some(data) = r.commits.get(&sha).and_then(|c| c.files.get(file)).cloned() else {
        let mut resp = error(
            StatusCode::NOT_FOUND,
            Some("EntryNotFound"),
            &format!("{file} does not exist on \"{rev}\""),
        );
        if let Ok(v) = HeaderValue::from_str(&sha) {
            resp.headers_mut().insert("x-repo-commit", v);
        }
        return resp;
    };
    let total = data.len();
    let etag = etag_of(&data);
    let lfs = total >= LFS_THRESHOLD;
    let hide = st.faults.hide_sizes;
    // Range: bytes=a-b / bytes=a-
    let range = if st.faults.ignore_range {
        None
    } else {
        headers
            .get("range")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("bytes="))
            .and_then(|v| v.split_once('-'))
            .map(|(a, b)| {
                (
                    a.trim().parse::<usize>().ok(),
                    b.trim().parse::<usize>().ok(),
                )
            })
    };
    let (start, end, partial) = match range {
        Some((Some(a), b)) => {
            if a >= total {
                let mut resp = error(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    None,
                    "range not satisfiable",
                );
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{total}")) {
                    resp.headers_mut().insert("content-range", v);
                }
                return resp;
            }
            let end = b.map(|b| (b + 1).min(total)).unwrap_or(total);
            (a, end.max(a), true)
        }
        _ => (0, total, false),
    };
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = if partial {
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    };
    let h = resp.headers_mut();
    let mut put = |k: &'static str, v: String| {
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.insert(k, v);
        }
    };
    put("etag", format!("\"{etag}\""));
    put("x-repo-commit", sha.clone());
    put("accept-ranges", "bytes".into());
    put("content-type", "application/octet-stream".into());
    if !hide {
        put("content-length", (end - start).to_string());
        if lfs {
            put("x-linked-etag", format!("\"{etag}\""));
            put("x-linked-size", total.to_string());
        }
    }
    if partial {
        put(
            "content-range",
            format!("bytes {start}-{}/{total}", end.saturating_sub(1)),
        );
    }
    if *method == Method::HEAD {
        if hide {
            // A body of unknown length, or hyper announces `content-length: 0`.
            *resp.body_mut() = Body::from_stream(futures::stream::empty::<
                Result<bytes::Bytes, std::convert::Infallible>,
            >());
        }
        return resp;
    }
    let cut = truncate.map(|after| start + after);
    let stream = futures::stream::unfold(start, move |pos| {
        let data = data.clone();
        let counter = counter.clone();
        async move {
            if pos >= end {
                return None;
            }
            if cut.is_some_and(|c| pos >= c) {
                // Let what was sent reach the client first, so the cut is mid-body.
                tokio::time::sleep(Duration::from_millis(50)).await;
                let e = std::io::Error::new(std::io::ErrorKind::ConnectionAborted, "injected cut");
                // `end` ends the stream after the error.
                return Some((Err(e), end));
            }
            let mut n = CHUNK.min(end - pos);
            if let Some(interval) = trickle {
                tokio::time::sleep(interval).await;
                n = 1;
            }
            if let Some(c) = cut {
                n = n.min(c - pos);
            }
            counter.fetch_add(n as u64, Ordering::SeqCst);
            let chunk = bytes::Bytes::copy_from_slice(&data[pos..pos + n]);
            Some((Ok(chunk), pos + n))
        }
    });
    *resp.body_mut() = Body::from_stream(stream);
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode() {
        assert_eq!(percent_decode("refs%2Fpr%2F1"), "refs/pr/1");
        assert_eq!(percent_decode("a%20b%"), "a b%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }

    #[test]
    fn commits_are_deterministic_and_branches_move() {
        let mut r = Repo {
            owner: "a".into(),
            private: false,
            branches: BTreeMap::new(),
            commits: HashMap::new(),
        };
        let c0 = apply_commit(&mut r, "main", "init", None, vec![]).unwrap();
        let c1 = apply_commit(
            &mut r,
            "main",
            "m",
            None,
            vec![Op::Add("x".into(), b"1".to_vec())],
        )
        .unwrap();
        assert_ne!(c0, c1);
        assert_eq!(r.branches["main"], c1);
        assert!(apply_commit(&mut r, "main", "m", Some(&c0), vec![]).is_err());
        let mut r2 = Repo {
            owner: "a".into(),
            private: false,
            branches: BTreeMap::new(),
            commits: HashMap::new(),
        };
        apply_commit(&mut r2, "main", "init", None, vec![]).unwrap();
        let d1 = apply_commit(
            &mut r2,
            "main",
            "m",
            None,
            vec![Op::Add("x".into(), b"1".to_vec())],
        )
        .unwrap();
        assert_eq!(c1, d1);
        assert_eq!(resolve_rev(&r, &c0.to_uppercase()), Some(c0));
    }
}
