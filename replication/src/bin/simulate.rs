//! `simulate --seeds N [--start S] [--nodes K] [--legacy] [--seed X --trace]`: run the
//! deterministic replication simulator over a seed range (or one seed, with its trace).

use std::time::Instant;

use loci_replication::engine::Faults;
use loci_replication::sim::{self, SimConfig};

fn usage() -> ! {
    eprintln!(
        "usage: simulate [--seeds N] [--start S] [--nodes K] [--legacy | --legacy-only quorum-cap|unanchored-send|copy|resync|promotion|removal|dead-marking|stale-fence]\n                [--broken ack-before-quorum|no-takeover|no-fencing]\n                [--seed X [--trace]]"
    );
    std::process::exit(2)
}

fn main() {
    let mut seeds: u64 = 1_000;
    let mut start: u64 = 0;
    let mut one: Option<u64> = None;
    let mut cfg = SimConfig::default();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let num = |args: &mut dyn Iterator<Item = String>| -> u64 {
            args.next().and_then(|v| v.parse().ok()).unwrap_or_else(|| usage())
        };
        match a.as_str() {
            "--seeds" => seeds = num(&mut args),
            "--start" => start = num(&mut args),
            "--seed" => one = Some(num(&mut args)),
            "--nodes" => cfg.nodes = num(&mut args),
            "--trace" => cfg.trace = true,
            "--legacy" => cfg.faults = Faults::legacy(),
            "--legacy-only" => match args.next().as_deref() {
                Some("quorum-cap") => cfg.faults.legacy_quorum_cap = true,
                Some("unanchored-send") => cfg.faults.legacy_unanchored_send = true,
                Some("copy") => cfg.faults.legacy_copy = true,
                Some("resync") => cfg.faults.legacy_resync = true,
                Some("promotion") => cfg.faults.legacy_promotion = true,
                Some("removal") => cfg.faults.legacy_removal = true,
                Some("dead-marking") => cfg.faults.legacy_dead_marking = true,
                Some("stale-fence") => cfg.faults.legacy_stale_fence = true,
                _ => usage(),
            },
            "--broken" => match args.next().as_deref() {
                Some("ack-before-quorum") => cfg.faults.ack_before_quorum = true,
                Some("no-fencing") => cfg.faults.skip_fence_check = true,
                Some("no-takeover") => cfg.faults.skip_takeover = true,
                _ => usage(),
            },
            _ => usage(),
        }
    }
    if let Some(seed) = one {
        let out = sim::run(seed, &cfg);
        for line in &out.trace {
            println!("{line}");
        }
        println!("seed {seed}: trace hash {:016x}, {:?}", out.trace_hash, out.stats);
        for v in &out.violations {
            println!("VIOLATION {:?}: {}", v.kind, v.detail);
        }
        std::process::exit(if out.ok() { 0 } else { 1 });
    }
    let started = Instant::now();
    let mut failed = 0u64;
    let mut steps = 0u64;
    for seed in start..start + seeds {
        let out = sim::run(seed, &cfg);
        steps += out.stats.steps;
        if !out.ok() {
            failed += 1;
            if failed <= 10 {
                let kinds: Vec<_> = out.violations.iter().map(|v| v.kind).collect();
                println!("seed {seed} FAILED {kinds:?}: {}", out.violations[0].detail);
                println!("  replay: cargo run -p loci-replication --bin simulate -- --seed {seed} --trace");
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{seeds} seeds from {start} in {secs:.1} s: {:.0} seeds/s, {:.0} steps/s, {failed} failed",
        seeds as f64 / secs.max(1e-9),
        steps as f64 / secs.max(1e-9)
    );
    std::process::exit(if failed == 0 { 0 } else { 1 });
}
