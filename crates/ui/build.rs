//! Embeds `ui/dist` (the built UI, committed to git) in the crate: one `include_bytes!` per
//! file, with its content type and an ETag worked out here. Node is not needed to build
//! spanflow; it is needed only to change the UI (`npm run build` in `ui/`, which
//! `scripts/test` runs).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::{env, fs};

fn main() {
    let manifest_dir =
        PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let dist = manifest_dir.join("../../ui/dist");
    // A directory is scanned whole for changes.
    println!("cargo:rerun-if-changed={}", dist.display());

    let mut files = Vec::new();
    if dist.join("index.html").is_file() {
        walk(&dist, &mut files);
    } else {
        println!(
            "cargo:warning=ui/dist/index.html is missing, so the web UI is a placeholder page: \
             run `npm ci && npm run build` in ui/ (scripts/test does)"
        );
    }
    files.sort();

    let mut code = String::from("static ASSETS: &[Asset] = &[\n");
    for file in &files {
        let bytes =
            fs::read(file).unwrap_or_else(|error| panic!("reading {}: {error}", file.display()));
        let relative = file.strip_prefix(&dist).expect("a file under ui/dist");
        let url_path = format!(
            "/{}",
            relative
                .components()
                .map(|part| part.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/")
        );
        let absolute = file.canonicalize().expect("a file that exists");
        writeln!(
            code,
            "    Asset {{ path: {url_path:?}, content_type: {:?}, etag: \"\\\"{:016x}\\\"\", bytes: include_bytes!({:?}) }},",
            content_type(file),
            fnv1a(&bytes),
            absolute.display().to_string(),
        )
        .expect("writing to a string");
    }
    if files.is_empty() {
        code.push_str(
            "    Asset { path: \"/index.html\", content_type: \"text/html; charset=utf-8\", \
             etag: \"\\\"placeholder\\\"\", bytes: PLACEHOLDER.as_bytes() },\n",
        );
    }
    code.push_str("];\n");
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("assets.rs");
    fs::write(&out, code).unwrap_or_else(|error| panic!("writing {}: {error}", out.display()));
}

fn walk(directory: &Path, files: &mut Vec<PathBuf>) {
    let entries = fs::read_dir(directory)
        .unwrap_or_else(|error| panic!("reading {}: {error}", directory.display()));
    for entry in entries {
        let path = entry.expect("a directory entry").path();
        let name = path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.starts_with('.') {
            continue;
        }
        if path.is_dir() {
            walk(&path, files);
        } else {
            println!("cargo:rerun-if-changed={}", path.display());
            files.push(path);
        }
    }
}

fn content_type(path: &Path) -> &'static str {
    match path
        .extension()
        .and_then(|extension| extension.to_str())
        .unwrap_or("")
    {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "json" | "map" => "application/json",
        "woff2" => "font/woff2",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// FNV-1a, 64 bits: an ETag that changes when the file does.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}
