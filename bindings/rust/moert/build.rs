//! Lets this crate's tests and examples find libmoert at run time without LD_LIBRARY_PATH:
//! moert-sys (links = "moert") passes the library folder as DEP_MOERT_LIB_DIR.
fn main() {
    if let Ok(dir) = std::env::var("DEP_MOERT_LIB_DIR") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
}
