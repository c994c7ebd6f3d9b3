//! Embeds every scenario file of `scenarios/` (the built-in suite) into the crate.

use std::fmt::Write;
use std::path::Path;

fn main() {
    let directory = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios");
    println!("cargo:rerun-if-changed={}", directory.display());
    let mut paths: Vec<_> = std::fs::read_dir(&directory)
        .expect("scenarios/ exists")
        .map(|entry| entry.expect("readable entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "mmc"))
        .collect();
    paths.sort();
    let mut code = String::from(
        "/// Built-in scenarios: (file name, text), sorted by file name.\npub const BUILTIN: &[(&str, &str)] = &[\n",
    );
    for path in paths {
        println!("cargo:rerun-if-changed={}", path.display());
        let name = path.file_name().expect("a file").to_string_lossy().to_string();
        writeln!(
            code,
            "    ({name:?}, include_str!({:?})),",
            path.canonicalize().expect("exists").display().to_string()
        )
        .expect("string write");
    }
    code.push_str("];\n");
    let out = Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("builtin.rs");
    std::fs::write(out, code).expect("OUT_DIR is writable");
}
