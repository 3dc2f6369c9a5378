//! Starts the shards, the control thread and the cluster watcher, then waits for SIGINT or
//! SIGTERM and drains; SIGHUP reloads the TLS certificate. `kaos hash-password USER` instead
//! prints `--client-users` lines for a password read from stdin.

use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches, Parser};
use glommio::{ExecutorJoinHandle, LocalExecutorBuilder, Placement};

use kaos::config::Config;
use kaos::sasl::login::Credentials;
use kaos::sasl::scram::MIN_ITERATIONS;
use kaos::sasl::users::{ClientUsers, hash_password_lines};
use kaos::sasl::{Mechanism, UnknownMechanism};
use kaos::shared::Shared;
use kaos::startup::{self, Confinement, RingPlan};
use kaos::tls::Tls;
use kaos::{cluster, control, logging, shard};
use tracing::{error, info, warn};

/// No buffers registered for file I/O (the vendored glommio's meaning of 0): kaos does none, and
/// the locked-memory limit they would count against is kept for the shards' rings.
const IO_MEMORY: usize = 0;

/// Points from the proxy's `--help` to the one subcommand, which `Config` does not know.
const HASH_PASSWORD_HINT: &str =
    "To make users for --client-users: `kaos hash-password USER` (see `kaos hash-password --help`).";

fn main() -> ExitCode {
    // A tool beside the proxy rather than a mode of it: dispatched before `Config` parses, so the
    // proxy's flags (and its required --bootstrap-servers) stay out of its way.
    if std::env::args_os().nth(1).is_some_and(|arg| arg == "hash-password") {
        return hash_password(HashPassword::parse_from(std::env::args_os().skip(1)));
    }
    let matches = Config::command().after_help(HASH_PASSWORD_HINT).get_matches();
    let config = Arc::new(Config::from_arg_matches(&matches).unwrap_or_else(|e| e.exit()));
    logging::init(&config.log_level, config.log_format);
    exit_on_panic();
    match run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(why) => {
            error!(error = %why, "kaos stopped");
            ExitCode::FAILURE
        }
    }
}

/// Prints the `--client-users` lines of USER: one SCRAM-SHA-256 and one SCRAM-SHA-512
/// credential, each under a fresh random salt, for the password read from stdin.
///
/// The password is the first line of stdin (its line break removed), never a flag: flags show
/// up in `ps` and shell history. Append the output to the users file, one pair per user, as in
/// `kaos hash-password alice < alice.password >> users`.
///
/// Each line is `<user> <mechanism> <iterations> <salt> <stored_key> <server_key>` (base64),
/// the salted, hashed form of RFC 5802 that Kafka keeps too: the file holds no password. Lines
/// starting with `#` are comments. A user logs in to kaos with SCRAM-SHA-256 or SCRAM-SHA-512
/// against the line of that mechanism, or with PLAIN against either.
#[derive(Debug, Parser)]
#[command(name = "hash-password", bin_name = "kaos hash-password")]
struct HashPassword {
    /// The user to make lines for (no whitespace).
    #[arg(value_name = "USER")]
    user: String,

    /// PBKDF2 iterations, 4096 (Kafka's default and the least its clients accept) to 1000000:
    /// more make a stolen file slower to crack, and every login slower.
    #[arg(long, default_value_t = MIN_ITERATIONS, value_name = "N")]
    iterations: u32,
}

fn hash_password(args: HashPassword) -> ExitCode {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("Password for {} (shown as you type; pipe it in to hide it): ", args.user);
    }
    let mut line = String::new();
    if let Err(why) = stdin.lock().read_line(&mut line) {
        eprintln!("kaos hash-password: cannot read the password from stdin: {why}");
        return ExitCode::FAILURE;
    }
    let password =
        line.strip_suffix('\n').map_or(line.as_str(), |line| line.strip_suffix('\r').unwrap_or(line));
    match hash_password_lines(&args.user, password, args.iterations) {
        Ok(lines) => {
            print!("{lines}");
            ExitCode::SUCCESS
        }
        Err(why) => {
            eprintln!("kaos hash-password: {why}");
            ExitCode::FAILURE
        }
    }
}

/// The exit status of a kaos that panicked (EX_SOFTWARE).
const EXIT_PANICKED: i32 = 70;

/// How long a shard may take to set up io_uring and bind the bootstrap port.
const SHARD_START_TIMEOUT: Duration = Duration::from_secs(10);

/// Crash-only: a panic on any thread (a shard, the control thread, the cluster watcher) would
/// leave kaos half alive, its API answering while no shard serves. Instead it logs one line and
/// the process exits at once, non-zero, so that its supervisor starts it afresh.
fn exit_on_panic() {
    std::panic::set_hook(Box::new(|panic| {
        let thread = std::thread::current();
        let message = panic
            .payload()
            .downcast_ref::<&str>()
            .map(|text| text.to_string())
            .or_else(|| panic.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".into());
        let at = panic.location().map(|at| at.to_string()).unwrap_or_default();
        error!(
            thread = thread.name().unwrap_or("unnamed"),
            at,
            "kaos panicked: {message}; exiting (status {EXIT_PANICKED}) so that its supervisor restarts it"
        );
        std::process::exit(EXIT_PANICKED);
    }));
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

/// As many shards as asked for (one per core by default) with rings as deep as glommio's, unless
/// the locked-memory limit holds fewer: then shallower rings, then fewer shards, said once.
fn plan_rings(config: &Config) -> Result<RingPlan, String> {
    startup::raise_memlock_limit();
    let confinement = Confinement::read();
    let wanted = config.shard_count();
    let plan = startup::plan_rings(wanted, &confinement)?;
    let limit = confinement.memlock_bytes.unwrap_or_default() / 1024;
    if plan.shards < wanted {
        warn!(
            "the locked-memory limit of {limit} KiB holds the io_uring rings of {} shards, not {wanted}: running {}; \
             raise it (docker/podman run --ulimit memlock=-1:-1; on Kubernetes LimitMEMLOCK=infinity in \
             containerd's systemd unit) to use every core",
            plan.shards, plan.shards
        );
    } else if plan.ring_depth < startup::RING_DEPTH {
        info!(
            ring_depth = plan.ring_depth,
            "io_uring rings made smaller to fit the locked-memory limit of {limit} KiB"
        );
    }
    Ok(plan)
}

/// Starts every shard and waits until each listens. A shard that cannot start (io_uring refused,
/// the port taken) fails the whole start with one line that names the cause and the fix.
fn start_shards(
    config: &Arc<Config>,
    shared: &Arc<Shared>,
    rings: RingPlan,
) -> Result<Vec<ExecutorJoinHandle<Result<(), String>>>, String> {
    let mut starting = Vec::with_capacity(rings.shards);
    for id in 0..rings.shards {
        let (config, shared) = (config.clone(), shared.clone());
        let (started, listening) = std::sync::mpsc::sync_channel::<()>(1);
        let builder = LocalExecutorBuilder::new(Placement::Unbound)
            .name(&format!("shard-{id}"))
            .io_memory(IO_MEMORY)
            .ring_depth(rings.ring_depth)
            .spin_before_park(Duration::from_micros(config.spin_us));
        let handle = builder
            .spawn(move || async move {
                let started = move || {
                    let _ = started.send(());
                };
                shard::run(id, config, shared, started).await.map_err(|why| why.to_string())
            })
            .map_err(|e| format!("cannot start shard {id}: {e}"))?;
        starting.push((id, listening, handle));
    }
    let mut executors = Vec::with_capacity(starting.len());
    let mut first_failure = None;
    for (id, listening, handle) in starting {
        match listening.recv_timeout(SHARD_START_TIMEOUT) {
            Ok(()) => executors.push(handle),
            // The shard's thread ended before it listened: its own error says why.
            Err(RecvTimeoutError::Disconnected) => {
                let why = match handle.join() {
                    Ok(Err(listen)) => listen,
                    Ok(Ok(())) => "it stopped before it listened".into(),
                    Err(glommio) => startup::explain(&glommio.into(), &Confinement::read()),
                };
                first_failure.get_or_insert(format!("shard {id} cannot start: {why}"));
            }
            Err(RecvTimeoutError::Timeout) => {
                first_failure
                    .get_or_insert(format!("shard {id} did not start within {SHARD_START_TIMEOUT:?}"));
            }
        }
    }
    match first_failure {
        None => Ok(executors),
        Some(why) => {
            // The shards that did start stop with the process; none serves yet.
            shared.shutting_down.store(true, Ordering::Relaxed);
            Err(why)
        }
    }
}

/// Errors reach here typed and leave as text: the edge of the program.
fn run(config: Arc<Config>) -> Result<(), String> {
    config.validate().map_err(|e| e.to_string())?;
    let rings = plan_rings(&config)?;
    let shards = rings.shards;
    let mut shared = Shared::new(shards);
    shared.tls = Tls::from_config(&config).map_err(|e| e.to_string())?;
    if let (Some(mechanism), Some(username)) =
        (&config.upstream_sasl_mechanism, &config.upstream_sasl_username)
    {
        let mechanism: Mechanism = mechanism.parse().map_err(|e: UnknownMechanism| e.to_string())?;
        let password_file = config.upstream_sasl_password_file.as_deref();
        let credentials = Credentials::load(mechanism, username, password_file).map_err(|e| e.to_string())?;
        info!(user = %username, mechanism = mechanism.name(), "kaos logs in to every broker connection itself");
        shared.upstream_sasl = Some(credentials);
    }
    if let Some(path) = &config.client_users {
        let users = ClientUsers::load(path).map_err(|e| e.to_string())?;
        info!(users = users.len(), file = %path.display(), "clients must log in to kaos as users of the file");
        shared.client_users = Some(users);
    }
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

    // The shards first: the admin API (and its /health) comes up only once every shard serves,
    // so a kaos that cannot run io_uring exits before anything reports it healthy.
    let executors = start_shards(&config, &shared, rings)?;
    let control = control::spawn(&config, shared.clone()).map_err(|e| e.to_string())?;
    let watcher = cluster::spawn_watcher(config.bootstrap_servers.clone(), shared.clone())
        .map_err(|e| e.to_string())?;
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
    info!("shutdown complete");
    Ok(())
}
