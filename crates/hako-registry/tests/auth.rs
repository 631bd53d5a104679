//! Auth against a real server: htpasswd basic auth with the failed-login limit, the Docker
//! token flow with scopes, and TLS.

mod common;

use base64::Engine;
use bytes::Bytes;
use http::{Method, StatusCode};

use common::{sha256, Reg};
use hako_registry::config::{AccessRule, AuthMode, Signing, TlsConfig};

fn basic(u: &str, p: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
    )
}

fn write_htpasswd(dir: &std::path::Path) -> std::path::PathBuf {
    let p = dir.join("htpasswd");
    let alice = bcrypt::hash("alice-pw", 4).unwrap();
    let bob = bcrypt::hash("bob-pw", 4).unwrap();
    std::fs::write(&p, format!("alice:{alice}\nbob:{bob}\n")).unwrap();
    p
}

async fn htpasswd_registry() -> Reg {
    let dir = tempfile::tempdir().unwrap();
    let h = write_htpasswd(dir.path());
    let r = Reg::start_with(|c| {
        c.auth.mode = AuthMode::Htpasswd;
        c.auth.htpasswd = Some(h.clone());
        c.auth.max_failed_logins = 3;
    })
    .await;
    std::fs::copy(&h, r.dir.path().join("htpasswd")).unwrap();
    r
}

#[tokio::test]
async fn htpasswd_basic_auth() {
    let r = htpasswd_registry().await;
    let anon = r.get("/v2/").await;
    assert_eq!(anon.status, StatusCode::UNAUTHORIZED);
    assert_eq!(anon.header("www-authenticate"), "Basic realm=\"hako-registry\"");
    assert_eq!(anon.code(), "UNAUTHORIZED");
    let ok = r
        .req(
            Method::GET,
            "/v2/",
            &[("authorization", &basic("alice", "alice-pw"))],
            Bytes::new(),
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK);
    // Unauthenticated push is refused and stores nothing.
    let d = sha256(b"anon");
    let p = r
        .req(
            Method::POST,
            &format!("/v2/x/blobs/uploads/?digest={d}"),
            &[],
            b"anon".to_vec(),
        )
        .await;
    assert_eq!(p.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.blob_files(), 0);
    let auth = basic("alice", "alice-pw");
    let p = r
        .req(
            Method::POST,
            &format!("/v2/x/blobs/uploads/?digest={d}"),
            &[("authorization", &auth)],
            b"anon".to_vec(),
        )
        .await;
    assert_eq!(p.status, StatusCode::CREATED);
}

#[tokio::test]
async fn failed_logins_are_rate_limited() {
    let r = htpasswd_registry().await;
    for _ in 0..3 {
        let bad = r
            .req(
                Method::GET,
                "/v2/",
                &[("authorization", &basic("alice", "wrong"))],
                Bytes::new(),
            )
            .await;
        assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
    }
    // Now even the right password waits: the address is blocked for the window.
    let blocked = r
        .req(
            Method::GET,
            "/v2/",
            &[("authorization", &basic("alice", "alice-pw"))],
            Bytes::new(),
        )
        .await;
    assert_eq!(blocked.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(blocked.code(), "TOOMANYREQUESTS");
    assert!(!blocked.header("retry-after").is_empty());
}

async fn token_registry(signing: Signing) -> Reg {
    let dir = tempfile::tempdir().unwrap();
    let h = write_htpasswd(dir.path());
    Reg::start_with(|c| {
        c.auth.mode = AuthMode::Token;
        c.auth.htpasswd = Some(h.clone());
        c.auth.signing = signing;
        c.auth.access = vec![
            AccessRule {
                account: "alice".into(),
                repository: "*".into(),
                actions: vec!["*".into()],
            },
            AccessRule {
                account: "bob".into(),
                repository: "shared/*".into(),
                actions: vec!["pull".into()],
            },
        ];
    })
    .await
}

async fn token(r: &Reg, who: Option<(&str, &str)>, scope: &str) -> String {
    let path = format!("/auth/token?service=hako-registry&scope={}", urlencoding::encode(scope));
    let auth = who.map(|(u, p)| basic(u, p));
    let headers: Vec<(&str, &str)> = auth.as_deref().map(|a| vec![("authorization", a)]).unwrap_or_default();
    let t = r.req(Method::GET, &path, &headers, Bytes::new()).await;
    assert_eq!(t.status, StatusCode::OK, "{:?}", t.body);
    t.json()["token"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn token_flow_scopes() {
    for signing in [Signing::Ed25519, Signing::Hmac] {
        let r = token_registry(signing).await;
        let base = r.get("/v2/").await;
        assert_eq!(base.status, StatusCode::UNAUTHORIZED);
        let realm = format!(
            "Bearer realm=\"http://{}/auth/token\",service=\"hako-registry\"",
            r.addr()
        );
        assert_eq!(base.header("www-authenticate"), realm);
        let d = sha256(b"tok");
        let push_path = format!("/v2/shared/app/blobs/uploads/?digest={d}");
        let ch = r.req(Method::POST, &push_path, &[], b"tok".to_vec()).await;
        assert_eq!(ch.status, StatusCode::UNAUTHORIZED);
        assert!(ch
            .header("www-authenticate")
            .contains("scope=\"repository:shared/app:pull,push\""));
        // bob may only pull there: his token lacks push and the push is refused.
        let t = token(&r, Some(("bob", "bob-pw")), "repository:shared/app:pull,push").await;
        let bearer = format!("Bearer {t}");
        let p = r
            .req(Method::POST, &push_path, &[("authorization", &bearer)], b"tok".to_vec())
            .await;
        assert_eq!(p.status, StatusCode::UNAUTHORIZED);
        assert!(p.header("www-authenticate").contains("error=\"insufficient_scope\""));
        assert_eq!(r.blob_files(), 0);
        // A token for another repository does not carry over.
        let ta = token(&r, Some(("alice", "alice-pw")), "repository:other:pull,push").await;
        let p = r
            .req(
                Method::POST,
                &push_path,
                &[("authorization", &format!("Bearer {ta}"))],
                b"tok".to_vec(),
            )
            .await;
        assert_eq!(p.status, StatusCode::UNAUTHORIZED);
        // alice with the right scope pushes; bob can then pull it.
        let ta = token(&r, Some(("alice", "alice-pw")), "repository:shared/app:pull,push").await;
        let p = r
            .req(
                Method::POST,
                &push_path,
                &[("authorization", &format!("Bearer {ta}"))],
                b"tok".to_vec(),
            )
            .await;
        assert_eq!(p.status, StatusCode::CREATED);
        let g = r
            .req(
                Method::GET,
                &format!("/v2/shared/app/blobs/{d}"),
                &[("authorization", &bearer)],
                Bytes::new(),
            )
            .await;
        assert_eq!(g.status, StatusCode::OK);
        assert_eq!(&g.body[..], b"tok");
        // Anonymous tokens grant nothing here; forged or garbage tokens are invalid.
        let anon = token(&r, None, "repository:shared/app:pull").await;
        let g = r
            .req(
                Method::GET,
                &format!("/v2/shared/app/blobs/{d}"),
                &[("authorization", &format!("Bearer {anon}"))],
                Bytes::new(),
            )
            .await;
        assert_eq!(g.status, StatusCode::UNAUTHORIZED);
        let g = r
            .req(
                Method::GET,
                &format!("/v2/shared/app/blobs/{d}"),
                &[("authorization", "Bearer a.b.c")],
                Bytes::new(),
            )
            .await;
        assert!(g.header("www-authenticate").contains("invalid_token"));
        // Wrong password at the token endpoint.
        let bad = r
            .req(
                Method::GET,
                "/auth/token?service=hako-registry",
                &[("authorization", &basic("alice", "nope"))],
                Bytes::new(),
            )
            .await;
        assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
        // The OAuth2 password grant by POST.
        let form = "grant_type=password&username=alice&password=alice-pw&service=hako-registry&scope=repository:shared/app:pull";
        let pt = r
            .req(
                Method::POST,
                "/auth/token",
                &[("content-type", "application/x-www-form-urlencoded")],
                form,
            )
            .await;
        assert_eq!(pt.status, StatusCode::OK);
        assert!(pt.json()["access_token"].as_str().is_some());
    }
}

// Multi-threaded: curl runs as a blocking child while the server answers it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_cert_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
    let o = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
        ])
        .args([
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r = Reg::start_with(|c| {
        c.tls = Some(TlsConfig {
            cert: cert.clone(),
            key: key.clone(),
        })
    })
    .await;
    // curl, a real TLS peer, trusting only our certificate.
    let o = std::process::Command::new("curl")
        .args(["-sS", "-D", "-", "--cacert"])
        .arg(&cert)
        .arg(format!("https://127.0.0.1:{}/v2/", r.addr().port()))
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout).to_lowercase();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.starts_with("http/1.1 200"), "{out}");
    assert!(out.contains("docker-distribution-api-version: registry/2.0"));
    // Plain HTTP to the TLS port gets nothing useful.
    let plain = std::process::Command::new("curl")
        .args(["-sS", "-m", "5", &format!("http://127.0.0.1:{}/v2/", r.addr().port())])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&plain.stdout).contains("{}"));
}
