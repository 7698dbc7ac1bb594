//! Command-line options (`--key value` pairs; no parser crate needed for a dozen flags).

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

pub(crate) const USAGE: &str = "\
usage:
  leasing-chaos run [--backend memory,redis,redlock,blob,cosmos,redis-cluster|all] [--duration 60s] [--clients 8]
                    [--names 3] [--lease 2s] [--fault-every 3s] [--seed N]
                    [--out target/chaos] [--no-skew] [--no-wipe] [--no-restart-fence]
                    [--faults KIND,...] [--warn-only] [--recipe lease|election|semaphore] [--permits 2]
  leasing-chaos check HISTORY.jsonl...
  leasing-chaos client ...   (internal: one client process, started by `run`)

  --backend      comma-separated backends, or `all` (memory,redis,redlock); blob
                 (Azurite from scripts/azurite-up.sh) uses leases of 15 s at least;
                 cosmos (the emulator scripts/cosmos-up.sh installs) whole seconds, and
                 no restarts unless --faults server_restart_wiped (it keeps nothing);
                 redis-cluster (3 private masters) no network faults, no wiped restarts
  --duration     run time per backend (500ms, 60s, 10m)
  --clients      competing clients (processes; threads for memory)
  --names        lease names they compete for
  --lease        lease duration
  --fault-every  pause between injected faults
  --no-skew      no clients with a wall clock 30 s off (faketime)
  --no-wipe      no server restarts that lose the data (restart without persistence)
  --no-restart-fence
                 Redis clients without a restart fence (shows what a restart without
                 persistence does then: two believed holders)
  --faults       only these faults: pause_holder, kill_holder, network_cut, latency,
                 server_restart_persistent, server_restart_wiped, server_down,
                 majority_restart_wiped (Redlock, only when asked for)
  --warn-only    print violations but exit 0
  --recipe       what clients hold: leases (default), the leadership of an election per
                 name (one leader at a time), or permits of a semaphore per name (each
                 permit slot judged as a lease: at most --permits holders per name)
  --permits      permits per semaphore (--recipe semaphore)
";

/// Every backend `all` runs.
pub(crate) const ALL_BACKENDS: [&str; 3] = ["memory", "redis", "redlock"];

fn pairs(args: &[String], flags: &[&str]) -> Result<HashMap<String, String>, String> {
    let mut out = HashMap::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let key = a
            .strip_prefix("--")
            .ok_or_else(|| format!("unexpected argument {a:?}\n\n{USAGE}"))?;
        if flags.contains(&key) {
            out.insert(key.to_owned(), "true".to_owned());
            continue;
        }
        let v = it.next().ok_or_else(|| format!("--{key} needs a value"))?;
        out.insert(key.to_owned(), v.clone());
    }
    Ok(out)
}

/// Parses `500ms`, `60s`, `10m`, `1h` (a bare number is seconds).
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("bad duration {s:?} (use 500ms, 60s, 10m)");
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: f64 = num.parse().map_err(|_| bad())?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(bad()),
    };
    Duration::try_from_secs_f64(secs).map_err(|_| bad())
}

fn num<T: std::str::FromStr>(
    m: &HashMap<String, String>,
    key: &str,
    default: T,
) -> Result<T, String> {
    match m.get(key) {
        None => Ok(default),
        Some(v) => v.parse().map_err(|_| format!("--{key}: bad number {v:?}")),
    }
}

fn dur(m: &HashMap<String, String>, key: &str, default: Duration) -> Result<Duration, String> {
    m.get(key).map_or(Ok(default), |v| parse_duration(v))
}

/// Options of `run`.
/// What the clients hold: plain leases, the leadership of an election per name, or
/// permits of a semaphore per name (of this many permits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Recipe {
    Lease,
    Election,
    Semaphore(usize),
}

impl Recipe {
    /// `lease`, `election` or `semaphore` (with `permits`), or the client form
    /// `semaphore:N`.
    pub(crate) fn parse(s: &str, permits: usize) -> Result<Self, String> {
        match s.split_once(':') {
            _ if s == "lease" => Ok(Recipe::Lease),
            _ if s == "election" => Ok(Recipe::Election),
            _ if s == "semaphore" => Ok(Recipe::Semaphore(permits)),
            Some(("semaphore", n)) => n
                .parse()
                .map(Recipe::Semaphore)
                .map_err(|_| format!("--recipe: bad permit count in {s:?}")),
            _ => Err(format!(
                "unknown recipe {s:?}; known: lease, election, semaphore"
            )),
        }
    }

    /// The client argument.
    pub(crate) fn arg(self) -> String {
        match self {
            Recipe::Lease => "lease".into(),
            Recipe::Election => "election".into(),
            Recipe::Semaphore(n) => format!("semaphore:{n}"),
        }
    }

    /// The lease names the clients hold for the run's `names`: the names themselves, or
    /// each semaphore's permit slots.
    pub(crate) fn lease_names(self, names: &[String]) -> Vec<String> {
        match self {
            Recipe::Lease | Recipe::Election => names.to_vec(),
            Recipe::Semaphore(n) => names
                .iter()
                .flat_map(|name| (0..n).map(move |i| format!("{name}.permit-{i}")))
                .collect(),
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct RunOpts {
    pub(crate) recipe: Recipe,
    pub(crate) backends: Vec<String>,
    pub(crate) duration: Duration,
    pub(crate) clients: usize,
    pub(crate) names: usize,
    pub(crate) lease: Duration,
    pub(crate) fault_every: Duration,
    pub(crate) seed: u64,
    pub(crate) out: PathBuf,
    pub(crate) skew: bool,
    pub(crate) wipe: bool,
    pub(crate) restart_fence: bool,
    pub(crate) faults: Option<Vec<String>>,
    pub(crate) warn_only: bool,
}

impl RunOpts {
    pub(crate) fn parse(args: &[String]) -> Result<Self, String> {
        let m = pairs(
            args,
            &["no-skew", "no-wipe", "no-restart-fence", "warn-only"],
        )?;
        let backends: Vec<String> = match m.get("backend").map(String::as_str) {
            None | Some("all") => ALL_BACKENDS.iter().map(|s| s.to_string()).collect(),
            Some(list) => list.split(',').map(|s| s.trim().to_owned()).collect(),
        };
        for b in &backends {
            if !crate::backend::KNOWN.contains(&b.as_str()) {
                return Err(format!(
                    "unknown backend {b:?}; known: {}",
                    crate::backend::KNOWN.join(", ")
                ));
            }
        }
        let permits: usize = num(&m, "permits", 2)?;
        if permits == 0 {
            return Err("--permits must be at least 1".into());
        }
        let o = Self {
            recipe: Recipe::parse(m.get("recipe").map_or("lease", String::as_str), permits)?,
            backends,
            duration: dur(&m, "duration", Duration::from_secs(60))?,
            clients: num(&m, "clients", 8)?,
            names: num(&m, "names", 3)?,
            lease: dur(&m, "lease", Duration::from_secs(2))?,
            fault_every: dur(&m, "fault-every", Duration::from_secs(3))?,
            seed: num(&m, "seed", fastrand::u64(..))?,
            out: m
                .get("out")
                .map_or_else(|| PathBuf::from("target/chaos"), PathBuf::from),
            skew: !m.contains_key("no-skew"),
            wipe: !m.contains_key("no-wipe"),
            restart_fence: !m.contains_key("no-restart-fence"),
            faults: m
                .get("faults")
                .map(|f| f.split(',').map(|s| s.trim().to_owned()).collect()),
            warn_only: m.contains_key("warn-only"),
        };
        if o.clients < 2 || o.names == 0 {
            return Err("need --clients >= 2 and --names >= 1".into());
        }
        if o.lease < Duration::from_millis(300) {
            return Err("--lease must be at least 300ms".into());
        }
        Ok(o)
    }
}

/// Options of `client` (set by the runner).
#[derive(Debug, Clone)]
pub(crate) struct ClientOpts {
    pub(crate) backend: String,
    pub(crate) spec: String,
    pub(crate) id: String,
    pub(crate) names: Vec<String>,
    pub(crate) lease: Duration,
    pub(crate) until_ns: u64,
    pub(crate) history: PathBuf,
    pub(crate) fence: std::net::SocketAddr,
    pub(crate) seed: u64,
    /// Redis restart fence; zero is off.
    pub(crate) restart_fence: Duration,
    pub(crate) recipe: Recipe,
}

impl ClientOpts {
    pub(crate) fn parse(args: &[String]) -> Result<Self, String> {
        let m = pairs(args, &[])?;
        let get = |k: &str| {
            m.get(k)
                .cloned()
                .ok_or_else(|| format!("client: --{k} missing"))
        };
        Ok(Self {
            backend: get("backend")?,
            spec: get("spec")?,
            id: get("id")?,
            names: get("names")?.split(',').map(str::to_owned).collect(),
            lease: parse_duration(&get("lease")?)?,
            until_ns: num(&m, "until-ns", 0)?,
            history: PathBuf::from(get("history")?),
            fence: get("fence")?
                .parse()
                .map_err(|e| format!("client: --fence: {e}"))?,
            seed: num(&m, "seed", 0)?,
            restart_fence: dur(&m, "restart-fence", Duration::ZERO)?,
            recipe: Recipe::parse(m.get("recipe").map_or("lease", String::as_str), 0)?,
        })
    }

    pub(crate) fn to_args(&self) -> Vec<String> {
        vec![
            "client".into(),
            "--backend".into(),
            self.backend.clone(),
            "--spec".into(),
            self.spec.clone(),
            "--id".into(),
            self.id.clone(),
            "--names".into(),
            self.names.join(","),
            "--lease".into(),
            format!("{}ms", self.lease.as_millis()),
            "--until-ns".into(),
            self.until_ns.to_string(),
            "--history".into(),
            self.history.display().to_string(),
            "--fence".into(),
            self.fence.to_string(),
            "--seed".into(),
            self.seed.to_string(),
            "--restart-fence".into(),
            format!("{}ms", self.restart_fence.as_millis()),
            "--recipe".into(),
            self.recipe.arg(),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert!(parse_duration("1x").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn run_options_parse_and_validate() {
        let a = |s: &str| s.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
        let o = RunOpts::parse(&a("--backend redis --duration 5s --no-skew --seed 7")).unwrap();
        assert_eq!(o.backends, vec!["redis"]);
        assert_eq!(o.duration, Duration::from_secs(5));
        assert!(!o.skew && o.wipe && !o.warn_only && o.restart_fence);
        assert!(
            !RunOpts::parse(&a("--no-restart-fence"))
                .unwrap()
                .restart_fence
        );
        assert_eq!(o.seed, 7);
        assert_eq!(
            RunOpts::parse(&[]).unwrap().backends.len(),
            ALL_BACKENDS.len()
        );
        assert!(RunOpts::parse(&a("--backend nope")).is_err());
        assert!(RunOpts::parse(&a("--clients 1")).is_err());
        assert!(RunOpts::parse(&a("--duration")).is_err());
        assert!(RunOpts::parse(&a("stray")).is_err());
    }

    #[test]
    fn client_options_round_trip() {
        let c = ClientOpts {
            backend: "redis".into(),
            spec: "redis://127.0.0.1:1".into(),
            id: "c1".into(),
            names: vec!["a".into(), "b".into()],
            lease: Duration::from_millis(1500),
            until_ns: 42,
            history: PathBuf::from("/tmp/h.jsonl"),
            fence: "127.0.0.1:9".parse().unwrap(),
            seed: 3,
            restart_fence: Duration::from_secs(2),
            recipe: Recipe::Semaphore(3),
        };
        let back = ClientOpts::parse(&c.to_args()[1..]).unwrap();
        assert_eq!(back.names, c.names);
        assert_eq!(back.lease, c.lease);
        assert_eq!(back.until_ns, 42);
        assert_eq!(back.fence, c.fence);
        assert_eq!(back.restart_fence, c.restart_fence);
        assert_eq!(back.recipe, Recipe::Semaphore(3));
    }

    #[test]
    fn recipes_parse() {
        let a = |s: &str| s.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
        let o = RunOpts::parse(&a("--recipe semaphore --permits 4")).unwrap();
        assert_eq!(o.recipe, Recipe::Semaphore(4));
        assert_eq!(RunOpts::parse(&a("")).unwrap().recipe, Recipe::Lease);
        assert_eq!(
            RunOpts::parse(&a("--recipe election")).unwrap().recipe,
            Recipe::Election
        );
        assert!(RunOpts::parse(&a("--recipe nope")).is_err());
        assert!(RunOpts::parse(&a("--recipe semaphore --permits 0")).is_err());
        assert!(Recipe::parse("semaphore:x", 0).is_err());
        for r in [Recipe::Lease, Recipe::Election, Recipe::Semaphore(2)] {
            assert_eq!(Recipe::parse(&r.arg(), 0).unwrap(), r);
        }
        let names = vec!["n".to_owned()];
        assert_eq!(
            Recipe::Semaphore(2).lease_names(&names),
            vec!["n.permit-0", "n.permit-1"]
        );
        assert_eq!(Recipe::Election.lease_names(&names), names);
    }
}
