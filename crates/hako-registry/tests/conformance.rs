//! The OCI distribution spec v1.1, requirement by requirement, against a real server on a
//! loopback port: pull, push (monolithic, chunked, resumed, mounted), content discovery,
//! content management, and the bad inputs each refused with the spec's error.

mod common;

use bytes::Bytes;
use http::{Method, StatusCode};
use serde_json::json;

use common::{sha256, Reg};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

#[tokio::test]
async fn base_endpoint_answers_with_api_version() {
    let r = Reg::start().await;
    let resp = r.get("/v2/").await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(resp.header("docker-distribution-api-version"), "registry/2.0");
    let resp = r.get("/v2/nope/unknown/thing").await;
    assert_eq!(resp.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn pull_blob_get_head_and_ranges() {
    let r = Reg::start().await;
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let d = r.push_blob("a/b", &data).await;
    let h = r.head(&format!("/v2/a/b/blobs/{d}")).await;
    assert_eq!(h.status, StatusCode::OK);
    assert_eq!(h.header("content-length"), "100000");
    assert_eq!(h.header("docker-content-digest"), d);
    assert!(h.body.is_empty());
    let g = r.get(&format!("/v2/a/b/blobs/{d}")).await;
    assert_eq!(g.status, StatusCode::OK);
    assert_eq!(&g.body[..], &data[..]);
    let rg = r
        .req(
            Method::GET,
            &format!("/v2/a/b/blobs/{d}"),
            &[("range", "bytes=10-19")],
            Bytes::new(),
        )
        .await;
    assert_eq!(rg.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(rg.header("content-range"), "bytes 10-19/100000");
    assert_eq!(&rg.body[..], &data[10..20]);
    let open = r
        .req(
            Method::GET,
            &format!("/v2/a/b/blobs/{d}"),
            &[("range", "bytes=99990-")],
            Bytes::new(),
        )
        .await;
    assert_eq!(&open.body[..], &data[99990..]);
    let suffix = r
        .req(
            Method::GET,
            &format!("/v2/a/b/blobs/{d}"),
            &[("range", "bytes=-5")],
            Bytes::new(),
        )
        .await;
    assert_eq!(&suffix.body[..], &data[99995..]);
    let bad = r
        .req(
            Method::GET,
            &format!("/v2/a/b/blobs/{d}"),
            &[("range", "bytes=100000-")],
            Bytes::new(),
        )
        .await;
    assert_eq!(bad.status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(bad.header("content-range"), "bytes */100000");
    // Reversed and empty-suffix ranges are unsatisfiable too; a multi-range request gets the
    // whole blob (the server sends one range or none).
    for (range, status) in [
        ("bytes=20-10", StatusCode::RANGE_NOT_SATISFIABLE),
        ("bytes=-0", StatusCode::RANGE_NOT_SATISFIABLE),
        ("bytes=0-1,5-6", StatusCode::OK),
    ] {
        let g = r
            .req(
                Method::GET,
                &format!("/v2/a/b/blobs/{d}"),
                &[("range", range)],
                Bytes::new(),
            )
            .await;
        assert_eq!(g.status, status, "{range}");
        if status == StatusCode::OK {
            assert_eq!(&g.body[..], &data[..]);
        } else {
            assert_eq!(g.header("content-range"), "bytes */100000", "{range}");
        }
    }
    // HEAD answers as GET would, without the body: how a client checks a resume point.
    let hr = r
        .req(
            Method::HEAD,
            &format!("/v2/a/b/blobs/{d}"),
            &[("range", "bytes=40000-")],
            Bytes::new(),
        )
        .await;
    assert_eq!(hr.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(hr.header("content-range"), "bytes 40000-99999/100000");
    assert_eq!(hr.header("content-length"), "60000");
    assert_eq!(hr.header("docker-content-digest"), d);
    assert!(hr.body.is_empty());
    let hbad = r
        .req(
            Method::HEAD,
            &format!("/v2/a/b/blobs/{d}"),
            &[("range", "bytes=100000-100001")],
            Bytes::new(),
        )
        .await;
    assert_eq!(hbad.status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(hbad.header("content-range"), "bytes */100000");
    // A blob of another repository is unknown here.
    let other = r.head(&format!("/v2/other/blobs/{d}")).await;
    assert_eq!(other.status, StatusCode::NOT_FOUND);
    let missing = r.get(&format!("/v2/a/b/blobs/{}", sha256(b"nothing"))).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.code(), "BLOB_UNKNOWN");
    assert_eq!(missing.header("content-type"), "application/json");
}

#[tokio::test]
async fn push_post_then_put() {
    let r = Reg::start().await;
    let data = b"post then put".to_vec();
    let d = sha256(&data);
    let p = r.req(Method::POST, "/v2/r/blobs/uploads/", &[], Bytes::new()).await;
    assert_eq!(p.status, StatusCode::ACCEPTED);
    let loc = p.header("location").to_string();
    assert!(loc.starts_with("/v2/r/blobs/uploads/"), "{loc}");
    assert!(!p.header("docker-upload-uuid").is_empty());
    let put = r
        .req(
            Method::PUT,
            &format!("{loc}?digest={d}"),
            &[("content-type", "application/octet-stream")],
            data.clone(),
        )
        .await;
    assert_eq!(put.status, StatusCode::CREATED, "{:?}", put.body);
    assert_eq!(put.header("location"), format!("/v2/r/blobs/{d}"));
    assert_eq!(put.header("docker-content-digest"), d);
    assert_eq!(&r.get(&format!("/v2/r/blobs/{d}")).await.body[..], &data[..]);
    // The finished session is gone.
    assert_eq!(r.get(&loc).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn push_chunked_in_order_and_out_of_order_416() {
    let r = Reg::start().await;
    let data: Vec<u8> = (0..3000u32).map(|i| (i * 7) as u8).collect();
    let d = sha256(&data);
    let p = r.req(Method::POST, "/v2/c/blobs/uploads/", &[], Bytes::new()).await;
    let loc = p.header("location").to_string();
    let c1 = r
        .req(
            Method::PATCH,
            &loc,
            &[("content-range", "0-999"), ("content-type", "application/octet-stream")],
            data[..1000].to_vec(),
        )
        .await;
    assert_eq!(c1.status, StatusCode::ACCEPTED);
    assert_eq!(c1.header("range"), "0-999");
    let loc = c1.header("location").to_string();
    // Out of order: a chunk that does not start at 1000 is refused and changes nothing.
    let ooo = r
        .req(
            Method::PATCH,
            &loc,
            &[("content-range", "2000-2999")],
            data[2000..].to_vec(),
        )
        .await;
    assert_eq!(ooo.status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(ooo.header("range"), "0-999");
    assert_eq!(ooo.code(), "BLOB_UPLOAD_INVALID");
    let st = r.get(&loc).await;
    assert_eq!(st.status, StatusCode::NO_CONTENT);
    assert_eq!(st.header("range"), "0-999");
    let c2 = r
        .req(
            Method::PATCH,
            &loc,
            &[("content-range", "1000-1999")],
            data[1000..2000].to_vec(),
        )
        .await;
    assert_eq!(c2.status, StatusCode::ACCEPTED);
    // A streamed chunk (no Content-Range) appends, as docker sends them.
    let c3 = r.req(Method::PATCH, &loc, &[], data[2000..].to_vec()).await;
    assert_eq!(c3.status, StatusCode::ACCEPTED);
    assert_eq!(c3.header("range"), "0-2999");
    let fin = r
        .req(Method::PUT, &format!("{loc}?digest={d}"), &[], Bytes::new())
        .await;
    assert_eq!(fin.status, StatusCode::CREATED, "{:?}", fin.body);
    assert_eq!(&r.get(&format!("/v2/c/blobs/{d}")).await.body[..], &data[..]);
}

#[tokio::test]
async fn chunked_upload_resumes_after_restart() {
    let mut r = Reg::start().await;
    let data: Vec<u8> = (0..5000u32).map(|i| (i % 13) as u8).collect();
    let d = sha256(&data);
    let p = r
        .req(Method::POST, "/v2/resume/blobs/uploads/", &[], Bytes::new())
        .await;
    let loc = p.header("location").to_string();
    let c1 = r
        .req(
            Method::PATCH,
            &loc,
            &[("content-range", "0-2499")],
            data[..2500].to_vec(),
        )
        .await;
    assert_eq!(c1.status, StatusCode::ACCEPTED);
    r.restart().await;
    // After the restart the client asks where to go on, then sends the rest.
    let st = r.get(&loc).await;
    assert_eq!(st.status, StatusCode::NO_CONTENT);
    assert_eq!(st.header("range"), "0-2499");
    let c2 = r
        .req(
            Method::PATCH,
            &loc,
            &[("content-range", "2500-4999")],
            data[2500..].to_vec(),
        )
        .await;
    assert_eq!(c2.status, StatusCode::ACCEPTED);
    let fin = r
        .req(Method::PUT, &format!("{loc}?digest={d}"), &[], Bytes::new())
        .await;
    assert_eq!(fin.status, StatusCode::CREATED, "{:?}", fin.body);
    assert_eq!(&r.get(&format!("/v2/resume/blobs/{d}")).await.body[..], &data[..]);
}

#[tokio::test]
async fn final_chunk_in_put_and_cancel() {
    let r = Reg::start().await;
    let data = b"0123456789".to_vec();
    let d = sha256(&data);
    let loc = r
        .req(Method::POST, "/v2/f/blobs/uploads/", &[], Bytes::new())
        .await
        .header("location")
        .to_string();
    r.req(Method::PATCH, &loc, &[("content-range", "0-4")], data[..5].to_vec())
        .await;
    let fin = r
        .req(
            Method::PUT,
            &format!("{loc}?digest={d}"),
            &[("content-range", "5-9")],
            data[5..].to_vec(),
        )
        .await;
    assert_eq!(fin.status, StatusCode::CREATED, "{:?}", fin.body);
    let loc = r
        .req(Method::POST, "/v2/f/blobs/uploads/", &[], Bytes::new())
        .await
        .header("location")
        .to_string();
    assert_eq!(
        r.req(Method::DELETE, &loc, &[], Bytes::new()).await.status,
        StatusCode::NO_CONTENT
    );
    let gone = r.get(&loc).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    assert_eq!(gone.code(), "BLOB_UPLOAD_UNKNOWN");
    assert_eq!(
        r.req(Method::DELETE, &loc, &[], Bytes::new()).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn cross_repository_mount() {
    let r = Reg::start().await;
    let d = r.push_blob("src/repo", b"shared layer").await;
    let m = r
        .req(
            Method::POST,
            &format!("/v2/dst/blobs/uploads/?mount={d}&from=src/repo"),
            &[],
            Bytes::new(),
        )
        .await;
    assert_eq!(m.status, StatusCode::CREATED);
    assert_eq!(m.header("location"), format!("/v2/dst/blobs/{d}"));
    assert_eq!(m.header("docker-content-digest"), d);
    assert_eq!(r.head(&format!("/v2/dst/blobs/{d}")).await.status, StatusCode::OK);
    // Not in the source: an ordinary session instead.
    let other = sha256(b"absent");
    let m = r
        .req(
            Method::POST,
            &format!("/v2/dst/blobs/uploads/?mount={other}&from=src/repo"),
            &[],
            Bytes::new(),
        )
        .await;
    assert_eq!(m.status, StatusCode::ACCEPTED);
    assert!(m.header("location").starts_with("/v2/dst/blobs/uploads/"));
}

#[tokio::test]
async fn manifests_by_tag_and_digest() {
    let r = Reg::start().await;
    let (digest, bytes) = r.push_image("img", "v1", &[b"layer one", b"layer two"]).await;
    assert_eq!(digest, sha256(&bytes));
    for reference in ["v1", digest.as_str()] {
        let g = r.get(&format!("/v2/img/manifests/{reference}")).await;
        assert_eq!(g.status, StatusCode::OK);
        assert_eq!(g.header("content-type"), OCI_MANIFEST);
        assert_eq!(g.header("docker-content-digest"), digest);
        assert_eq!(&g.body[..], &bytes[..]);
        let h = r.head(&format!("/v2/img/manifests/{reference}")).await;
        assert_eq!(h.status, StatusCode::OK);
        assert_eq!(h.header("content-length"), bytes.len().to_string());
        assert_eq!(h.header("docker-content-digest"), digest);
    }
    // Push by digest.
    let p = r.put_manifest("img", &digest, OCI_MANIFEST, &bytes).await;
    assert_eq!(p.status, StatusCode::CREATED);
    assert_eq!(p.header("location"), format!("/v2/img/manifests/{digest}"));
    let u = r.get("/v2/img/manifests/nope").await;
    assert_eq!(u.status, StatusCode::NOT_FOUND);
    assert_eq!(u.code(), "MANIFEST_UNKNOWN");
}

#[tokio::test]
async fn docker_schema2_manifest_and_lists_and_oci_index() {
    let r = Reg::start().await;
    let l = r.push_blob("d", b"docker layer").await;
    let c = r.push_blob("d", b"{\"os\":\"linux\"}").await;
    let m = json!({
        "schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": c, "size": 14},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": l, "size": 12}],
    })
    .to_string();
    let p = r.put_manifest("d", "s2", DOCKER_MANIFEST, m.as_bytes()).await;
    assert_eq!(p.status, StatusCode::CREATED, "{:?}", p.body);
    let md = p.header("docker-content-digest").to_string();
    assert_eq!(
        r.get("/v2/d/manifests/s2").await.header("content-type"),
        DOCKER_MANIFEST
    );
    for (mt, child_mt) in [(DOCKER_LIST, DOCKER_MANIFEST), (OCI_INDEX, DOCKER_MANIFEST)] {
        let list = json!({
            "schemaVersion": 2, "mediaType": mt,
            "manifests": [{"mediaType": child_mt, "digest": md, "size": m.len(), "platform": {"architecture": "amd64", "os": "linux"}}],
        })
        .to_string();
        let p = r.put_manifest("d", "list", mt, list.as_bytes()).await;
        assert_eq!(p.status, StatusCode::CREATED, "{mt}: {:?}", p.body);
        assert_eq!(r.get("/v2/d/manifests/list").await.header("content-type"), mt);
    }
    // An index whose child is not in the repository is refused.
    let list = json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": sha256(b"no such manifest"), "size": 3}],
    })
    .to_string();
    let p = r.put_manifest("d", "badlist", OCI_INDEX, list.as_bytes()).await;
    assert_eq!(p.status, StatusCode::BAD_REQUEST);
    assert_eq!(p.code(), "MANIFEST_BLOB_UNKNOWN");
    assert_eq!(r.get("/v2/d/manifests/badlist").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn manifest_refusals_store_nothing() {
    let r = Reg::start().await;
    let c = r.push_blob("m", b"{}").await;
    let before = r.blob_files();
    // A layer that was never pushed.
    let m = json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": c, "size": 2},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha256(b"missing"), "size": 7}],
    })
    .to_string();
    let p = r.put_manifest("m", "t", OCI_MANIFEST, m.as_bytes()).await;
    assert_eq!(p.status, StatusCode::BAD_REQUEST);
    assert_eq!(p.code(), "MANIFEST_BLOB_UNKNOWN");
    // Unknown media type.
    let p = r
        .put_manifest(
            "m",
            "t",
            "application/vnd.example.unknown+json",
            b"{\"schemaVersion\":2}",
        )
        .await;
    assert_eq!(p.status, StatusCode::BAD_REQUEST);
    assert_eq!(p.code(), "MANIFEST_INVALID");
    // Not JSON.
    let p = r.put_manifest("m", "t", OCI_MANIFEST, b"not json").await;
    assert_eq!(p.code(), "MANIFEST_INVALID");
    // Digest in the URL that is not the body's.
    let good = json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": c, "size": 2}, "layers": [],
    })
    .to_string();
    let p = r
        .put_manifest("m", &sha256(b"other"), OCI_MANIFEST, good.as_bytes())
        .await;
    assert_eq!(p.status, StatusCode::BAD_REQUEST);
    assert_eq!(p.code(), "DIGEST_INVALID");
    // Oversized: 4 MiB and a byte.
    let mut big = br#"{"schemaVersion":2,"annotations":{"x":""#.to_vec();
    big.resize(4 * 1024 * 1024 + 1 - 3, b'a');
    big.extend_from_slice(b"\"}}");
    let p = r.put_manifest("m", "big", OCI_MANIFEST, &big).await;
    assert_eq!(p.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(p.code(), "SIZE_INVALID");
    assert_eq!(r.blob_files(), before, "a refused manifest left files");
    let tags = r.get("/v2/m/tags/list").await.json();
    assert_eq!(tags["tags"], json!([]));
}

#[tokio::test]
async fn push_by_digest_with_several_tags() {
    let r = Reg::start().await;
    let (digest, m) = r.push_image("mt", "base", &[b"tagged layer"]).await;
    // More than the 10 tags the spec requires a registry to take at once; a repeated tag
    // counts once.
    let tags = [
        "1.2.3", "1.2", "1", "latest", "v10", "v11", "v12", "v13", "v14", "v15", "v16", "_x",
    ];
    let query: Vec<String> = tags.iter().chain(&["1"]).map(|t| format!("tag={t}")).collect();
    let p = r
        .put_manifest("mt", &format!("{digest}?{}", query.join("&")), OCI_MANIFEST, &m)
        .await;
    assert_eq!(p.status, StatusCode::CREATED, "{:?}", p.body);
    assert_eq!(p.header("location"), format!("/v2/mt/manifests/{digest}"));
    assert_eq!(p.header("docker-content-digest"), digest);
    let oci_tags: Vec<&str> = p
        .headers
        .get_all("oci-tag")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(oci_tags, tags);
    for t in tags {
        let g = r.get(&format!("/v2/mt/manifests/{t}")).await;
        assert_eq!(g.status, StatusCode::OK, "{t}");
        assert_eq!(g.header("docker-content-digest"), digest, "{t}");
        assert_eq!(&g.body[..], &m[..]);
    }
    let mut all: Vec<&str> = tags.iter().copied().chain(["base"]).collect();
    all.sort();
    assert_eq!(r.get("/v2/mt/tags/list").await.json()["tags"], json!(all));
    // A push by digest without tags creates none (and says so with no OCI-Tag).
    let p = r.put_manifest("mt", &digest, OCI_MANIFEST, &m).await;
    assert_eq!(p.status, StatusCode::CREATED);
    assert!(p.headers.get("oci-tag").is_none());

    // A second manifest moves some of the tags.
    let (_, m2) = r.push_image("mt", "other", &[b"second layer"]).await;
    let d2 = sha256(&m2);
    let p = r
        .put_manifest("mt", &format!("{d2}?tag=latest&tag=2"), OCI_MANIFEST, &m2)
        .await;
    assert_eq!(p.status, StatusCode::CREATED);
    assert_eq!(
        r.get("/v2/mt/manifests/latest").await.header("docker-content-digest"),
        d2
    );
    assert_eq!(r.get("/v2/mt/manifests/2").await.header("docker-content-digest"), d2);
    assert_eq!(
        r.get("/v2/mt/manifests/1").await.header("docker-content-digest"),
        digest
    );

    // Refusals write nothing: not the manifest, not the valid tags beside the bad one.
    let l = r.push_blob("mt", b"third layer").await;
    let c = r.push_blob("mt", b"{\"os\":\"linux\"}").await;
    let m3 = json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": c, "size": 14},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": l, "size": 11}],
    })
    .to_string();
    let d3 = sha256(m3.as_bytes());
    let before_tags = r.get("/v2/mt/tags/list").await.json();
    let before_blobs = r.blob_files();
    let many: Vec<String> = (0..101).map(|i| format!("tag=t{i}")).collect();
    for (reference, status) in [
        (format!("{d3}?tag=fine&tag=.dot"), StatusCode::BAD_REQUEST),
        (format!("{d3}?tag=fine&tag=-dash"), StatusCode::BAD_REQUEST),
        (
            format!("{d3}?tag=fine&tag={}", "x".repeat(129)),
            StatusCode::BAD_REQUEST,
        ),
        (format!("{d3}?tag=fine&tag=a%2Fb"), StatusCode::BAD_REQUEST),
        (format!("{d3}?tag=fine&tag="), StatusCode::BAD_REQUEST),
        // Tag parameters belong to a push by digest.
        ("fine?tag=also".to_string(), StatusCode::BAD_REQUEST),
        (format!("{d3}?{}", many.join("&")), StatusCode::URI_TOO_LONG),
    ] {
        let p = r.put_manifest("mt", &reference, OCI_MANIFEST, m3.as_bytes()).await;
        assert_eq!(p.status, status, "{reference}");
        assert_eq!(p.code(), "TAG_INVALID", "{reference}");
        assert!(p.headers.get("oci-tag").is_none());
    }
    assert_eq!(r.get("/v2/mt/tags/list").await.json(), before_tags);
    assert_eq!(r.blob_files(), before_blobs);
    assert_eq!(
        r.get(&format!("/v2/mt/manifests/{d3}")).await.status,
        StatusCode::NOT_FOUND
    );
    // An invalid tag in the URL gets the same code.
    let p = r.put_manifest("mt", ".dot", OCI_MANIFEST, m3.as_bytes()).await;
    assert_eq!((p.status, p.code().as_str()), (StatusCode::BAD_REQUEST, "TAG_INVALID"));
    // Reading one finds nothing: 404, as the official conformance suite checks with
    // `.INVALID_MANIFEST_NAME`.
    let g = r.get("/v2/mt/manifests/.INVALID_MANIFEST_NAME").await;
    assert_eq!(
        (g.status, g.code().as_str()),
        (StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN")
    );
    let h = r.head("/v2/mt/manifests/.INVALID_MANIFEST_NAME").await;
    assert_eq!(h.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn tags_list_pagination() {
    let r = Reg::start().await;
    let (_, m) = r.push_image("t", "a", &[b"x"]).await;
    for t in ["b", "c", "d", "e"] {
        assert_eq!(
            r.put_manifest("t", t, OCI_MANIFEST, &m).await.status,
            StatusCode::CREATED
        );
    }
    let all = r.get("/v2/t/tags/list").await;
    assert_eq!(all.json(), json!({"name": "t", "tags": ["a", "b", "c", "d", "e"]}));
    let p1 = r.get("/v2/t/tags/list?n=2").await;
    assert_eq!(p1.json()["tags"], json!(["a", "b"]));
    assert_eq!(p1.header("link"), "</v2/t/tags/list?n=2&last=b>; rel=\"next\"");
    let p2 = r.get("/v2/t/tags/list?n=2&last=b").await;
    assert_eq!(p2.json()["tags"], json!(["c", "d"]));
    let p3 = r.get("/v2/t/tags/list?n=2&last=d").await;
    assert_eq!(p3.json()["tags"], json!(["e"]));
    assert_eq!(p3.header("link"), "");
    assert_eq!(r.get("/v2/t/tags/list?n=0").await.json()["tags"], json!([]));
    let u = r.get("/v2/unknown/tags/list").await;
    assert_eq!(u.status, StatusCode::NOT_FOUND);
    assert_eq!(u.code(), "NAME_UNKNOWN");
    let cat = r.get("/v2/_catalog?n=10").await;
    assert_eq!(cat.json()["repositories"], json!(["t"]));
}

#[tokio::test]
async fn referrers_and_subject() {
    let r = Reg::start().await;
    let (subject, sbytes) = r.push_image("s", "v1", &[b"base"]).await;
    let empty = r.push_blob("s", b"{}").await;
    let mut digests = Vec::new();
    for (i, at) in ["application/vnd.example.sbom", "application/vnd.example.sig"]
        .iter()
        .enumerate()
    {
        let m = json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": at,
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
            "layers": [],
            "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": sbytes.len()},
            "annotations": {"n": i.to_string()},
        })
        .to_string();
        let d = sha256(m.as_bytes());
        let p = r.put_manifest("s", &d, OCI_MANIFEST, m.as_bytes()).await;
        assert_eq!(p.status, StatusCode::CREATED, "{:?}", p.body);
        assert_eq!(p.header("oci-subject"), subject);
        digests.push(d);
    }
    let all = r.get(&format!("/v2/s/referrers/{subject}")).await;
    assert_eq!(all.status, StatusCode::OK);
    assert_eq!(all.header("content-type"), OCI_INDEX);
    let list = all.json();
    assert_eq!(list["schemaVersion"], 2);
    assert_eq!(list["manifests"].as_array().unwrap().len(), 2);
    assert!(list["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["annotations"]["n"] == "1"));
    let f = r
        .get(&format!(
            "/v2/s/referrers/{subject}?artifactType=application/vnd.example.sig"
        ))
        .await;
    assert_eq!(f.header("oci-filters-applied"), "artifactType");
    let fl = f.json();
    assert_eq!(fl["manifests"].as_array().unwrap().len(), 1);
    assert_eq!(fl["manifests"][0]["digest"], digests[1]);
    assert_eq!(fl["manifests"][0]["artifactType"], "application/vnd.example.sig");
    // A subject without referrers (or unknown) is an empty list, never 404.
    let none = r.get(&format!("/v2/s/referrers/{}", sha256(b"nothing"))).await;
    assert_eq!(none.status, StatusCode::OK);
    assert_eq!(none.json()["manifests"], json!([]));
    // Deleting a referrer removes it from the list.
    let del = r
        .req(
            Method::DELETE,
            &format!("/v2/s/manifests/{}", digests[0]),
            &[],
            Bytes::new(),
        )
        .await;
    assert_eq!(del.status, StatusCode::ACCEPTED);
    let after = r.get(&format!("/v2/s/referrers/{subject}")).await.json();
    assert_eq!(after["manifests"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn deletion_of_manifests_tags_and_blobs() {
    let r = Reg::start().await;
    let (digest, m) = r.push_image("del", "v1", &[b"doomed"]).await;
    r.put_manifest("del", "v2", OCI_MANIFEST, &m).await;
    // Tag deletion leaves the manifest and the other tag.
    assert_eq!(
        r.req(Method::DELETE, "/v2/del/manifests/v2", &[], Bytes::new())
            .await
            .status,
        StatusCode::ACCEPTED
    );
    assert_eq!(r.get("/v2/del/manifests/v2").await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        r.get(&format!("/v2/del/manifests/{digest}")).await.status,
        StatusCode::OK
    );
    // Manifest deletion by digest takes its tags along.
    let d = r
        .req(
            Method::DELETE,
            &format!("/v2/del/manifests/{digest}"),
            &[],
            Bytes::new(),
        )
        .await;
    assert_eq!(d.status, StatusCode::ACCEPTED);
    assert_eq!(
        r.get(&format!("/v2/del/manifests/{digest}")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(r.get("/v2/del/manifests/v1").await.status, StatusCode::NOT_FOUND);
    let again = r
        .req(
            Method::DELETE,
            &format!("/v2/del/manifests/{digest}"),
            &[],
            Bytes::new(),
        )
        .await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    assert_eq!(again.code(), "MANIFEST_UNKNOWN");
    let b = sha256(b"doomed");
    assert_eq!(
        r.req(Method::DELETE, &format!("/v2/del/blobs/{b}"), &[], Bytes::new())
            .await
            .status,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        r.head(&format!("/v2/del/blobs/{b}")).await.status,
        StatusCode::NOT_FOUND
    );
    let gone = r
        .req(Method::DELETE, &format!("/v2/del/blobs/{b}"), &[], Bytes::new())
        .await;
    assert_eq!(gone.code(), "BLOB_UNKNOWN");
}

#[tokio::test]
async fn deletion_can_be_disabled() {
    let r = Reg::start_with(|c| c.delete_enabled = false).await;
    let (digest, _) = r.push_image("nd", "v1", &[b"kept"]).await;
    let d = r
        .req(Method::DELETE, &format!("/v2/nd/manifests/{digest}"), &[], Bytes::new())
        .await;
    assert_eq!(d.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(d.code(), "UNSUPPORTED");
}

#[tokio::test]
async fn sha512_blobs_and_manifests() {
    let r = Reg::start().await;
    let data = b"sha512 content".to_vec();
    let d = hako_registry::Digest::of(hako_registry::Algorithm::Sha512, &data).to_string();
    assert!(d.starts_with("sha512:"));
    let p = r
        .req(
            Method::POST,
            &format!("/v2/s5/blobs/uploads/?digest={d}"),
            &[],
            data.clone(),
        )
        .await;
    assert_eq!(p.status, StatusCode::CREATED, "{:?}", p.body);
    assert_eq!(&r.get(&format!("/v2/s5/blobs/{d}")).await.body[..], &data[..]);
    // Chunked, finished with a sha512 digest.
    let loc = r
        .req(Method::POST, "/v2/s5/blobs/uploads/", &[], Bytes::new())
        .await
        .header("location")
        .to_string();
    let other = b"chunked sha512".to_vec();
    let od = hako_registry::Digest::of(hako_registry::Algorithm::Sha512, &other).to_string();
    r.req(Method::PATCH, &loc, &[("content-range", "0-13")], other.clone())
        .await;
    assert_eq!(
        r.req(Method::PUT, &format!("{loc}?digest={od}"), &[], Bytes::new())
            .await
            .status,
        StatusCode::CREATED
    );
    let m = json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": d, "size": data.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": od, "size": other.len()}],
    })
    .to_string();
    let md = hako_registry::Digest::of(hako_registry::Algorithm::Sha512, m.as_bytes()).to_string();
    let p = r.put_manifest("s5", &md, OCI_MANIFEST, m.as_bytes()).await;
    assert_eq!(p.status, StatusCode::CREATED, "{:?}", p.body);
    assert_eq!(p.header("docker-content-digest"), md);
    assert_eq!(r.get(&format!("/v2/s5/manifests/{md}")).await.body, m.as_bytes());
}

#[tokio::test]
async fn wrong_digest_and_bad_ranges_store_nothing() {
    let r = Reg::start().await;
    let before = r.blob_files();
    let wrong = sha256(b"something else");
    let p = r
        .req(
            Method::POST,
            &format!("/v2/w/blobs/uploads/?digest={wrong}"),
            &[],
            b"actual".to_vec(),
        )
        .await;
    assert_eq!(p.status, StatusCode::BAD_REQUEST);
    assert_eq!(p.code(), "DIGEST_INVALID");
    assert_eq!(
        r.head(&format!("/v2/w/blobs/{wrong}")).await.status,
        StatusCode::NOT_FOUND
    );
    // Chunked, wrong digest at the end: refused, session gone.
    let loc = r
        .req(Method::POST, "/v2/w/blobs/uploads/", &[], Bytes::new())
        .await
        .header("location")
        .to_string();
    r.req(Method::PATCH, &loc, &[], b"abc".to_vec()).await;
    let fin = r
        .req(Method::PUT, &format!("{loc}?digest={wrong}"), &[], Bytes::new())
        .await;
    assert_eq!(fin.code(), "DIGEST_INVALID");
    assert_eq!(r.get(&loc).await.status, StatusCode::NOT_FOUND);
    // Malformed digest, missing digest.
    let p = r
        .req(
            Method::POST,
            "/v2/w/blobs/uploads/?digest=sha256:xyz",
            &[],
            b"a".to_vec(),
        )
        .await;
    assert_eq!(p.code(), "DIGEST_INVALID");
    let loc = r
        .req(Method::POST, "/v2/w/blobs/uploads/", &[], Bytes::new())
        .await
        .header("location")
        .to_string();
    let p = r.req(Method::PUT, &loc, &[], b"a".to_vec()).await;
    assert_eq!(p.code(), "DIGEST_INVALID");
    // Bad Content-Range: unparsable, reversed, disagreeing with Content-Length.
    for cr in ["abc", "5-2", "0-9"] {
        let p = r
            .req(Method::PATCH, &loc, &[("content-range", cr)], b"xyz".to_vec())
            .await;
        assert_eq!(p.status, StatusCode::RANGE_NOT_SATISFIABLE, "{cr}");
    }
    assert_eq!(r.get(&loc).await.header("range"), "0-0");
    assert_eq!(r.blob_files(), before);
}

#[tokio::test]
async fn short_body_leaves_the_session_as_it_was() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let r = Reg::start().await;
    let loc = r
        .req(Method::POST, "/v2/short/blobs/uploads/", &[], Bytes::new())
        .await
        .header("location")
        .to_string();
    r.req(Method::PATCH, &loc, &[("content-range", "0-3")], b"good".to_vec())
        .await;
    // Promise 100 bytes, send 10, close: the partial chunk must not stay.
    let mut s = tokio::net::TcpStream::connect(r.addr()).await.unwrap();
    let head =
        format!("PATCH {loc} HTTP/1.1\r\nHost: x\r\nContent-Range: 4-103\r\nContent-Length: 100\r\n\r\n0123456789");
    s.write_all(head.as_bytes()).await.unwrap();
    s.shutdown().await.unwrap();
    let mut sink = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), s.read_to_end(&mut sink)).await;
    // Give the server a moment to cut the chunk off.
    let mut range = String::new();
    for _ in 0..50 {
        range = r.get(&loc).await.header("range").to_string();
        if range == "0-3" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(range, "0-3");
    let ok = r
        .req(Method::PATCH, &loc, &[("content-range", "4-5")], b"!!".to_vec())
        .await;
    assert_eq!(ok.header("range"), "0-5");
}

#[tokio::test]
async fn invalid_names_are_refused() {
    let r = Reg::start().await;
    for path in [
        "/v2/../../etc/blobs/uploads/",
        "/v2/a/../b/tags/list",
        "/v2/UPPER/tags/list",
        "/v2/a%2f..%2fb/tags/list",
        "/v2/.hidden/manifests/latest",
    ] {
        let p = r.req(Method::POST, path, &[], Bytes::new()).await;
        assert_eq!(p.status, StatusCode::BAD_REQUEST, "{path}");
        assert_eq!(p.code(), "NAME_INVALID", "{path}");
    }
    let long = format!("/v2/{}/tags/list", "a".repeat(256));
    assert_eq!(r.get(&long).await.code(), "NAME_INVALID");
    assert!(!r.root().join("etc").exists());
    assert_eq!(std::fs::read_dir(r.root().join("repositories")).unwrap().count(), 0);
}

#[tokio::test]
async fn concurrent_pushes_of_the_same_blob_and_manifest() {
    let r = std::sync::Arc::new(Reg::start().await);
    let data: Vec<u8> = (0..2_000_000u32).map(|i| (i % 239) as u8).collect();
    let d = sha256(&data);
    let mut tasks = Vec::new();
    for i in 0..8 {
        let (r, data, d) = (r.clone(), data.clone(), d.clone());
        tasks.push(tokio::spawn(async move {
            if i % 2 == 0 {
                r.push_blob("same", &data).await;
            } else {
                let loc = r
                    .req(Method::POST, "/v2/same/blobs/uploads/", &[], Bytes::new())
                    .await
                    .header("location")
                    .to_string();
                let h = r.req(Method::PATCH, &loc, &[], data[..1_000_000].to_vec()).await;
                let h = r
                    .req(Method::PATCH, h.header("location"), &[], data[1_000_000..].to_vec())
                    .await;
                let fin = r
                    .req(
                        Method::PUT,
                        &format!("{}?digest={d}", h.header("location")),
                        &[],
                        Bytes::new(),
                    )
                    .await;
                assert_eq!(fin.status, StatusCode::CREATED);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(&r.get(&format!("/v2/same/blobs/{d}")).await.body[..], &data[..]);
    // Same manifest from several clients at once.
    let (_, m) = r.push_image("same", "v0", &[&data]).await;
    let mut tasks = Vec::new();
    for i in 0..8 {
        let (r, m) = (r.clone(), m.clone());
        tasks.push(tokio::spawn(async move {
            let p = r.put_manifest("same", &format!("v{}", i % 3), OCI_MANIFEST, &m).await;
            assert_eq!(p.status, StatusCode::CREATED);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(r.get("/v2/same/manifests/v2").await.body, m);
    assert_eq!(std::fs::read_dir(r.root().join("tmp")).unwrap().count(), 0);
    assert_eq!(std::fs::read_dir(r.root().join("uploads")).unwrap().count(), 0);
}

#[tokio::test]
async fn idle_uploads_expire() {
    let r = Reg::start_with(|c| c.upload_expiry_secs = 0).await;
    let loc = r
        .req(Method::POST, "/v2/e/blobs/uploads/", &[], Bytes::new())
        .await
        .header("location")
        .to_string();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let storage = r.server.as_ref().unwrap().state.storage.clone();
    let n = tokio::task::spawn_blocking(move || storage.purge_uploads(std::time::Duration::from_secs(0)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(r.get(&loc).await.status, StatusCode::NOT_FOUND);
}
