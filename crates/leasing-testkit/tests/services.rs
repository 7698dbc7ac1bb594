//! The private-server fixtures: a real redis-server (skipped when it is not installed),
//! Azurite and the Cosmos emulator stood in for by a small node listener, and the start
//! failures every fixture shares (a process that exits, one that never listens, a missing
//! program, a taken port), each with what was waited for and the end of the log.

use leasing_testkit::services::{
    form_cluster, free_port, required, service_env, skip_if_missing, start_timeout, AzuriteServer,
    CosmosEmulator, RedisServer, Service, ServiceError, COSMOS_EMULATOR_KEY, START_TIMEOUT_VAR,
};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A fresh folder for one test.
fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "leasing-services-test-{test}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// A node script standing in for a server: it prints its arguments, listens on the port
/// after `--blobPort` or `--port`, and ignores SIGTERM when `FAKE_IGNORE_TERM` is set.
fn fake_server(dir: &Path) -> PathBuf {
    let path = dir.join("fake-server.js");
    std::fs::write(
        &path,
        r"#!/usr/bin/env node
const a = process.argv;
const i = a.includes('--blobPort') ? a.indexOf('--blobPort') : a.indexOf('--port');
console.log('args ' + a.slice(2).join(' '));
if (process.env.FAKE_IGNORE_TERM) process.on('SIGTERM', () => console.log('ignored TERM'));
require('net').createServer((s) => s.end('hello\n')).listen(+a[i + 1], '127.0.0.1');
",
    )
    .expect("write the fake server");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    path
}

fn loopback(port: u16) -> SocketAddr {
    ([127, 0, 0, 1], port).into()
}

fn answers(addr: SocketAddr) -> bool {
    TcpStream::connect(addr).is_ok()
}

/// Sends one inline Redis command and returns the first reply line.
fn redis(addr: SocketAddr, command: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    s.write_all(format!("{command}\r\n").as_bytes())
        .expect("send");
    let mut buf = [0u8; 512];
    let n = s.read(&mut buf).expect("reply");
    String::from_utf8_lossy(&buf[..n])
        .lines()
        .next()
        .unwrap_or("")
        .to_owned()
}

fn sh(script: &str) -> Command {
    let mut c = Command::new("sh");
    c.args(["-c", script]);
    c
}

#[test]
fn a_free_port_can_be_bound() {
    let port = free_port();
    TcpListener::bind(loopback(port)).expect("the free port binds");
}

#[test]
fn a_set_service_variable_is_returned() {
    assert!(service_env("PATH").is_some());
    assert_eq!(
        required(),
        std::env::var("LEASING_REQUIRE_SERVICES").as_deref() == Ok("1")
    );
    if std::env::var_os(START_TIMEOUT_VAR).is_none() {
        assert_eq!(start_timeout(), Ok(Duration::from_secs(180)));
    }
    assert_eq!(skip_if_missing(Ok::<_, ServiceError>(7)), Some(7));
}

#[test]
fn a_redis_server_starts_pauses_restarts_without_its_keys_and_stops() {
    if !RedisServer::installed() {
        return;
    }
    let Some(mut server) = skip_if_missing(RedisServer::start()) else {
        return;
    };
    let addr = server.addr();
    assert_eq!(server.url(), format!("redis://{addr}"));
    assert_eq!(server.port(), addr.port());
    assert_eq!(redis(addr, "SET k v"), "+OK");
    assert_eq!(server.exited(), None);
    server.signal("STOP");
    server.signal("SIGCONT");
    assert_eq!(redis(addr, "GET k"), "$1");
    server.restart().expect("restart");
    assert_eq!(
        redis(addr, "GET k"),
        "$-1",
        "no persistence: the key is gone"
    );
    assert!(server.log_path().exists());
    server.stop();
    assert!(!answers(addr));
    server.stop(); // stopping a stopped server does nothing
}

#[test]
fn a_persistent_redis_server_keeps_its_keys_unless_wiped() {
    let dir = scratch("redis-persistent");
    let Some(mut server) = skip_if_missing(
        RedisServer::builder()
            .dir(&dir)
            .persistent()
            .args(["--appendfilename", "leases.aof"])
            .start_timeout(Duration::from_secs(600))
            .start(),
    ) else {
        return;
    };
    let addr = server.addr();
    assert_eq!(redis(addr, "SET k v"), "+OK");
    server.restart().expect("restart");
    assert_eq!(redis(addr, "GET k"), "$1", "persisted across a restart");
    server.restart_wiped().expect("restart wiped");
    assert_eq!(redis(addr, "GET k"), "$-1", "wiped");
    let folder = server.log_path().parent().expect("folder").to_path_buf();
    assert!(folder.starts_with(&dir));
    let service: Service = server.into_service();
    drop(service);
    assert!(!folder.exists(), "the folder goes with the server");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_crashed_redis_server_says_how_it_ended() {
    let Some(mut server) = skip_if_missing(RedisServer::start_with(&["--maxclients", "100"]))
    else {
        return;
    };
    server.signal("KILL");
    let mut how = None;
    while how.is_none() {
        how = server.exited();
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(how.expect("ended").contains("signal"));
}

#[test]
fn a_redis_server_with_a_bad_argument_fails_at_once_with_its_log() {
    let e = match RedisServer::start_with(&["--no-such-directive", "x"]) {
        Err(e) if e.is_missing() => return skip_if_missing::<()>(Err(e)).unwrap_or(()),
        Err(e) => e.to_string(),
        Ok(_) => panic!("a bad directive started"),
    };
    eprintln!("{e}");
    assert!(e.contains("redis-server did not start"), "{e}");
    assert!(e.contains("it exited"), "{e}");
    assert!(e.contains("no-such-directive"), "the log says why: {e}");
    let log = e
        .split("of its log ")
        .nth(1)
        .and_then(|l| l.split(':').next())
        .expect("log path");
    assert!(
        Path::new(log).exists(),
        "the log of a failed start stays: {e}"
    );
    let _ = std::fs::remove_dir_all(Path::new(log).parent().expect("folder"));
}

#[test]
fn cluster_nodes_form_a_cluster() {
    let dir = scratch("cluster");
    let nodes: Result<Vec<_>, _> = (0..3)
        .map(|_| RedisServer::builder().dir(&dir).cluster_node().start())
        .collect();
    let Some(nodes) = skip_if_missing(nodes) else {
        return;
    };
    let addrs: Vec<SocketAddr> = nodes.iter().map(|n| n.addr()).collect();
    form_cluster(&addrs).expect("form");
    assert!(redis(addrs[0], "CLUSTER INFO").starts_with('$'));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn plain_servers_do_not_form_a_cluster() {
    let Some(server) = skip_if_missing(RedisServer::start()) else {
        return;
    };
    let e = form_cluster(&[server.addr()]).expect_err("not a cluster node");
    assert!(
        e.to_string().contains("redis-cli --cluster create failed"),
        "{e}"
    );
}

#[test]
fn a_server_that_exits_at_once_fails_at_once_with_the_end_of_its_log() {
    let dir = scratch("exits");
    let addr = loopback(free_port());
    let mut s = Service::new(
        "fake-exits",
        sh("for i in $(seq 1 100); do echo line $i; done; echo fatal >&2; exit 3"),
        addr,
        dir.join("logs/fake.log"),
    );
    let e = s.start().expect_err("it exits");
    assert!(!e.is_missing());
    let e = e.to_string();
    assert!(e.contains("fake-exits did not start"), "{e}");
    assert!(
        e.contains(&format!("waited for {addr} to accept a TCP connection")),
        "{e}"
    );
    assert!(e.contains("exited (exit status: 3)"), "{e}");
    assert!(e.contains("the last 40 lines of its log"), "{e}");
    assert!(e.contains("line 62\n    line 63"), "{e}");
    assert!(!e.contains("line 61\n"), "only the last 40 lines: {e}");
    assert!(e.contains("fatal"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_server_that_never_listens_fails_at_the_configured_bound() {
    let dir = scratch("silent");
    let addr = loopback(free_port());
    let mut s = Service::new(
        "fake-silent",
        sh("echo starting up; exec sleep 600"),
        addr,
        dir.join("fake.log"),
    )
    .with_start_timeout(Duration::from_millis(300));
    let e = s.start().expect_err("never listens").to_string();
    assert!(e.contains("nothing answered within 300ms"), "{e}");
    assert!(
        e.contains(START_TIMEOUT_VAR),
        "says how to change the bound: {e}"
    );
    assert!(e.contains("starting up"), "{e}");
    assert_eq!(s.exited(), None, "the process was stopped");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_missing_program_is_missing() {
    let mut s = Service::new(
        "fake-missing",
        Command::new("/nonexistent/leasing-no-such-server"),
        loopback(free_port()),
        scratch("missing").join("fake.log"),
    )
    .with_install_hint("scripts/fake-up.sh installs it");
    let e = s.start().expect_err("missing");
    assert!(e.is_missing());
    assert!(
        e.to_string().contains("scripts/fake-up.sh installs it"),
        "{e}"
    );
}

#[test]
fn a_program_that_cannot_run_fails() {
    let dir = scratch("not-executable");
    let path = dir.join("not-executable");
    std::fs::write(&path, "not a program").expect("write");
    let mut s = Service::new(
        "fake",
        Command::new(&path),
        loopback(free_port()),
        dir.join("l"),
    );
    let e = s.start().expect_err("cannot run");
    assert!(!e.is_missing());
    assert!(e.to_string().contains("cannot run fake"), "{e}");
}

#[test]
fn a_taken_port_fails_before_spawning() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr");
    let mut s = Service::new(
        "fake",
        sh("exit 0"),
        addr,
        scratch("taken").join("fake.log"),
    );
    let e = s.start().expect_err("taken").to_string();
    assert!(e.contains("something else already listens"), "{e}");
}

#[test]
fn a_log_or_data_folder_that_cannot_be_made_fails() {
    let addr = loopback(free_port());
    let mut s = Service::new("fake", sh("exit 0"), addr, "/proc/leasing-no/fake.log");
    assert!(s
        .start()
        .expect_err("no log")
        .to_string()
        .contains("log /proc"));
    let mut s = Service::new("fake", sh("exit 0"), addr, "/tmp/x.log").with_data("/proc/no");
    assert!(s
        .start()
        .expect_err("no data")
        .to_string()
        .contains("/proc/no"));
}

#[test]
fn a_graceful_stop_terminates_first_and_kills_when_ignored() {
    let dir = scratch("graceful");
    let fake = fake_server(&dir);
    for ignore in [false, true] {
        let addr = loopback(free_port());
        let mut c = Command::new("node");
        c.arg(&fake).args(["--port", &addr.port().to_string()]);
        if ignore {
            c.env("FAKE_IGNORE_TERM", "1");
        }
        let mut s = Service::new("fake", c, addr, dir.join(format!("{ignore}.log")))
            .with_data(dir.join("data"))
            .with_graceful_stop(Duration::from_millis(300));
        s.start().expect("start");
        std::fs::write(dir.join("data/kept"), "x").expect("data");
        s.restart().expect("restart");
        assert!(dir.join("data/kept").exists());
        s.restart_wiped().expect("restart wiped");
        assert!(!dir.join("data/kept").exists());
        s.stop();
        assert!(!answers(addr));
    }
    let log = std::fs::read_to_string(dir.join("true.log")).expect("log");
    assert!(log.contains("ignored TERM"), "{log}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
#[should_panic(expected = "NOPE is not a signal")]
fn an_unknown_signal_panics() {
    let dir = scratch("signal");
    let fake = fake_server(&dir);
    let addr = loopback(free_port());
    let mut c = Command::new("node");
    c.arg(&fake).args(["--port", &addr.port().to_string()]);
    let mut s = Service::new("fake", c, addr, dir.join("fake.log"));
    s.start().expect("start");
    s.signal("NOPE");
}

#[test]
#[should_panic(expected = "fake is not running")]
fn a_signal_to_a_stopped_server_panics() {
    Service::new("fake", sh("exit 0"), loopback(1), "/tmp/x.log").signal("STOP");
}

#[test]
#[should_panic(expected = "did not start")]
fn a_failed_start_is_not_skipped() {
    let mut s = Service::new(
        "fake",
        sh("exit 1"),
        loopback(free_port()),
        "/tmp/leasing-x.log",
    );
    let _ = skip_if_missing(s.start());
}

#[test]
fn an_azurite_stand_in_starts_in_memory_or_persistent() {
    let dir = scratch("azurite");
    let fake = fake_server(&dir);
    let mut a = AzuriteServer::builder()
        .bin(&fake)
        .dir(&dir)
        .start_timeout(Duration::from_secs(600))
        .start()
        .expect("start");
    let addr = a.addr();
    assert_eq!(a.url(), format!("http://{addr}/devstoreaccount1"));
    assert!(AzuriteServer::connection_string_for(addr)
        .ends_with(&format!("DevelopmentStorageProxyUri=http://{addr}")));
    a.restart().expect("restart");
    let log = std::fs::read_to_string(a.log_path()).expect("log");
    assert!(log.contains("--inMemoryPersistence"), "{log}");
    let p = AzuriteServer::builder()
        .bin(&fake)
        .persistent()
        .start()
        .expect("start");
    let log = std::fs::read_to_string(p.log_path()).expect("log");
    assert!(log.contains("--location"), "{log}");
    drop(p.into_service());
    drop(a);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn azurite_is_missing_where_it_is_not_installed() {
    let e = AzuriteServer::builder()
        .bin("/nonexistent/azurite-blob")
        .start()
        .expect_err("missing");
    assert!(e.is_missing());
    assert!(e.to_string().contains("azurite-up.sh"), "{e}");
    // The default: the installed one, or missing.
    match AzuriteServer::start() {
        Ok(a) => assert!(answers(a.addr())),
        Err(e) => assert!(e.is_missing(), "{e}"),
    }
}

/// A `node_modules` folder the emulator launcher accepts.
fn fake_modules(dir: &Path) -> PathBuf {
    let modules = dir.join("node_modules");
    std::fs::create_dir_all(modules.join("@vercel/cosmosdb-server")).expect("modules");
    modules
}

#[test]
fn a_cosmos_emulator_stand_in_starts_with_its_flags() {
    let dir = scratch("cosmos");
    let e = CosmosEmulator::builder()
        .installed_at(fake_server(&dir), fake_modules(&dir))
        .dir(&dir)
        .advertise_port(4321)
        .args(["--multi-write"])
        .start_timeout(Duration::from_secs(600))
        .start()
        .expect("start");
    assert_eq!(
        e.connection_string(),
        format!(
            "AccountEndpoint=http://{}/;AccountKey={COSMOS_EMULATOR_KEY};",
            e.addr()
        )
    );
    let log = std::fs::read_to_string(e.log_path()).expect("log");
    assert!(
        log.contains("--no-ssl --advertise-port 4321 --multi-write"),
        "{log}"
    );
    drop(e.into_service());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_cosmos_launcher_that_fails_shows_what_node_said() {
    let dir = scratch("cosmos-fails");
    let e = CosmosEmulator::builder()
        .installed_at(dir.join("no-such-launcher.js"), fake_modules(&dir))
        .start()
        .expect_err("no launcher");
    assert!(!e.is_missing());
    let e = e.to_string();
    assert!(e.contains("the Cosmos emulator did not start"), "{e}");
    assert!(
        e.contains("no-such-launcher.js"),
        "node says what it could not find: {e}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cosmos_emulator_stand_in_behind_its_proxy() {
    let dir = scratch("cosmos-proxy");
    let (e, proxy) = CosmosEmulator::builder()
        .installed_at(fake_server(&dir), fake_modules(&dir))
        .start_behind_proxy()
        .await
        .expect("start");
    let log = std::fs::read_to_string(e.log_path()).expect("log");
    let advertised = format!("--advertise-port {}", proxy.addr().port());
    assert!(log.contains(&advertised), "{log}");
    assert!(CosmosEmulator::connection_string_for(proxy.addr()).contains(&proxy.addr().to_string()));
    let mut s = tokio::net::TcpStream::connect(proxy.addr())
        .await
        .expect("through the proxy");
    let mut hello = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut s, &mut hello)
        .await
        .expect("read");
    assert_eq!(hello, "hello\n");
    drop(e);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cosmos_emulator_is_missing_where_it_is_not_installed() {
    let e = CosmosEmulator::builder()
        .installed_at("/nonexistent/launch.js", "/nonexistent/node_modules")
        .start_behind_proxy()
        .await
        .expect_err("missing");
    assert!(e.is_missing());
    assert!(e.to_string().contains("cosmos-up.sh"), "{e}");
    // The default: the installed one, or missing.
    match tokio::task::spawn_blocking(CosmosEmulator::start)
        .await
        .expect("join")
    {
        Ok(c) => assert!(answers(c.addr())),
        Err(e) => assert!(e.is_missing(), "{e}"),
    }
}
