//! Links the AMR C libraries behind the `transcode` feature.
//!
//! No binding crate exists for opencore-amr / vo-amrwbenc, so
//! `src/transcode/amr_ffi.rs` declares the functions itself and this script
//! tells rustc where they live. pkg-config gives the right `-L` paths on
//! distributions that install outside the default search path; libopus is
//! linked by `libopus_sys` (opus2's dependency) the same way.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    #[cfg(feature = "transcode")]
    transcode::link();
}

#[cfg(feature = "transcode")]
mod transcode {
    /// pkg-config module names of the Debian packages
    /// libopencore-amrnb-dev, libopencore-amrwb-dev and libvo-amrwbenc-dev.
    const LIBS: [(&str, &str); 3] = [
        ("opencore-amrnb", "libopencore-amrnb-dev"),
        ("opencore-amrwb", "libopencore-amrwb-dev"),
        ("vo-amrwbenc", "libvo-amrwbenc-dev"),
    ];

    pub fn link() {
        for (name, package) in LIBS {
            if let Err(e) = pkg_config::Config::new().probe(name) {
                // A build script reports a missing system library by failing
                // the build; say which package to install.
                println!("cargo:warning=pkg-config could not find {name} ({e}); install {package}");
                std::process::exit(1);
            }
        }
    }
}
