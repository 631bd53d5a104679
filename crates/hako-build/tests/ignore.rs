//! `.dockerignore` semantics, the context walk, content hashes and COPY source globs, on real
//! temporary directories.

use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use hako_build::ignore::{content_hash, context_entries, glob, ignore_file_for, resolve_in_root, Ignore};

fn ignore(text: &str) -> Ignore {
    Ignore::parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
}

fn write(root: &Path, rel: &str, content: &str) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, content).unwrap();
}

fn paths(list: &[&str]) -> Vec<PathBuf> {
    list.iter().map(PathBuf::from).collect()
}

// --- Docker's documented .dockerignore examples ----------------------------------------------

#[test]
fn documented_temp_example() {
    let p = ignore("# comment\n*/temp*\n*/*/temp*\ntemp?\n");
    // */temp*: names starting with temp in any immediate subdirectory of the root.
    assert!(p.excluded("somedir/temporary.txt"));
    assert!(p.excluded("somedir/temp"));
    assert!(
        p.excluded("somedir/temp/inside.txt"),
        "a matched directory covers its contents"
    );
    // */*/temp*: two levels down.
    assert!(p.excluded("somedir/subdir/temporary.txt"));
    // temp?: one character after temp, at the root.
    assert!(p.excluded("tempa"));
    assert!(p.excluded("tempb"));
    // None of them reach these.
    assert!(!p.excluded("temp"));
    assert!(!p.excluded("temporary.txt"));
    assert!(!p.excluded("a/b/c/temp"));
    assert!(!p.excluded("tempab"));
    // The comment line is not a pattern.
    assert!(!p.excluded("# comment"));
}

#[test]
fn double_star_matches_any_number_of_directories() {
    let p = ignore("**/*.go");
    assert!(p.excluded("main.go"), "zero directories");
    assert!(p.excluded("cmd/main.go"));
    assert!(p.excluded("a/b/c/d.go"));
    assert!(!p.excluded("a/b/c/d.gox"));
    assert!(!p.excluded("go"));
    let p = ignore("a/**/b");
    assert!(p.excluded("a/b"));
    assert!(p.excluded("a/x/y/b"));
    assert!(!p.excluded("a/xb"));
}

#[test]
fn exceptions_last_match_wins() {
    let p = ignore("*.md\n!README.md");
    assert!(p.excluded("CHANGES.md"));
    assert!(!p.excluded("README.md"));
    assert!(!p.excluded("docs/guide.md"), "*.md only covers the root");

    let p = ignore("*.md\n!README*.md\nREADME-secret.md");
    assert!(p.excluded("README-secret.md"));
    assert!(!p.excluded("README-public.md"));
    assert!(p.excluded("other.md"));

    let p = ignore("*.md\nREADME-secret.md\n!README*.md");
    assert!(!p.excluded("README-secret.md"), "the exception comes last and wins");
    assert!(p.excluded("other.md"));

    // "Include only": exclude everything, then re-include.
    let p = ignore("*\n!src\n!Dockerfile");
    assert!(!p.excluded("src/main.rs"));
    assert!(!p.excluded("Dockerfile"));
    assert!(p.excluded("target/debug/app"));
}

#[test]
fn excluded_directory_with_reincluded_file() {
    let p = ignore("docs\n!docs/keep.md");
    assert!(p.excluded("docs/other.md"));
    assert!(p.excluded("docs/sub/deep.md"));
    assert!(!p.excluded("docs/keep.md"));
    assert!(p.may_include_below("docs"));
    assert!(!p.may_include_below("src"));

    // Trailing slash and wildcard spellings of the directory behave the same.
    for text in ["docs/\n!docs/keep.md", "docs/*\n!docs/keep.md"] {
        let p = ignore(text);
        assert!(!p.excluded("docs/keep.md"), "{text:?}");
        assert!(p.excluded("docs/other.md"), "{text:?}");
    }

    // Docker enters an excluded directory only for an exception that starts with it as text.
    // `!**/keep.md` therefore re-includes nothing inside `secret/`, as with docker build.
    let p = ignore("secret\n!**/keep.md");
    assert!(!p.may_include_below("secret"));
    assert!(p.excluded("secret/keep.md"));
    assert!(!p.excluded("keep.md"));
    // An exception does re-include below nested excluded directories on its path.
    let p = ignore("**\n!a/b/c.txt");
    assert!(p.may_include_below("a") && p.may_include_below("a/b"));
    assert!(!p.excluded("a/b/c.txt"));
    assert!(p.excluded("a/b/d.txt"));
    // Without exceptions nothing is worth entering.
    assert!(!ignore("docs").may_include_below("docs"));
}

#[test]
fn leading_slash_and_cleaning() {
    let p = ignore("/foo/bar\n./baz/\n/");
    assert!(p.excluded("foo/bar"));
    assert!(p.excluded("foo/bar/inner"));
    assert!(!p.excluded("x/foo/bar"));
    assert!(!p.excluded("foo"));
    assert!(p.excluded("baz"));
    // A lone `/` matches nothing, and the context root is never excluded.
    assert!(!p.excluded("other"));
    assert!(!ignore("*").excluded(""));
    assert!(!ignore("*").excluded("."));
}

#[test]
fn comments_blank_lines_and_whitespace() {
    let p = ignore("# a comment\n\n   \n  secret.txt  \n#secret2.txt\n");
    assert!(p.excluded("secret.txt"));
    assert!(!p.excluded("secret2.txt"));
    assert!(!p.excluded("#secret2.txt"));
    // Only column 1 starts a comment: an indented `#` is part of a pattern.
    assert!(ignore("  #notes").excluded("#notes"));
}

#[test]
fn classes_ranges_and_escapes() {
    let p = ignore("file[0-9].txt");
    assert!(p.excluded("file7.txt"));
    assert!(!p.excluded("filex.txt"));
    let p = ignore("file[^0-9].txt");
    assert!(p.excluded("filex.txt"));
    assert!(!p.excluded("file7.txt"));
    // `!` does not negate a class in Go or Docker: it is a member.
    let p = ignore("file[!0-9].txt");
    assert!(p.excluded("file!.txt"));
    assert!(p.excluded("file5.txt"));
    assert!(!p.excluded("filex.txt"));
    // An escaped star is a literal star.
    let p = ignore("foo\\*");
    assert!(p.excluded("foo*"));
    assert!(!p.excluded("foox"));
    // `?` is one character, never a `/`.
    let p = ignore("a?c");
    assert!(p.excluded("abc"));
    assert!(!p.excluded("a/c"));
}

#[test]
fn bad_patterns_name_their_line() {
    for (text, line) in [
        ("ok\n[unterminated\n", 2),
        ("a\nb\n!\n", 3),
        ("x\\", 1),
        ("a\n\n# c\nfile[z-a]", 4),
    ] {
        let err = Ignore::parse(text).expect_err(text);
        assert_eq!(err.line, line, "{text:?}: {err}");
        assert!(err.to_string().contains(&format!("line {line}")), "{err}");
    }
}

// --- which ignore file --------------------------------------------------------------------------

#[test]
fn dockerfile_specific_ignore_file_wins() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "Dockerfile", "FROM scratch\n");
    write(root, "build/app.Dockerfile", "FROM scratch\n");
    assert_eq!(ignore_file_for(root, Path::new("Dockerfile")), None);

    write(root, ".dockerignore", "*.log\n");
    assert_eq!(
        ignore_file_for(root, Path::new("Dockerfile")),
        Some(root.join(".dockerignore"))
    );
    assert_eq!(
        ignore_file_for(root, Path::new("build/app.Dockerfile")),
        Some(root.join(".dockerignore"))
    );

    write(root, "Dockerfile.dockerignore", "*.tmp\n");
    write(root, "build/app.Dockerfile.dockerignore", "*.bak\n");
    assert_eq!(
        ignore_file_for(root, Path::new("Dockerfile")),
        Some(root.join("Dockerfile.dockerignore"))
    );
    assert_eq!(
        ignore_file_for(root, Path::new("build/app.Dockerfile")),
        Some(root.join("build/app.Dockerfile.dockerignore"))
    );
    // An absolute Dockerfile path is used as is.
    assert_eq!(
        ignore_file_for(root, &root.join("build/app.Dockerfile")),
        Some(root.join("build/app.Dockerfile.dockerignore"))
    );
}

// --- the context walk ---------------------------------------------------------------------------

#[test]
fn context_walk_never_lists_excluded_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "Dockerfile", "FROM scratch\nCOPY . /\n");
    write(root, "secret.key", "PRIVATE");
    write(root, "app/main.go", "package main");
    write(root, "app/deep/id.key", "PRIVATE");
    write(root, "docs/a.md", "a");
    write(root, "docs/keep.md", "keep");
    write(root, "node_modules/x/y.js", "y");
    write(root, "cache/blob", "b");
    symlink("secret.key", root.join("link")).unwrap();
    symlink("/etc", root.join("etc-link")).unwrap();
    let text = "*.key\n**/*.key\nnode_modules\ndocs\n!docs/keep.md\ncache\n!cache/keep\nDockerfile\n.dockerignore\n";
    write(root, ".dockerignore", text);
    let p = ignore(text);

    let entries = context_entries(root, &p, &["Dockerfile", ".dockerignore"]).unwrap();
    assert_eq!(
        entries,
        paths(&[
            ".dockerignore",
            "Dockerfile",
            "app",
            "app/deep",
            "app/main.go",
            "docs",
            "docs/keep.md",
            "etc-link",
            "link",
        ])
    );
    for entry in &entries {
        assert!(
            !entry.to_string_lossy().ends_with(".key"),
            "{entry:?} must not leave the client"
        );
    }
    // Without the always list, the excluded Dockerfile and .dockerignore stay out too.
    let bare = context_entries(root, &p, &[]).unwrap();
    assert!(!bare.contains(&PathBuf::from("Dockerfile")));
    assert!(!bare.contains(&PathBuf::from(".dockerignore")));
    // `cache` was entered for `!cache/keep`, but holds nothing included, so it is not listed.
    assert!(!bare.contains(&PathBuf::from("cache")));
}

#[test]
fn context_walk_forces_a_dockerfile_inside_an_excluded_directory() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "build/Dockerfile", "FROM scratch\n");
    write(root, "build/output.bin", "big");
    write(root, "src/lib.rs", "");
    let p = ignore("build\n");
    let entries = context_entries(root, &p, &["build/Dockerfile", ".dockerignore", "../outside"]).unwrap();
    assert_eq!(entries, paths(&["build", "build/Dockerfile", "src", "src/lib.rs"]));
}

#[test]
fn context_walk_without_ignore_lists_everything_sorted() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "b/z", "");
    write(root, "a-b", "");
    write(root, "a/c", "");
    let entries = context_entries(root, &Ignore::default(), &[]).unwrap();
    // Component order: each directory comes right before its contents.
    assert_eq!(entries, paths(&["a", "a/c", "a-b", "b", "b/z"]));
}

// --- content hashes -----------------------------------------------------------------------------

fn hash_tree(root: &Path) -> String {
    content_hash(root, &paths(&["."])).unwrap()
}

fn sample_tree() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "app/main.rs", "fn main() {}\n");
    write(root, "app/data.bin", "0123456789");
    write(root, "README", "hello\n");
    symlink("app/main.rs", root.join("entry")).unwrap();
    dir
}

#[test]
fn content_hash_ignores_mtimes() {
    let dir = sample_tree();
    let root = dir.path();
    let before = hash_tree(root);
    let past = SystemTime::now() - Duration::from_secs(86_400 * 30);
    for rel in ["app/main.rs", "README"] {
        let file = fs::OpenOptions::new().write(true).open(root.join(rel)).unwrap();
        file.set_modified(past).unwrap();
    }
    // Rewriting identical bytes bumps the mtime of the file and its directory.
    fs::write(root.join("app/data.bin"), "0123456789").unwrap();
    assert_eq!(hash_tree(root), before);
}

#[test]
fn content_hash_changes_with_what_the_layer_holds() {
    let dir = sample_tree();
    let root = dir.path();
    let base = hash_tree(root);
    let mode = |rel: &str| fs::metadata(root.join(rel)).unwrap().permissions();
    let (readme_mode, app_mode) = (mode("README"), mode("app"));

    // One byte of content.
    fs::write(root.join("app/data.bin"), "0123456780").unwrap();
    let changed = hash_tree(root);
    assert_ne!(changed, base);
    fs::write(root.join("app/data.bin"), "0123456789").unwrap();
    assert_eq!(hash_tree(root), base);

    // Mode bits, including setuid.
    fs::set_permissions(root.join("README"), fs::Permissions::from_mode(0o755)).unwrap();
    assert_ne!(hash_tree(root), base);
    fs::set_permissions(root.join("README"), fs::Permissions::from_mode(0o4644)).unwrap();
    assert_ne!(hash_tree(root), base);
    fs::set_permissions(root.join("README"), readme_mode).unwrap();
    assert_eq!(hash_tree(root), base);
    fs::set_permissions(root.join("app"), fs::Permissions::from_mode(0o700)).unwrap();
    assert_ne!(hash_tree(root), base);
    fs::set_permissions(root.join("app"), app_mode).unwrap();
    assert_eq!(hash_tree(root), base);

    // A rename with the same content.
    fs::rename(root.join("README"), root.join("README.txt")).unwrap();
    assert_ne!(hash_tree(root), base);
    fs::rename(root.join("README.txt"), root.join("README")).unwrap();

    // A symlink retargeted (never followed: the target's content is not what counts).
    fs::remove_file(root.join("entry")).unwrap();
    symlink("app/data.bin", root.join("entry")).unwrap();
    assert_ne!(hash_tree(root), base);
    fs::remove_file(root.join("entry")).unwrap();
    symlink("app/main.rs", root.join("entry")).unwrap();

    // An empty directory is structure too.
    fs::create_dir(root.join("app/empty")).unwrap();
    assert_ne!(hash_tree(root), base);
    fs::remove_dir(root.join("app/empty")).unwrap();

    // Everything restored: the original hash again.
    assert_eq!(hash_tree(root), base);
}

#[test]
fn content_hash_selects_paths() {
    let dir = sample_tree();
    let root = dir.path();
    let only_app = content_hash(root, &paths(&["app"])).unwrap();
    // Changing something outside the selection does not matter.
    fs::write(root.join("README"), "changed\n").unwrap();
    assert_eq!(content_hash(root, &paths(&["app"])).unwrap(), only_app);
    // Order and duplicates in the selection do not matter.
    let a = content_hash(root, &paths(&["README", "app", "app/main.rs"])).unwrap();
    let b = content_hash(root, &paths(&["app/main.rs", "./app", "README"])).unwrap();
    assert_eq!(a, b);
    // The same bytes under another name are another layer.
    assert_ne!(
        content_hash(root, &paths(&["app/main.rs"])).unwrap(),
        content_hash(root, &paths(&["README"])).unwrap()
    );
}

#[test]
fn content_hash_streams_large_files() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mut data = vec![7u8; 12 * 1024 * 1024 + 3];
    fs::write(root.join("big"), &data).unwrap();
    let before = content_hash(root, &paths(&["big"])).unwrap();
    *data.last_mut().unwrap() = 8;
    fs::write(root.join("big"), &data).unwrap();
    assert_ne!(content_hash(root, &paths(&["big"])).unwrap(), before);
}

#[test]
fn content_hash_refuses_paths_leaving_the_root() {
    let dir = sample_tree();
    let root = dir.path();
    assert_eq!(
        content_hash(root, &paths(&["../x"])).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    assert_eq!(
        content_hash(root, &paths(&["/etc/passwd"])).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    symlink("/etc", root.join("etc")).unwrap();
    assert_eq!(
        content_hash(root, &paths(&["etc/passwd"])).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    assert_eq!(
        content_hash(root, &paths(&["missing"])).unwrap_err().kind(),
        ErrorKind::NotFound
    );
}

// --- COPY source globs --------------------------------------------------------------------------

fn glob_tree() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for rel in [
        "a.txt",
        "b.txt",
        "c.md",
        "dir/x.txt",
        "dir/sub/y.txt",
        "d1r/f1",
        "dar/f2",
        "star*",
    ] {
        write(root, rel, rel);
    }
    symlink("dir", root.join("linkdir")).unwrap();
    symlink("/", root.join("escape")).unwrap();
    dir
}

#[test]
fn glob_wildcards() {
    let dir = glob_tree();
    let root = dir.path();
    assert_eq!(glob(root, "*.txt").unwrap(), paths(&["a.txt", "b.txt"]));
    assert_eq!(glob(root, "dir/*").unwrap(), paths(&["dir/sub", "dir/x.txt"]));
    assert_eq!(glob(root, "d?r/f[0-9]").unwrap(), paths(&["d1r/f1", "dar/f2"]));
    assert_eq!(glob(root, "*/*/y.txt").unwrap(), paths(&["dir/sub/y.txt"]));
    assert_eq!(glob(root, "/*.md").unwrap(), paths(&["c.md"]));
    // A matching directory is returned whole; symlinks match but are not entered.
    assert_eq!(glob(root, "d*").unwrap(), paths(&["d1r", "dar", "dir"]));
    assert_eq!(glob(root, "*dir").unwrap(), paths(&["dir", "linkdir"]));
    // An escaped star is literal within a wildcard pattern.
    assert_eq!(glob(root, "st?r\\*").unwrap(), paths(&["star*"]));
    // A symlinked directory before the wildcard is resolved inside the context.
    assert_eq!(glob(root, "linkdir/*.txt").unwrap(), paths(&["dir/x.txt"]));
}

#[test]
fn glob_literals() {
    let dir = glob_tree();
    let root = dir.path();
    assert_eq!(glob(root, "a.txt").unwrap(), paths(&["a.txt"]));
    assert_eq!(glob(root, "./dir/x.txt").unwrap(), paths(&["dir/x.txt"]));
    assert_eq!(glob(root, "/a.txt").unwrap(), paths(&["a.txt"]));
    assert_eq!(
        glob(root, "../../a.txt").unwrap(),
        paths(&["a.txt"]),
        "`..` stops at the context root"
    );
    assert_eq!(glob(root, ".").unwrap(), paths(&["."]));
    assert_eq!(glob(root, "linkdir/x.txt").unwrap(), paths(&["dir/x.txt"]));
    // The last component is returned as is, even a symlink.
    assert_eq!(glob(root, "linkdir").unwrap(), paths(&["linkdir"]));
}

#[test]
fn glob_errors() {
    let dir = glob_tree();
    let root = dir.path();
    let err = glob(root, "missing.txt").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert_eq!(err.to_string(), "lstat missing.txt: no such file or directory");

    let err = glob(root, "*.nope").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert_eq!(err.to_string(), "no source files were specified");
    assert_eq!(
        glob(root, "*/y.txt").unwrap_err().kind(),
        ErrorKind::NotFound,
        "* never crosses a /"
    );
    assert_eq!(glob(root, "nodir/*").unwrap_err().kind(), ErrorKind::NotFound);

    assert_eq!(glob(root, "[a").unwrap_err().kind(), ErrorKind::InvalidInput);

    // An absolute symlink points back into the context, never out of it.
    let err = glob(root, "escape/etc/passwd").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert_eq!(
        resolve_in_root(root, "escape/etc/passwd", true).unwrap(),
        PathBuf::from("etc/passwd")
    );
    assert_eq!(
        resolve_in_root(root, "escape/dir/x.txt", false).unwrap(),
        PathBuf::from("dir/x.txt")
    );
}

#[test]
fn glob_results_feed_content_hash() {
    let dir = glob_tree();
    let root = dir.path();
    let sources = glob(root, "*.txt").unwrap();
    let before = content_hash(root, &sources).unwrap();
    fs::write(root.join("b.txt"), "other").unwrap();
    assert_ne!(content_hash(root, &glob(root, "*.txt").unwrap()).unwrap(), before);
}
