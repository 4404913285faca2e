//! Links libmoert and generates the ABI probe that the layout test compares against.
//!
//! Environment:
//! - `MOERT_LIB_DIR`: folder holding libmoert.so (a CMake build dir or an installed
//!   `<prefix>/lib`); default `<repo>/build-test`, the build dir of `tools/test.sh`.
//! - `MOERT_INCLUDE_DIR`: folder holding moert.h; default `<repo>/abi`.
//! - `CC`: the C compiler for the probe; default `cc`.
//!
//! The probe: this script reads moert.h, lists every struct field (function-pointer
//! members included) and every enumeration constant, writes a C program that prints
//! sizeof/alignof/offsetof and the values as the C compiler sees them, compiles it with
//! the system C compiler (std::process::Command, no crates), runs it, and writes
//! `abi_probe.rs` into OUT_DIR: assertions that the Rust declarations in src/lib.rs give
//! the same numbers.  tests/abi_layout.rs includes it, so a field or constant present in
//! the header but missing in Rust fails to compile, and a mismatch fails the test.
use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let repo = manifest.join("../../..");
    let lib_dir = env::var_os("MOERT_LIB_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo.join("build-test"));
    let inc_dir = env::var_os("MOERT_INCLUDE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo.join("abi"));
    println!("cargo:rerun-if-env-changed=MOERT_LIB_DIR");
    println!("cargo:rerun-if-env-changed=MOERT_INCLUDE_DIR");
    println!("cargo:rerun-if-env-changed=CC");
    let header = inc_dir.join("moert.h");
    println!("cargo:rerun-if-changed={}", header.display());

    let lib_dir = lib_dir.canonicalize().unwrap_or_else(|_| {
        panic!(
            "MOERT_LIB_DIR {} does not exist: build moert first (cmake -S . -B build-test && \
             cmake --build build-test) or set MOERT_LIB_DIR to the folder with libmoert.so",
            lib_dir.display()
        )
    });
    if !lib_dir.join("libmoert.so").exists() {
        panic!("no libmoert.so in {} (MOERT_LIB_DIR)", lib_dir.display());
    }
    println!("cargo:rustc-link-search=native={}", lib_dir.display());
    println!("cargo:rustc-link-lib=dylib=moert");
    // This crate's own tests find the library without LD_LIBRARY_PATH; dependents get the
    // folder as DEP_MOERT_LIB_DIR and do the same (see moert/build.rs).
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib_dir.display());
    println!("cargo:lib_dir={}", lib_dir.display());
    println!("cargo:include={}", inc_dir.display());
    println!("cargo:rustc-env=MOERT_HEADER={}", header.display());

    let text = fs::read_to_string(&header)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", header.display()));
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    write_probe(&text, &inc_dir, &out);
}

/// Strips /* */ and // comments.
fn strip_comments(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'/' && i + 1 < b.len() && b[i + 1] == b'*' {
            i += 2;
            while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                i += 1;
            }
            i += 2;
            out.push(' ');
        } else if b[i] == b'/' && i + 1 < b.len() && b[i + 1] == b'/' {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// (struct name, field names) for every `typedef struct NAME { ... } NAME;`.
fn structs(src: &str) -> Vec<(String, Vec<String>)> {
    let mut found = Vec::new();
    let mut rest = src;
    while let Some(at) = rest.find("typedef struct ") {
        rest = &rest[at + "typedef struct ".len()..];
        let name: String = rest.chars().take_while(|&c| is_ident(c)).collect();
        let after = rest[name.len()..].trim_start();
        if !after.starts_with('{') {
            continue; // an opaque handle
        }
        let body_start = rest.find('{').unwrap() + 1;
        let body_end = body_start + rest[body_start..].find('}').unwrap();
        let mut fields = Vec::new();
        for decl in rest[body_start..body_end].split(';') {
            let decl = decl.trim();
            if decl.is_empty() {
                continue;
            }
            // `ret (*name)(args)` or `type *name`
            let field = if let Some(p) = decl.find("(*") {
                decl[p + 2..].chars().take_while(|&c| is_ident(c)).collect()
            } else {
                let rev: String = decl.chars().rev().take_while(|&c| is_ident(c)).collect();
                rev.chars().rev().collect()
            };
            fields.push(field);
        }
        found.push((name, fields));
        rest = &rest[body_end..];
    }
    found
}

/// Every enumeration constant: `MOERT_X = n` inside `enum {` and `X(MOERT_Y, n, ...)`.
fn constants(src: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = src;
    while let Some(at) = rest.find("enum {") {
        let body = &rest[at + 6..];
        let end = body.find('}').unwrap();
        for item in body[..end].split(',') {
            let item = item.trim();
            if let Some(eq) = item.find('=') {
                let name = item[..eq].trim();
                if name.starts_with("MOERT_") && name.chars().all(is_ident) {
                    names.push(name.to_string());
                }
            }
        }
        rest = &body[end..];
    }
    for line in src.lines() {
        let line = line.trim();
        if let Some(inner) = line.strip_prefix("X(") {
            let name: String = inner.chars().take_while(|&c| is_ident(c)).collect();
            if name.starts_with("MOERT_") {
                names.push(name);
            }
        }
    }
    names
}

fn write_probe(header_text: &str, inc_dir: &Path, out: &Path) {
    let src = strip_comments(header_text);
    let structs = structs(&src);
    let consts = constants(&src);
    assert!(structs.len() >= 8, "found only {} structs in moert.h", structs.len());
    assert!(consts.len() >= 30, "found only {} constants in moert.h", consts.len());

    let mut c = String::from(
        "#include <stdalign.h>\n#include <stddef.h>\n#include <stdio.h>\n#include \"moert.h\"\n\
         int main(void) {\n",
    );
    for (name, fields) in &structs {
        c += &format!(
            "  printf(\"size {name} %zu %zu\\n\", sizeof({name}), alignof({name}));\n"
        );
        for f in fields {
            c += &format!(
                "  printf(\"field {name} {f} %zu %zu\\n\", offsetof({name}, {f}), \
                 sizeof(((const {name} *)0)->{f}));\n"
            );
        }
    }
    for k in &consts {
        c += &format!("  printf(\"const {k} %lld\\n\", (long long){k});\n");
    }
    c += "  return 0;\n}\n";
    let c_path = out.join("abi_probe.c");
    fs::write(&c_path, c).unwrap();
    let exe = out.join("abi_probe");
    let cc = env::var("CC").unwrap_or_else(|_| "cc".to_string());
    let status = Command::new(&cc)
        .arg("-std=c11")
        .arg("-I")
        .arg(inc_dir)
        .arg(&c_path)
        .arg("-o")
        .arg(&exe)
        .status()
        .unwrap_or_else(|e| panic!("cannot run the C compiler {cc}: {e}"));
    assert!(status.success(), "{cc} failed on {}", c_path.display());
    let output = Command::new(&exe).output().expect("running abi_probe");
    assert!(output.status.success(), "abi_probe failed");
    let printed = String::from_utf8(output.stdout).unwrap();

    let mut rs = String::from("// Generated by moert-sys/build.rs from moert.h.\n{\n");
    let (mut n_structs, mut n_fields, mut n_consts) = (0, 0, 0);
    for line in printed.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        match w[0] {
            "size" => {
                n_structs += 1;
                rs += &format!(
                    "assert_eq!((size_of::<{0}>(), align_of::<{0}>()), ({1}, {2}), \
                     \"size/align of {0}\");\n",
                    w[1], w[2], w[3]
                );
            }
            "field" => {
                n_fields += 1;
                rs += &format!(
                    "assert_eq!((offset_of!({0}, {1}), field_size(|s: &{0}| &s.{1})), ({2}, {3}), \
                     \"offset/size of {0}.{1}\");\n",
                    w[1], w[2], w[3], w[4]
                );
            }
            "const" => {
                n_consts += 1;
                rs += &format!("assert_eq!({0} as i64, {1}, \"value of {0}\");\n", w[1], w[2]);
            }
            _ => panic!("abi_probe printed {line}"),
        }
    }
    rs += &format!("checked_counts({n_structs}, {n_fields}, {n_consts});\n}}\n");
    fs::write(out.join("abi_probe.rs"), rs).unwrap();
}
