pub mod bench;
pub mod chat;
pub mod convert;
pub mod data;
pub mod eval;
pub mod hub;
pub mod info;
pub mod license;
pub mod logits;
pub mod merge;
pub mod plot;
pub mod run;
pub mod sampling;
pub mod serve;
pub mod tokenize;
pub mod tune;

/// Threads herd uses by default: the CPUs this process may run on (CPU affinity and cgroup
/// quotas included, as `std::thread::available_parallelism` reads them).
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Resident memory of this process in bytes (Linux), for the memory figures herd prints.
pub fn resident_bytes() -> Option<u64> {
    proc_bytes("/proc/self/status", "VmRSS:")
}

/// Memory this process may still use (Linux `MemAvailable`), in bytes.
pub fn available_memory() -> Option<u64> {
    proc_bytes("/proc/meminfo", "MemAvailable:")
}

/// A `KEY: N kB` line of a /proc file, in bytes.
fn proc_bytes(file: &str, key: &str) -> Option<u64> {
    let s = std::fs::read_to_string(file).ok()?;
    let line = s.lines().find(|l| l.starts_with(key))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.2} {}", UNITS[u])
    }
}

pub fn human_count(n: usize) -> String {
    match n {
        n if n >= 1_000_000_000 => format!("{:.2} B", n as f64 / 1e9),
        n if n >= 1_000_000 => format!("{:.2} M", n as f64 / 1e6),
        n if n >= 1_000 => format!("{:.2} K", n as f64 / 1e3),
        n => n.to_string(),
    }
}

/// A model argument as the user wrote it: a local path, or a name pulled with `herd pull`.
pub fn model_path(arg: &str) -> anyhow::Result<std::path::PathBuf> {
    let p = std::path::PathBuf::from(arg);
    if p.exists() || !herd_hub::ModelRef::looks_like(arg) {
        return Ok(p);
    }
    let r = herd_hub::ModelRef::parse(arg)?;
    Ok(herd_hub::Cache::from_env().resolve(&r)?)
}

pub fn open_model(arg: &str) -> anyhow::Result<herd_model::Model> {
    Ok(herd_model::Model::open(model_path(arg)?)?)
}

/// Help of every command's `--cache-type`.
pub const CACHE_TYPE_HELP: &str = "Element type of the KV cache: f16 (half the memory, as \
llama.cpp's default; logits move by about 1e-3) or f32 (keys and values exactly as computed)";

/// An engine over `model` with `threads` threads, caches of `cache` and, when given, the
/// PEFT adapter in the folder `lora` applied at run time beside the unchanged base weights.
pub fn engine(
    model: &herd_model::Model,
    threads: usize,
    cache: herd_model::engine::CacheType,
    lora: Option<&std::path::Path>,
) -> anyhow::Result<herd_model::engine::Engine> {
    let mut e = herd_model::engine::Engine::new(model, threads)?;
    e.set_cache_type(cache);
    if let Some(dir) = lora {
        let adapter = herd_train::adapter::Adapter::read(dir)?;
        let layers = herd_train::merge::engine_lora(model, &adapter).map_err(|e| {
            anyhow::anyhow!(
                "the adapter in {} does not fit this model: {e}",
                dir.display()
            )
        })?;
        e.set_lora(layers)?;
    }
    Ok(e)
}
