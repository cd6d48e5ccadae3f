//! Fetches uPlot, the dashboards' charting library, from the npm registry at a pinned version
//! and checks the tarball's SHA-512 (npm's `dist.integrity`) before the crate embeds it: the
//! pages get their scripts from the binary, never from a CDN.
//!
//! The tarball is kept in `~/.cache/hashpool/` (or `$XDG_CACHE_HOME/hashpool/`), so a clean
//! build does not download it again. Offline, point `HASHPOOL_UPLOT_TGZ` at a copy.

use std::{
    env, fs,
    path::{Path, PathBuf},
    process::Command,
};

use sha2::{Digest, Sha512};

const VERSION: &str = "1.6.32";
const SHA512: &str = "2883159c6ebccefbb95d751b0b82d010f9e1c0ec41b8bc96d401eda66e882935\
                      c89a46cb824332fa369b8cb8122cc6ac36e186cd09bf7a9ded3a4c93c6989023";
/// What the crate embeds, as they sit in the tarball.
const FILES: [&str; 3] = [
    "package/dist/uPlot.iife.min.js",
    "package/dist/uPlot.min.css",
    "package/LICENSE",
];

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=HASHPOOL_UPLOT_TGZ");
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    if FILES.iter().all(|f| out.join(f).is_file()) {
        return;
    }
    let tarball = match env::var_os("HASHPOOL_UPLOT_TGZ") {
        Some(path) => PathBuf::from(path),
        None => cached_or_downloaded(&out),
    };
    let bytes = fs::read(&tarball)
        .unwrap_or_else(|e| fail(&format!("cannot read {}: {e}", tarball.display())));
    let digest = hex(&Sha512::digest(&bytes));
    if digest != SHA512 {
        fail(&format!(
            "{} is not uplot {VERSION}: SHA-512 {digest}, expected {SHA512}",
            tarball.display()
        ));
    }
    let status = Command::new("tar")
        .arg("xzf")
        .arg(&tarball)
        .arg("-C")
        .arg(&out)
        .args(FILES)
        .status()
        .unwrap_or_else(|e| fail(&format!("cannot run tar: {e}")));
    if !status.success() {
        fail(&format!("tar could not unpack {}", tarball.display()));
    }
}

/// The tarball in the user's cache (`out` when there is no home), downloaded if missing.
fn cached_or_downloaded(out: &Path) -> PathBuf {
    let cache = env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))
        .unwrap_or_else(|| out.to_path_buf())
        .join("hashpool");
    let path = cache.join(format!("uplot-{VERSION}.tgz"));
    if fs::read(&path).is_ok_and(|b| hex(&Sha512::digest(&b)) == SHA512) {
        return path;
    }
    fs::create_dir_all(&cache)
        .unwrap_or_else(|e| fail(&format!("cannot create {}: {e}", cache.display())));
    let url = format!("https://registry.npmjs.org/uplot/-/uplot-{VERSION}.tgz");
    let partial = path.with_extension("tgz.part");
    let status = Command::new("curl")
        .args(["-fsSL", "--retry", "3", "-o"])
        .arg(&partial)
        .arg(&url)
        .status()
        .unwrap_or_else(|e| {
            fail(&format!(
                "cannot run curl (scripts/setup.sh installs it): {e}"
            ))
        });
    if !status.success() {
        fail(&format!("could not download {url}"));
    }
    fs::rename(&partial, &path)
        .unwrap_or_else(|e| fail(&format!("cannot move the download into place: {e}")));
    path
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn fail(why: &str) -> ! {
    panic!(
        "hashpool-web needs uPlot {VERSION} from the npm registry: {why}. Offline, set \
         HASHPOOL_UPLOT_TGZ to a copy of uplot-{VERSION}.tgz."
    )
}
