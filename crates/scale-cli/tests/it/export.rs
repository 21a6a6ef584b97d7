//! `scale fn export`

use scale_func::{Language, ScaleFunc};

use crate::{arg, fixture, scale, scale_in, temp_dir};

/// A small valid module, by hand: one memory of one page and a function
/// `scale_abi_version: () -> i32` returning 1.
fn tiny_module() -> Vec<u8> {
    let mut wasm = scale_func::WASM_HEADER.to_vec();
    let mut section = |id: u8, body: &[u8]| {
        wasm.push(id);
        wasm.push(u8::try_from(body.len()).unwrap());
        wasm.extend_from_slice(body);
    };
    section(1, &[1, 0x60, 0, 1, 0x7f]); // types: () -> i32
    section(3, &[1, 0]); // functions: one, of type 0
    section(5, &[1, 0, 1]); // memories: min 1 page, no maximum
    let mut exports = vec![2, 6];
    exports.extend_from_slice(b"memory");
    exports.extend_from_slice(&[2, 0, 17]);
    exports.extend_from_slice(b"scale_abi_version");
    exports.extend_from_slice(&[0, 0]);
    section(7, &exports);
    section(10, &[1, 4, 0, 0x41, 1, 0x0b]); // code: i32.const 1, end
    wasm
}

#[test]
fn export_packs_a_hand_written_module_that_inspect_lists() {
    let dir = temp_dir("export_packs_a_hand_written_module_that_inspect_lists");
    let wasm = dir.join("tiny.wasm");
    std::fs::write(&wasm, tiny_module()).unwrap();
    let output = dir.join("out.scale");
    let out = scale(["fn", "export", arg(&wasm), "--name", "tiny", "--tag", "v1", "-o", arg(&output)]);
    let out = out.expect_success();
    assert!(out.stderr.starts_with(&format!("wrote {} (", output.display())), "{}", out.stderr);
    assert!(out.stderr.contains("warning: the module does not export resize, run,"), "{}", out.stderr);

    let func = ScaleFunc::decode(&std::fs::read(&output).unwrap()).unwrap();
    assert_eq!((func.name(), func.tag(), func.language()), ("tiny", "v1", Language::Rust));
    assert_eq!(func.function(), tiny_module());
    assert_eq!(func.signature().to_string(), "http@v0.1.0");

    let listing = scale(["fn", "inspect", arg(&output)]).expect_success().stdout_str();
    assert!(listing.contains("\nexports (2):\n"), "{listing}");
    assert!(listing.contains("  memory             memory, 1 pages (64.0 KiB), no maximum\n"), "{listing}");
    assert!(listing.contains("  scale_abi_version  func () -> i32\n"), "{listing}");
    assert!(listing.contains("\nimports (0):\n"), "{listing}");
}

#[test]
fn export_of_a_fixture_module_runs() {
    let dir = temp_dir("export_of_a_fixture_module_runs");
    let original = ScaleFunc::decode(&std::fs::read(fixture("go", "http-handler")).unwrap()).unwrap();
    let wasm = dir.join("handler.wasm");
    std::fs::write(&wasm, original.function()).unwrap();
    // Without --lang, a module built by standard Go is recorded as Go; the
    // output lands in the current directory as <name>.scale.
    let out = scale_in(&dir, ["fn", "export", "handler.wasm", "--name", "handler"]).expect_success();
    assert!(!out.stderr.contains("warning"), "{}", out.stderr);
    let packed = dir.join("handler.scale");
    let func = ScaleFunc::decode(&std::fs::read(&packed).unwrap()).unwrap();
    assert_eq!((func.name(), func.tag(), func.language()), ("handler", "latest", Language::Go));
    assert_eq!(func.checksum(), original.checksum());
    let out = scale(["run", arg(&packed)]).expect_success();
    assert_eq!(out.stdout_str(), "HTTP/1.1 200 OK\n\n-modified\n");
}

#[test]
fn export_refuses_bytes_that_are_not_a_valid_module() {
    let dir = temp_dir("export_refuses_bytes_that_are_not_a_valid_module");
    let wasm = dir.join("broken.wasm");
    let mut bytes = tiny_module();
    bytes.truncate(bytes.len() - 1);
    std::fs::write(&wasm, bytes).unwrap();
    let output = dir.join("broken.scale");
    let out = scale(["fn", "export", arg(&wasm), "--name", "broken", "-o", arg(&output)]);
    out.expect_failure("is not a valid WebAssembly module");
    assert!(!output.exists());

    std::fs::write(&wasm, b"hello").unwrap();
    scale(["fn", "export", arg(&wasm), "--name", "broken"]).expect_failure("not a valid WebAssembly module");
}

#[test]
fn export_refuses_a_scale_file() {
    let scale_file = fixture("rust", "status");
    scale(["fn", "export", arg(&scale_file), "--name", "again"]).expect_failure("is already a .scale file");
}

#[test]
fn export_refuses_a_bad_name() {
    let dir = temp_dir("export_refuses_a_bad_name");
    let wasm = dir.join("tiny.wasm");
    std::fs::write(&wasm, tiny_module()).unwrap();
    scale(["fn", "export", arg(&wasm), "--name", "my_function"]).expect_failure("invalid function name");
}
