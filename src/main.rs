//! Starts the shards, the control thread and the cluster watcher, then waits for SIGINT or
//! SIGTERM and drains; SIGHUP reloads the TLS certificate.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use clap::Parser;
use glommio::{LocalExecutorBuilder, Placement};

use kaos::config::Config;
use kaos::shared::Shared;
use kaos::tls::Tls;
use kaos::{cluster, control, logging, shard};
use tracing::{error, info, warn};

/// glommio registers this much memory for file I/O per shard; kaos does none, and the
/// locked-memory limit is often small (8 MiB), so keep it tiny.
const IO_MEMORY: usize = 128 * 1024;

fn main() -> ExitCode {
    let config = Arc::new(Config::parse());
    logging::init(&config.log_level);
    match run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(why) => {
            error!(error = %why, "kaos stopped");
            ExitCode::FAILURE
        }
    }
}

/// SIGHUP: re-reads the certificate files TLS towards clients is made of. Open connections keep
/// theirs; a file that no longer reads leaves the old certificate in use.
fn reload_tls(shared: &Shared) {
    match &shared.tls.clients {
        None => info!("SIGHUP: no --tls-cert to reload"),
        Some(tls) => match tls.reload() {
            Ok(()) => info!("SIGHUP: TLS certificate reloaded; new connections use it"),
            Err(why) => {
                error!(error = %why, "SIGHUP: TLS reload failed; the previous certificate stays in use")
            }
        },
    }
}

/// Errors reach here typed and leave as text: the edge of the program.
fn run(config: Arc<Config>) -> Result<(), String> {
    config.validate().map_err(|e| e.to_string())?;
    let shards = config.shard_count();
    let mut shared = Shared::new(shards);
    shared.tls = Tls::from_config(&config).map_err(|e| e.to_string())?;
    if config.upstream_tls_insecure {
        warn!(
            "--upstream-tls-insecure: broker certificates are NOT verified; anyone on the path can read and change this traffic"
        );
    }
    let shared = Arc::new(shared);
    let signalled = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, signalled.clone()).map_err(|e| e.to_string())?;
    }
    let reload = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, reload.clone()).map_err(|e| e.to_string())?;

    let control = control::spawn(&config, shared.clone()).map_err(|e| e.to_string())?;
    let watcher = cluster::spawn_watcher(config.bootstrap_servers.clone(), shared.clone())
        .map_err(|e| e.to_string())?;

    let running = Arc::new(AtomicUsize::new(shards));
    let failed = Arc::new(AtomicBool::new(false));
    let mut executors = Vec::with_capacity(shards);
    for id in 0..shards {
        let (config, shared, running, failed) =
            (config.clone(), shared.clone(), running.clone(), failed.clone());
        let builder =
            LocalExecutorBuilder::new(Placement::Unbound).name(&format!("shard-{id}")).io_memory(IO_MEMORY);
        let handle = builder
            .spawn(move || async move {
                if let Err(why) = shard::run(id, config, shared.clone()).await {
                    error!(shard = id, error = %why, "shard stopped");
                    failed.store(true, Ordering::Relaxed);
                    shared.shutting_down.store(true, Ordering::Relaxed);
                }
                running.fetch_sub(1, Ordering::Relaxed);
            })
            .map_err(|e| format!("cannot start shard {id}: {e}"))?;
        executors.push(handle);
    }
    info!(
        bootstrap = %config.bootstrap_servers.join(","),
        listen = %format!("{}:{}", config.bind_host, config.port_start),
        shards,
        admin = %format!("http://{}", config.admin_addr),
        "kaos is proxying"
    );

    while !signalled.load(Ordering::Relaxed) && !shared.shutting_down.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
        if reload.swap(false, Ordering::Relaxed) {
            reload_tls(&shared);
        }
    }
    if signalled.load(Ordering::Relaxed) {
        info!(timeout = ?config.shutdown_timeout, "shutting down: no new connections; draining requests in flight");
    }
    shared.shutting_down.store(true, Ordering::Relaxed);
    for handle in executors {
        let _ = handle.join();
    }
    let _ = control.join();
    let _ = watcher.join();
    if failed.load(Ordering::Relaxed) {
        return Err("a shard failed; see above".into());
    }
    info!("shutdown complete");
    Ok(())
}
