//! Garbage collection: mark from every manifest, sweep the rest, dry run, and safety
//! against pushes in flight (grace period, HEAD refresh, concurrent pushes).

mod common;

use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};

use common::{sha256, Reg};
use hako_registry::gc::{collect, GcOptions};

fn opts(dry_run: bool, grace: u64) -> GcOptions {
    GcOptions {
        dry_run,
        grace: Duration::from_secs(grace),
        upload_expiry: Duration::from_secs(3600),
    }
}

async fn gc(r: &Reg, o: GcOptions) -> hako_registry::gc::GcReport {
    let s = r.server.as_ref().unwrap().state.storage.clone();
    tokio::task::spawn_blocking(move || collect(s.as_ref(), &o))
        .await
        .unwrap()
        .unwrap()
}

/// Makes a blob look last used two hours ago.
fn age(r: &Reg, digest: &str) {
    let hex = digest.strip_prefix("sha256:").unwrap();
    let p = r.root().join("blobs/sha256").join(hex);
    let old = rustix::fs::Timespec {
        tv_sec: (std::time::SystemTime::now() - Duration::from_secs(7200))
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64,
        tv_nsec: 0,
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        &p,
        &rustix::fs::Timestamps {
            last_access: old,
            last_modification: old,
        },
        rustix::fs::AtFlags::empty(),
    )
    .unwrap();
}

async fn pulls_intact(r: &Reg, repo: &str, tag: &str) {
    let m = r.get(&format!("/v2/{repo}/manifests/{tag}")).await;
    assert_eq!(m.status, StatusCode::OK, "{repo}:{tag}");
    let v = m.json();
    let mut blobs = vec![v["config"]["digest"].as_str().unwrap().to_string()];
    for l in v["layers"].as_array().unwrap() {
        blobs.push(l["digest"].as_str().unwrap().to_string());
    }
    for b in blobs {
        let g = r.get(&format!("/v2/{repo}/blobs/{b}")).await;
        assert_eq!(g.status, StatusCode::OK, "{repo}:{tag} blob {b}");
        assert_eq!(sha256(&g.body), b);
    }
}

#[tokio::test]
async fn sweeps_what_no_manifest_references() {
    let r = Reg::start().await;
    let (_a, _) = r.push_image("app", "a", &[b"shared", b"only a"]).await;
    let (b, _) = r.push_image("app", "b", &[b"shared", b"only b"]).await;
    let orphan = r.push_blob("app", b"orphan").await;
    assert_eq!(
        r.req(Method::DELETE, &format!("/v2/app/manifests/{b}"), &[], Bytes::new())
            .await
            .status,
        StatusCode::ACCEPTED
    );
    let before = r.blob_files();
    let dry = gc(&r, opts(true, 0)).await;
    // orphan, "only b", b's config, b's manifest.
    assert_eq!(dry.swept.len(), 4, "{:?}", dry.swept);
    assert_eq!(r.blob_files(), before, "dry run removed something");
    // With the default grace period, the fresh blobs are kept.
    let young = gc(&r, opts(false, 3600)).await;
    assert!(young.swept.is_empty());
    assert_eq!(young.young, 4);
    let real = gc(&r, opts(false, 0)).await;
    assert_eq!(real.swept.len(), 4);
    assert_eq!(r.blob_files(), before - 4);
    assert!(real.swept.iter().any(|(d, _)| d.to_string() == orphan));
    assert_eq!(
        r.head(&format!("/v2/app/blobs/{orphan}")).await.status,
        StatusCode::NOT_FOUND
    );
    pulls_intact(&r, "app", "a").await;
    // A swept blob pushed again is whole again.
    r.push_blob("app", b"orphan").await;
    assert_eq!(r.get(&format!("/v2/app/blobs/{orphan}")).await.body, &b"orphan"[..]);
}

#[tokio::test]
async fn index_children_and_referrers_are_kept() {
    let r = Reg::start().await;
    let (child, cm) = r.push_image("idx", "child", &[b"child layer"]).await;
    let index = serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": child, "size": cm.len()}],
    })
    .to_string();
    assert_eq!(
        r.put_manifest(
            "idx",
            "list",
            "application/vnd.oci.image.index.v1+json",
            index.as_bytes()
        )
        .await
        .status,
        StatusCode::CREATED
    );
    // Untag the child: the index still holds it.
    r.req(Method::DELETE, "/v2/idx/manifests/child", &[], Bytes::new())
        .await;
    let rep = gc(&r, opts(false, 0)).await;
    assert!(rep.swept.is_empty(), "{:?}", rep.swept);
    pulls_intact(&r, "idx", &child).await;
}

#[tokio::test]
async fn a_blob_confirmed_by_head_survives_gc() {
    let r = Reg::start().await;
    let old = r.push_blob("h", b"old but about to be used").await;
    age(&r, &old);
    // A pusher asks whether the blob exists (yes): that use restarts its grace period...
    assert_eq!(r.head(&format!("/v2/h/blobs/{old}")).await.status, StatusCode::OK);
    let rep = gc(&r, opts(false, 60)).await;
    assert!(rep.swept.is_empty());
    // ...so its manifest, pushed after the GC, finds it.
    let cfg = r.push_blob("h", b"{}").await;
    let m = serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg, "size": 2},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": old, "size": 24}],
    })
    .to_string();
    assert_eq!(
        r.put_manifest("h", "v1", "application/vnd.oci.image.manifest.v1+json", m.as_bytes())
            .await
            .status,
        StatusCode::CREATED
    );
    // An aged blob nobody asked for goes.
    let stale = r.push_blob("h", b"stale").await;
    age(&r, &stale);
    let rep = gc(&r, opts(false, 60)).await;
    assert_eq!(rep.swept.len(), 1);
    assert_eq!(rep.swept[0].0.to_string(), stale);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn online_gc_during_concurrent_pushes() {
    let r = std::sync::Arc::new(Reg::start().await);
    let stale = r.push_blob("stale", b"stale data").await;
    age(&r, &stale);
    let mut pushes = Vec::new();
    for i in 0..12 {
        let r = r.clone();
        pushes.push(tokio::spawn(async move {
            let layer = format!("layer {i}").repeat(10_000);
            r.push_image(&format!("p{}", i % 3), &format!("t{i}"), &[layer.as_bytes(), b"common"])
                .await;
        }));
    }
    let mut swept = 0;
    for _ in 0..5 {
        swept += gc(&r, opts(false, 60)).await.swept.len();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for p in pushes {
        p.await.unwrap();
    }
    swept += gc(&r, opts(false, 60)).await.swept.len();
    assert_eq!(swept, 1, "only the stale blob goes");
    for i in 0..12 {
        pulls_intact(&r, &format!("p{}", i % 3), &format!("t{i}")).await;
    }
}
