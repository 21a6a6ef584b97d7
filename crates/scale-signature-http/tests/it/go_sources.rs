//! The Go package embedded for build tools is the whole package.

#![cfg(feature = "go-sources")]

use scale_signature_http::go_sources::{FILES, MODULE_PATH};

#[test]
fn every_go_file_of_the_package_is_embedded() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("go");
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| (name.ends_with(".go") && !name.ends_with("_test.go")) || name == "go.mod")
        .collect();
    on_disk.sort();
    let mut embedded: Vec<String> = FILES.iter().map(|(name, _)| name.to_string()).collect();
    embedded.sort();
    assert_eq!(embedded, on_disk, "update src/go_sources.rs when the Go package gains or loses a file");
}

#[test]
fn the_module_path_matches_go_mod() {
    let go_mod = FILES.iter().find(|(name, _)| *name == "go.mod").unwrap().1;
    assert!(go_mod.lines().any(|line| line.trim() == format!("module {MODULE_PATH}")), "{go_mod}");
}
