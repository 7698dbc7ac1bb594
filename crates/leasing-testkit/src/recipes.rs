//! The recipe suite: leader election and the counting semaphore of
//! `leasing_abstractions::{election, semaphore}`, checked against a real backend. Every
//! provider crate runs [`run_all`] on its servers, as it runs the conformance suite.
//!
//! The checks judge by the clock-free facts a user can rely on: at the moment a candidate
//! is elected, every earlier leader's [`is_leader`](leasing_abstractions::election::Leadership::is_leader)
//! already answers `false` (it answers from its safety deadline, whatever the scheduler
//! did); terms' fencing tokens strictly increase; a permit holder is never one of more
//! than N holders that each still believe they hold. Each prints what it measured
//! (hand-off times, acquisitions per waiter) for the docs.

use crate::conformance::Subject;
use leasing_abstractions::election::{Election, Leadership};
use leasing_abstractions::fault::{Fault, FaultInjectingProvider};
use leasing_abstractions::fence::{Fence, FencedResource, FencedWrite};
use leasing_abstractions::semaphore::{Permit, Semaphore};
use leasing_abstractions::Operation;
use leasing_abstractions::{LeaseManager, LeaseOptions, LeaseProvider};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::time::Instant;

/// The terms seen so far: who, and the handle while it lives.
type Terms = Vec<(String, Weak<Leadership>)>;

/// Runs every recipe check.
pub async fn run_all(subject: &Subject) {
    one_leader_at_a_time(subject).await;
    resign_hands_over(subject).await;
    a_cut_off_leader_is_told_before_the_next_is_elected(subject).await;
    observers_follow_the_terms(subject).await;
    semaphore_never_exceeds_its_permits(subject).await;
}

/// The lease duration of the recipe checks: the subject's short duration, at least 3 s
/// (so that a loaded machine renews in time; losing a term is allowed, but slows the
/// checks down).
fn term(subject: &Subject) -> Duration {
    subject.short_duration.max(Duration::from_secs(3))
}

fn manager(provider: Arc<dyn LeaseProvider>, d: Duration) -> LeaseManager {
    let options = LeaseOptions::default()
        .with_default_lease_duration(d)
        .with_acquire_retry_interval(Duration::from_millis(200));
    LeaseManager::new(provider, options).expect("valid recipe options")
}

fn election(m: &LeaseManager, name: &str, identity: &str) -> Election {
    Election::builder(m, name)
        .identity(identity)
        .build()
        .expect("valid election")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Three candidates (two on the provider, one on a fresh client) campaign in a loop,
/// hold for a while and resign or drop their term. At each election, no earlier term
/// still believes it leads, and tokens strictly increase.
pub async fn one_leader_at_a_time(subject: &Subject) {
    let d = term(subject);
    let name = subject.name("election");
    let managers = [
        manager(Arc::clone(&subject.provider), d),
        manager(Arc::clone(&subject.fresh), d),
        manager(Arc::clone(&subject.provider), d),
    ];
    let live: Arc<Mutex<Terms>> = Arc::default();
    let tokens: Arc<Mutex<Vec<u64>>> = Arc::default();
    let mut tasks = Vec::new();
    for (i, m) in managers.iter().enumerate() {
        let e = election(m, &name, &format!("c{i}"));
        let (live, tokens) = (Arc::clone(&live), Arc::clone(&tokens));
        tasks.push(tokio::spawn(async move {
            for round in 0..3u64 {
                let lead = Arc::new(e.campaign().await.expect("campaign"));
                {
                    let mut live = live.lock().unwrap_or_else(|p| p.into_inner());
                    for (who, other) in live.iter() {
                        if let Some(other) = other.upgrade() {
                            assert!(
                                !other.is_leader(),
                                "two leaders: {} (token {}) elected while {who} (token {}) still leads",
                                lead.identity(),
                                lead.fencing_token(),
                                other.fencing_token()
                            );
                        }
                    }
                    live.push((lead.identity().to_owned(), Arc::downgrade(&lead)));
                    let mut tokens = tokens.lock().unwrap_or_else(|p| p.into_inner());
                    if let Some(&last) = tokens.last() {
                        assert!(
                            lead.fencing_token() > last,
                            "term token {} not above the previous term's {last}",
                            lead.fencing_token()
                        );
                    }
                    tokens.push(lead.fencing_token());
                }
                tokio::time::sleep(Duration::from_millis(50 + 40 * ((i as u64 + round) % 4))).await;
                let lead = Arc::try_unwrap(lead).expect("one owner");
                if round % 2 == 0 {
                    lead.resign().await.expect("resign");
                } else {
                    drop(lead); // dropping resigns too
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("candidate task");
    }
    let tokens = tokens.lock().unwrap_or_else(|p| p.into_inner());
    assert_eq!(
        tokens.len(),
        9,
        "every candidate led three times: {tokens:?}"
    );
}

/// A follower waiting in `campaign` is elected soon after the leader resigns (woken by
/// the release notification where the backend has them, else within its retry period).
/// Prints p50 / p99 of the hand-off over 20 trials.
pub async fn resign_hands_over(subject: &Subject) {
    let d = term(subject);
    let name = subject.name("handoff");
    let (ma, mb) = (
        manager(Arc::clone(&subject.provider), d),
        manager(Arc::clone(&subject.fresh), d),
    );
    let (a, b) = (election(&ma, &name, "a"), election(&mb, &name, "b"));
    let mut times = Vec::new();
    let mut leader = a.campaign().await.expect("a campaigns");
    let mut follower = b.clone();
    let mut next = a.clone();
    for _ in 0..20 {
        let waiting = {
            let f = follower.clone();
            tokio::spawn(async move {
                let l = f.campaign().await.expect("follower campaigns");
                (l, Instant::now())
            })
        };
        // Let the follower find the name held and start waiting.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let resigned = Instant::now();
        let old = leader.fencing_token();
        leader.resign().await.expect("resign");
        let (new, at) = waiting.await.expect("follower task");
        assert!(
            new.fencing_token() > old,
            "hand-off token {} after {old}",
            new.fencing_token()
        );
        times.push(at - resigned);
        leader = new;
        std::mem::swap(&mut follower, &mut next);
    }
    leader.resign().await.expect("resign");
    times.sort();
    println!(
        "recipe {}: hand-off after resign over {} trials: p50 {:?}, p99 {:?}, max {:?}",
        subject.provider.provider_name(),
        times.len(),
        percentile(&times, 0.5),
        percentile(&times, 0.99),
        times[times.len() - 1]
    );
}

/// A leader whose renewals and release cannot reach the backend is told at its safety
/// deadline; the next candidate is elected only when the backend lets the name go, and
/// at that moment the old leader already knows.
pub async fn a_cut_off_leader_is_told_before_the_next_is_elected(subject: &Subject) {
    let d = subject.short_duration.max(Duration::from_secs(2));
    let name = subject.name("cutoff");
    let faulty = FaultInjectingProvider::new(Arc::clone(&subject.provider));
    let faults = faulty.control();
    let (ma, mb) = (
        manager(Arc::new(faulty), d),
        manager(Arc::clone(&subject.fresh), d),
    );
    let (a, b) = (election(&ma, &name, "a"), election(&mb, &name, "b"));
    let lead = a.campaign().await.expect("a campaigns");
    let told = lead.cancellation_token();
    faults.script(Operation::Renew, vec![Fault::Hang; 10_000]);
    faults.script(Operation::Release, vec![Fault::Hang; 10_000]);
    let cut = Instant::now();
    let (new, at) = {
        let l = b.campaign().await.expect("b campaigns");
        (l, Instant::now())
    };
    assert!(told.is_cancelled(), "b elected while a's term was not over");
    assert!(
        !lead.is_leader(),
        "b elected while a still believes it leads"
    );
    assert!(new.fencing_token() > lead.fencing_token());
    println!(
        "recipe {}: cut-off leader replaced {:?} after the cut ({d:?} terms)",
        subject.provider.provider_name(),
        at - cut
    );
    faults.clear();
    new.resign().await.expect("resign");
}

/// An observer sees each new term, with the leader's identity and token.
pub async fn observers_follow_the_terms(subject: &Subject) {
    let d = term(subject);
    let name = subject.name("observe");
    let (ma, mb) = (
        manager(Arc::clone(&subject.provider), d),
        manager(Arc::clone(&subject.fresh), d),
    );
    let a = election(&ma, &name, "a");
    let watcher = election(&mb, &name, "watcher");
    let mut watch = watcher.observe().await.expect("observe");
    assert!(watch.current().is_none(), "nobody leads yet");
    for _ in 0..2 {
        let lead = a.campaign().await.expect("campaign");
        let seen = loop {
            if let Some(l) = watch.changed().await {
                break l;
            }
        };
        assert_eq!(seen.identity.as_deref(), Some("a"));
        assert_eq!(seen.fencing_token, lead.fencing_token());
        lead.resign().await.expect("resign");
        while watch.changed().await.is_some() {}
    }
}

/// Five workers (on two clients) share a semaphore of two permits: at each acquisition
/// fewer than two other permits still believe they hold, tokens strictly increase per
/// permit, every worker gets its turns. Prints acquisitions per worker.
pub async fn semaphore_never_exceeds_its_permits(subject: &Subject) {
    let d = term(subject);
    let name = subject.name("sem");
    let (ma, mb) = (
        manager(Arc::clone(&subject.provider), d),
        manager(Arc::clone(&subject.fresh), d),
    );
    let (sa, sb) = (
        Semaphore::builder(&ma, &name, 2)
            .build()
            .expect("semaphore"),
        Semaphore::builder(&mb, &name, 2)
            .build()
            .expect("semaphore"),
    );
    let live: Arc<Mutex<Vec<Weak<Permit>>>> = Arc::default();
    let tokens: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
    let until = Instant::now() + Duration::from_secs(6);
    let mut tasks = Vec::new();
    for w in 0..5usize {
        let sem = if w % 2 == 0 { sa.clone() } else { sb.clone() };
        let (live, tokens) = (Arc::clone(&live), Arc::clone(&tokens));
        tasks.push(tokio::spawn(async move {
            let mut n = 0u32;
            while Instant::now() < until {
                let p = Arc::new(sem.acquire_timeout(None).await.expect("permit"));
                n += 1;
                {
                    let mut live = live.lock().unwrap_or_else(|p| p.into_inner());
                    live.retain(|o| o.strong_count() > 0);
                    let others = live
                        .iter()
                        .filter_map(Weak::upgrade)
                        .filter(|o| o.is_held())
                        .count();
                    assert!(others < 2, "{} permits held at once", others + 1);
                    live.push(Arc::downgrade(&p));
                    let mut tokens = tokens.lock().unwrap_or_else(|p| p.into_inner());
                    let last = tokens.entry(p.slot_name().to_owned()).or_insert(0);
                    assert!(
                        p.fencing_token() > *last,
                        "{}: token {} after {last}",
                        p.slot_name(),
                        p.fencing_token()
                    );
                    *last = p.fencing_token();
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                Arc::try_unwrap(p)
                    .expect("one owner")
                    .release()
                    .await
                    .expect("release");
            }
            n
        }));
    }
    let mut counts = Vec::new();
    for t in tasks {
        counts.push(t.await.expect("worker task"));
    }
    assert!(
        counts.iter().all(|&n| n > 0),
        "a worker never got a permit: {counts:?}"
    );
    println!(
        "recipe {}: semaphore of 2, 5 workers for 6 s: acquisitions per worker {counts:?}",
        subject.provider.provider_name()
    );
}

/// A fenced resource's contract, checked on `resource` with leases of `subject`'s
/// provider: a paused holder's write after a newer holder's is refused and leaves the
/// newer value; equal tokens pass (the same holder again); tokens of different lease
/// names do not interfere; concurrent writers end with the largest token's value.
pub async fn fenced_resource(subject: &Subject, resource: &dyn FencedResource) {
    let d = term(subject);
    let m = manager(Arc::clone(&subject.provider), d);
    let name = subject.name("fence");
    let key = subject.name("item");
    assert_eq!(resource.read(&key).await.expect("read"), None, "fresh key");
    assert_eq!(resource.highest(&key, &name).await.expect("highest"), None);
    // The paused holder: it holds, writes, then stops (an operator breaks its lease).
    let old = m.acquire(&name).await.expect("acquire");
    let stale = Fence::of(&old);
    assert_eq!(
        resource.write(&stale, &key, b"old-1").await.expect("write"),
        FencedWrite::Written
    );
    assert_eq!(
        resource.write(&stale, &key, b"old-2").await.expect("write"),
        FencedWrite::Written,
        "the same holder writes again"
    );
    assert!(m.break_lease(&name).await.expect("break"));
    let new = m.acquire(&name).await.expect("acquire after the break");
    assert!(new.fencing_token() > old.fencing_token());
    assert_eq!(
        resource
            .write(&Fence::of(&new), &key, b"new")
            .await
            .expect("write"),
        FencedWrite::Written
    );
    // The old holder resumes and writes: refused, the new value stays.
    assert_eq!(
        resource.write(&stale, &key, b"stale").await.expect("write"),
        FencedWrite::Stale {
            highest: new.fencing_token()
        }
    );
    assert_eq!(
        resource.read(&key).await.expect("read").as_deref(),
        Some(&b"new"[..])
    );
    assert_eq!(
        resource.highest(&key, &name).await.expect("highest"),
        Some(new.fencing_token())
    );
    // Another lease's tokens are compared only with that lease's.
    let other = subject.name("fence-other");
    assert_eq!(
        resource
            .write(&Fence::new(&other, 1), &key, b"other")
            .await
            .expect("write"),
        FencedWrite::Written
    );
    assert_eq!(
        resource.highest(&key, &other).await.expect("highest"),
        Some(1)
    );
    assert_eq!(
        resource.highest(&key, &name).await.expect("highest"),
        Some(new.fencing_token())
    );
    // Concurrent writers with tokens 1..=8 on a fresh key: every write is one atomic
    // check-and-set, so the key ends with the largest token and its value, and a write
    // refused names a token at least its own.
    let key2 = subject.name("race");
    let fence_name = subject.name("race-lease");
    let results = futures::future::join_all((1..=8u64).map(|t| {
        let f = Fence::new(&fence_name, t);
        let key2 = &key2;
        async move {
            let value = format!("v{t}");
            (
                t,
                resource
                    .write(&f, key2, value.as_bytes())
                    .await
                    .expect("write"),
            )
        }
    }))
    .await;
    for (t, r) in &results {
        if let FencedWrite::Stale { highest } = r {
            assert!(
                highest > t,
                "token {t} refused by a lower highest {highest}"
            );
        }
    }
    assert_eq!(
        resource.highest(&key2, &fence_name).await.expect("highest"),
        Some(8)
    );
    assert_eq!(
        resource.read(&key2).await.expect("read").as_deref(),
        Some(&b"v8"[..])
    );
    new.release().await.expect("release");
}
