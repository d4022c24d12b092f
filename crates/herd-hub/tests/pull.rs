//! `Hub::pull` against a local HTTP server that answers the hub's API and file paths from files
//! in `../shared`, including an interrupted transfer, a corrupt one and a token check.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use herd_hub::{Cache, Hub, ModelRef};
use sha2::Digest;

fn shared() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared")
}

#[derive(Default)]
struct Behaviour {
    /// Cut the body of these files after this many bytes, this many times.
    interrupt: HashMap<String, (usize, usize)>,
    /// Serve these files with one byte flipped.
    corrupt: Vec<String>,
    token: Option<String>,
    /// Requests seen: (path, authorization header, range header).
    seen: Vec<(String, Option<String>, Option<String>)>,
}

struct Server {
    url: String,
    state: Arc<Mutex<Behaviour>>,
}

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

fn repos() -> HashMap<&'static str, Vec<(&'static str, PathBuf)>> {
    let s = shared();
    let tiny = s.join("golden/hf-tiny/llama");
    HashMap::from([
        (
            "herd-test/stories",
            vec![
                (
                    "stories260K.gguf",
                    s.join("models/stories260K/stories260K.gguf"),
                ),
                ("LICENSE", s.join("models/stories260K/LICENSE.llama2.c")),
            ],
        ),
        (
            "herd-test/tiny-llama",
            [
                "config.json",
                "model.safetensors",
                "tokenizer.json",
                "tokenizer_config.json",
                "generation_config.json",
            ]
            .into_iter()
            .map(|f| (f, tiny.join(f)))
            .collect(),
        ),
    ])
}

fn is_lfs(f: &str) -> bool {
    f.ends_with(".gguf") || f.ends_with(".safetensors")
}

fn etag(f: &str, bytes: &[u8]) -> String {
    if is_lfs(f) {
        format!("{:x}", sha2::Sha256::digest(bytes))
    } else {
        let mut h = sha1::Sha1::new();
        h.update(format!("blob {}\0", bytes.len()).as_bytes());
        h.update(bytes);
        format!("{:x}", h.finalize())
    }
}

fn respond(
    s: &mut TcpStream,
    status: &str,
    headers: &[(String, String)],
    body: &[u8],
    cut: Option<usize>,
) {
    let mut head = format!("HTTP/1.1 {status}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let _ = s.write_all(head.as_bytes());
    let _ = s.write_all(&body[..cut.unwrap_or(body.len()).min(body.len())]);
}

fn handle(mut s: TcpStream, state: &Arc<Mutex<Behaviour>>, base: &str) {
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut line = String::new();
    if r.read_line(&mut line).is_err() {
        return;
    }
    let parts: Vec<&str> = line.split_whitespace().collect();
    if parts.len() < 2 {
        return;
    }
    let (method, path) = (parts[0].to_string(), parts[1].to_string());
    let mut hdrs = HashMap::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).is_err() || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            hdrs.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let auth = hdrs.get("authorization").cloned();
    let range = hdrs.get("range").cloned();
    let mut st = state.lock().unwrap();
    st.seen.push((path.clone(), auth.clone(), range.clone()));
    let repos = repos();
    let needs_auth = !path.starts_with("/cdn/");
    if needs_auth && st.token.is_some() && auth != st.token.as_ref().map(|t| format!("Bearer {t}"))
    {
        return respond(&mut s, "401 Unauthorized", &[], b"unauthorized", None);
    }
    if let Some(rest) = path.strip_prefix("/api/models/") {
        let (repo, _rev) = rest.split_once("/revision/").unwrap();
        return match repos.get(repo) {
            Some(files) => {
                let siblings: Vec<_> = files
                    .iter()
                    .map(|(f, _)| serde_json::json!({"rfilename": f}))
                    .collect();
                let body = serde_json::json!({"id": repo, "sha": COMMIT, "siblings": siblings})
                    .to_string();
                respond(&mut s, "200 OK", &[], body.as_bytes(), None)
            }
            None => respond(&mut s, "404 Not Found", &[], b"{}", None),
        };
    }
    let (repo, file, cdn) = if let Some(rest) = path.strip_prefix("/cdn/") {
        let (repo_enc, file) = rest.split_once('/').unwrap();
        (repo_enc.replacen("--", "/", 1), file.to_string(), true)
    } else {
        let (repo, rest) = path[1..].split_once("/resolve/").unwrap();
        let (_commit, file) = rest.split_once('/').unwrap();
        (repo.to_string(), file.to_string(), false)
    };
    let Some((_, src)) = repos
        .get(repo.as_str())
        .and_then(|fs| fs.iter().find(|(f, _)| *f == file))
    else {
        return respond(&mut s, "404 Not Found", &[], b"", None);
    };
    let mut bytes = std::fs::read(src).unwrap();
    let tag = etag(&file, &bytes);
    if st.corrupt.contains(&file) {
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xFF;
    }
    if is_lfs(&file) && !cdn {
        let headers = vec![
            ("X-Repo-Commit".to_string(), COMMIT.to_string()),
            ("X-Linked-Etag".to_string(), format!("\"{tag}\"")),
            ("X-Linked-Size".to_string(), bytes.len().to_string()),
            ("ETag".to_string(), "\"abc\"".to_string()),
            (
                "Location".to_string(),
                format!("{base}/cdn/{}/{file}", repo.replace('/', "--")),
            ),
        ];
        return respond(&mut s, "302 Found", &headers, b"", None);
    }
    if method == "HEAD" {
        let headers = [
            ("ETag".to_string(), format!("\"{tag}\"")),
            ("X-Repo-Commit".to_string(), COMMIT.to_string()),
        ];
        let head = format!(
            "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: {}\r\n{}\r\n",
            bytes.len(),
            headers
                .iter()
                .map(|(k, v)| format!("{k}: {v}\r\n"))
                .collect::<String>()
        );
        let _ = s.write_all(head.as_bytes());
        return;
    }
    let from = range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.trim_end_matches('-').parse::<usize>().ok())
        .unwrap_or(0);
    let cut = match st.interrupt.get_mut(&file) {
        Some((n, times)) if *times > 0 => {
            *times -= 1;
            Some(*n)
        }
        _ => None,
    };
    drop(st);
    if from > 0 {
        let body = &bytes[from..];
        let headers = vec![(
            "Content-Range".to_string(),
            format!("bytes {from}-{}/{}", bytes.len() - 1, bytes.len()),
        )];
        respond(&mut s, "206 Partial Content", &headers, body, cut)
    } else {
        respond(&mut s, "200 OK", &[], &bytes, cut)
    }
}

fn serve(b: Behaviour) -> Server {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let state = Arc::new(Mutex::new(b));
    let (st, base) = (state.clone(), url.clone());
    std::thread::spawn(move || {
        for conn in l.incoming().flatten() {
            let (st, base) = (st.clone(), base.clone());
            std::thread::spawn(move || {
                let c = conn;
                let _ = c.set_read_timeout(Some(std::time::Duration::from_secs(5)));
                handle(c, &st, &base);
            });
        }
    });
    Server { url, state }
}

fn hub(server: &Server, token: Option<&str>, cache: &std::path::Path) -> Hub {
    Hub::new(
        server.url.clone(),
        token.map(str::to_string),
        Cache {
            root: cache.to_path_buf(),
        },
    )
}

#[test]
fn pulls_a_gguf_into_the_hugging_face_cache_layout() {
    let server = serve(Behaviour::default());
    let cache = tempfile::tempdir().unwrap();
    let h = hub(&server, None, cache.path());
    let r = ModelRef::parse("herd-test/stories:stories260K.gguf").unwrap();
    let report = h.pull(&r, &mut ()).unwrap();
    let original = std::fs::read(shared().join("models/stories260K/stories260K.gguf")).unwrap();
    assert_eq!(std::fs::read(&report.model_path).unwrap(), original);
    let repo = cache.path().join("models--herd-test--stories");
    let sha = format!("{:x}", sha2::Sha256::digest(&original));
    assert!(repo.join("blobs").join(&sha).is_file());
    let link = repo.join("snapshots").join(COMMIT).join("stories260K.gguf");
    assert_eq!(
        std::fs::read_link(&link).unwrap(),
        PathBuf::from("../../blobs").join(&sha)
    );
    assert_eq!(
        std::fs::read_to_string(repo.join("refs/main")).unwrap(),
        COMMIT
    );
    // Pulling again downloads nothing; the name resolves to the same file.
    let again = h.pull(&r, &mut ()).unwrap();
    assert_eq!(again.files[0].2, "cached");
    assert_eq!(
        Cache {
            root: cache.path().into()
        }
        .resolve(&ModelRef::parse("herd-test/stories").unwrap())
        .unwrap(),
        link
    );
}

#[test]
fn pulls_a_safetensors_folder_with_its_config_and_tokenizer() {
    let server = serve(Behaviour::default());
    let cache = tempfile::tempdir().unwrap();
    let report = hub(&server, None, cache.path())
        .pull(&ModelRef::parse("herd-test/tiny-llama").unwrap(), &mut ())
        .unwrap();
    let mut names: Vec<&str> = report.files.iter().map(|f| f.0.as_str()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "config.json",
            "generation_config.json",
            "model.safetensors",
            "tokenizer.json",
            "tokenizer_config.json"
        ]
    );
    assert!(report.model_path.is_dir());
    for (f, _, _) in &report.files {
        assert_eq!(
            std::fs::read(report.model_path.join(f)).unwrap(),
            std::fs::read(shared().join("golden/hf-tiny/llama").join(f)).unwrap(),
            "{f}"
        );
    }
}

#[test]
fn an_interrupted_transfer_resumes_where_it_stopped() {
    let server = serve(Behaviour {
        interrupt: HashMap::from([("stories260K.gguf".to_string(), (300_000, 2))]),
        ..Default::default()
    });
    let cache = tempfile::tempdir().unwrap();
    let report = hub(&server, None, cache.path())
        .pull(
            &ModelRef::parse("herd-test/stories:stories260K.gguf").unwrap(),
            &mut (),
        )
        .unwrap();
    let original = std::fs::read(shared().join("models/stories260K/stories260K.gguf")).unwrap();
    assert_eq!(std::fs::read(&report.model_path).unwrap(), original);
    let ranges: Vec<String> = server
        .state
        .lock()
        .unwrap()
        .seen
        .iter()
        .filter(|s| s.0.starts_with("/cdn/"))
        .filter_map(|s| s.2.clone())
        .collect();
    // Two cuts of 300 000 bytes each: the second and third requests resume.
    assert_eq!(ranges, ["bytes=300000-", "bytes=600000-"]);

    // Across runs: a partial file left by an earlier run is continued, not restarted.
    let server = serve(Behaviour {
        interrupt: HashMap::from([("stories260K.gguf".to_string(), (500_000, 1))]),
        ..Default::default()
    });
    let cache = tempfile::tempdir().unwrap();
    let mut h = hub(&server, None, cache.path());
    h.attempts = 1;
    let r = ModelRef::parse("herd-test/stories:stories260K.gguf").unwrap();
    let err = h.pull(&r, &mut ()).unwrap_err().to_string();
    assert!(
        err.contains("interrupted after 500000 bytes")
            && err.contains("run the same command again"),
        "{err}"
    );
    let report = h.pull(&r, &mut ()).unwrap();
    assert_eq!(report.files[0].2, "resumed");
    assert_eq!(std::fs::read(&report.model_path).unwrap(), original);
}

#[test]
fn a_corrupt_transfer_is_refused_and_leaves_nothing_behind() {
    let server = serve(Behaviour {
        corrupt: vec!["stories260K.gguf".into()],
        ..Default::default()
    });
    let cache = tempfile::tempdir().unwrap();
    let err = hub(&server, None, cache.path())
        .pull(
            &ModelRef::parse("herd-test/stories:stories260K.gguf").unwrap(),
            &mut (),
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("checksum mismatch"), "{err}");
    let blobs = cache.path().join("models--herd-test--stories/blobs");
    assert_eq!(std::fs::read_dir(blobs).unwrap().count(), 0);
    assert!(
        !cache
            .path()
            .join("models--herd-test--stories/snapshots")
            .join(COMMIT)
            .join("stories260K.gguf")
            .exists()
    );
}

#[test]
fn the_token_goes_to_the_hub_only_and_a_missing_one_is_explained() {
    let server = serve(Behaviour {
        token: Some("hf_secret".into()),
        ..Default::default()
    });
    let cache = tempfile::tempdir().unwrap();
    let r = ModelRef::parse("herd-test/stories:stories260K.gguf").unwrap();
    let err = hub(&server, None, cache.path())
        .pull(&r, &mut ())
        .unwrap_err()
        .to_string();
    assert!(err.contains("401") && err.contains("HF_TOKEN"), "{err}");
    hub(&server, Some("hf_secret"), cache.path())
        .pull(&r, &mut ())
        .unwrap();
    let seen = &server.state.lock().unwrap().seen;
    assert!(
        seen.iter()
            .filter(|s| s.0.starts_with("/cdn/"))
            .all(|s| s.1.is_none()),
        "token sent to the CDN: {seen:?}"
    );
    assert!(
        seen.iter()
            .any(|s| s.0.starts_with("/api/") && s.1.as_deref() == Some("Bearer hf_secret"))
    );
}

#[test]
fn a_repository_with_many_gguf_files_asks_which() {
    let server = serve(Behaviour::default());
    let cache = tempfile::tempdir().unwrap();
    let err = hub(&server, None, cache.path())
        .pull(
            &ModelRef::parse("herd-test/stories:nope.gguf").unwrap(),
            &mut (),
        )
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("has no file 'nope.gguf'") && err.contains("stories260K.gguf"),
        "{err}"
    );
    let err = hub(&server, None, cache.path())
        .pull(&ModelRef::parse("herd-test/missing").unwrap(), &mut ())
        .unwrap_err()
        .to_string();
    assert!(err.contains("404"), "{err}");
}
