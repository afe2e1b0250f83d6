//! The committed contract artifacts (`devnet/artifacts`) are exactly what the pinned compiler
//! makes of `devnet/contracts`, and the check notices when they are not.
//!
//! These tests need `devnet/node_modules` (`npm ci --prefix devnet`, which `make test` runs). They
//! fail, rather than skip, when it is missing: a skipped check would let stale artifacts through.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn require_node_modules(devnet: &Path) {
    assert!(
        devnet.join("node_modules/solc").is_dir(),
        "devnet/node_modules is missing: run `npm ci --prefix devnet` (make test does) \
         before this test; it fails instead of skipping so stale artifacts cannot slip through"
    );
}

/// Runs `node compile.js --check` from `devnet`.
fn check(devnet: &Path) -> Output {
    Command::new("node")
        .arg(devnet.join("compile.js"))
        .arg("--check")
        .output()
        .expect("`node` runs (Node.js must be installed for the devnet tooling)")
}

fn describe(output: &Output) -> String {
    format!(
        "exit status {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn committed_artifacts_match_the_contract_sources() {
    let devnet = repo_root().join("devnet");
    require_node_modules(&devnet);
    let output = check(&devnet);
    assert!(
        output.status.success(),
        "devnet/artifacts are stale; run `node devnet/compile.js` and commit them\n{}",
        describe(&output)
    );
}

/// Copies the compile script, the sources and the artifacts into a scratch directory (sharing
/// the installed packages through a symlink), so the check can be run against altered files.
fn scratch_devnet() -> tempfile::TempDir {
    let source = repo_root().join("devnet");
    require_node_modules(&source);
    let scratch = tempfile::tempdir().expect("a temporary directory");
    copy_tree(&source.join("contracts"), &scratch.path().join("contracts"));
    copy_tree(&source.join("artifacts"), &scratch.path().join("artifacts"));
    std::fs::copy(source.join("compile.js"), scratch.path().join("compile.js"))
        .expect("copy compile.js");
    std::os::unix::fs::symlink(
        source.join("node_modules"),
        scratch.path().join("node_modules"),
    )
    .expect("link node_modules");
    scratch
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create directory");
    for entry in std::fs::read_dir(from).expect("read directory") {
        let entry = entry.expect("directory entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy file");
        }
    }
}

#[test]
fn the_check_names_stale_and_missing_artifacts() {
    let scratch = scratch_devnet();
    let artifacts = scratch.path().join("artifacts");

    // A source change the committed artifact does not reflect...
    let manager = scratch.path().join("contracts/StreamLockManagerV2.sol");
    let source = std::fs::read_to_string(&manager).expect("read V2 source");
    std::fs::write(&manager, source.replace("return 2;", "return 3;")).expect("edit V2 source");
    // ...and an artifact that was deleted.
    std::fs::remove_file(artifacts.join("TestToken.json")).expect("remove an artifact");

    let output = check(scratch.path());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    assert!(
        stderr.contains("devnet/artifacts/StreamLockManagerV2.json differs"),
        "{}",
        describe(&output)
    );
    assert!(
        stderr.contains("devnet/artifacts/TestToken.json is missing"),
        "{}",
        describe(&output)
    );
    assert!(
        !stderr.contains("StreamLockManager.json"),
        "an unchanged contract was reported\n{}",
        describe(&output)
    );
}

#[test]
fn compiling_twice_writes_identical_artifacts() {
    let scratch = scratch_devnet();
    let artifacts = scratch.path().join("artifacts");
    std::fs::remove_dir_all(&artifacts).expect("clear artifacts");

    let run = || {
        let output = Command::new("node")
            .arg(scratch.path().join("compile.js"))
            .output()
            .expect("node runs");
        assert!(output.status.success(), "{}", describe(&output));
        let mut files: Vec<(String, String)> = std::fs::read_dir(&artifacts)
            .expect("artifacts written")
            .map(|entry| {
                let path = entry.expect("entry").path();
                let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
                (
                    name.unwrap_or_default(),
                    std::fs::read_to_string(&path).expect("read artifact"),
                )
            })
            .collect();
        files.sort();
        files
    };
    let first = run();
    let second = run();
    assert_eq!(first.len(), 7, "one artifact per deployed contract");
    assert_eq!(first, second);
    for (name, text) in &first {
        assert!(text.ends_with("}\n"), "{name} ends with a newline");
        let json: serde_json::Value = serde_json::from_str(text).expect("artifact is JSON");
        assert!(json["abi"].is_array(), "{name} has an ABI");
        let bytecode = json["bytecode"]["object"].as_str().unwrap_or_default();
        assert!(
            bytecode.starts_with("0x") && bytecode.len() > 2,
            "{name} has creation bytecode"
        );
    }
    // And it is what is committed.
    let committed = repo_root().join("devnet/artifacts");
    for (name, text) in &first {
        let committed_text =
            std::fs::read_to_string(committed.join(name)).expect("committed artifact");
        assert_eq!(
            &committed_text, text,
            "{name} matches the committed artifact"
        );
    }
}
