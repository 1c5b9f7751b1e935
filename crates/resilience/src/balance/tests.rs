use std::collections::HashMap;

use flotilla_core::ServiceName;

use super::*;

fn instances(n: usize) -> Vec<ServiceInstance> {
    let name = ServiceName::new("users").unwrap();
    (0..n)
        .map(|i| ServiceInstance::new(name.clone(), format!("10.0.0.{i}"), 80))
        .collect()
}

fn balancer(strategy: Strategy, outlier: OutlierConfig) -> Balancer {
    Balancer::new(
        "users",
        BalanceConfig {
            strategy,
            outlier,
            ..BalanceConfig::default()
        },
        None,
    )
}

fn counts(b: &Balancer, picks: usize) -> HashMap<String, usize> {
    let mut c = HashMap::new();
    for _ in 0..picks {
        let p = b.pick(None).unwrap();
        *c.entry(p.instance().address.clone()).or_default() += 1;
        p.finish(true);
    }
    c
}

#[tokio::test(start_paused = true)]
async fn round_robin_visits_each_instance_in_turn() {
    let b = balancer(Strategy::RoundRobin, OutlierConfig::default());
    b.update(1, &instances(3));
    assert!(counts(&b, 30).values().all(|&n| n == 10));
}

#[tokio::test(start_paused = true)]
async fn weighted_follows_weights_and_skips_weight_zero() {
    let mut list = instances(3);
    list[0].weight = 3;
    list[1].weight = 1;
    list[2].weight = 0;
    let b = balancer(Strategy::Weighted, OutlierConfig::default());
    b.update(1, &list);
    let c = counts(&b, 4000);
    assert!(!c.contains_key("10.0.0.2"));
    let ratio = c["10.0.0.0"] as f64 / c["10.0.0.1"] as f64;
    assert!((2.4..3.6).contains(&ratio), "{ratio}");
}

#[tokio::test(start_paused = true)]
async fn least_outstanding_avoids_the_busy_instance() {
    let b = balancer(Strategy::LeastOutstanding, OutlierConfig::default());
    b.update(1, &instances(2));
    let held: Vec<_> = (0..2).map(|_| b.pick(None).unwrap()).collect();
    let busy = held[0].instance().address.clone();
    assert_ne!(
        busy,
        held[1].instance().address,
        "the second call went to the idle instance"
    );
    let _hold = b.pick(None).unwrap(); // ties again: either
    drop(held);
}

#[tokio::test(start_paused = true)]
async fn p2c_shifts_load_away_from_a_slow_instance() {
    let b = balancer(Strategy::PeakEwma, OutlierConfig::default());
    b.update(1, &instances(3));
    let mut per = HashMap::<String, usize>::new();
    for _ in 0..3000 {
        let p = b.pick(None).unwrap();
        let addr = p.instance().address.clone();
        let latency = if addr == "10.0.0.0" { 200 } else { 5 };
        tokio::time::advance(Duration::from_millis(latency)).await;
        p.finish(true);
        *per.entry(addr).or_default() += 1;
    }
    let slow = per.get("10.0.0.0").copied().unwrap_or(0);
    assert!(
        slow < 3000 / 10,
        "slow instance got {slow} of 3000: {per:?}"
    );
    assert!(per["10.0.0.1"] > 1000 && per["10.0.0.2"] > 1000, "{per:?}");
}

#[tokio::test(start_paused = true)]
async fn consistent_hashing_moves_only_the_leaving_instances_keys() {
    let b = balancer(Strategy::ConsistentHash, OutlierConfig::default());
    let all = instances(10);
    b.update(1, &all);
    let keys: Vec<String> = (0..10_000).map(|k| format!("user-{k}")).collect();
    let owner = |b: &Balancer, k: &str| b.pick(Some(k.as_bytes())).unwrap().instance().id.clone();
    let before: Vec<String> = keys.iter().map(|k| owner(&b, k)).collect();
    let leaving = all[3].id.clone();
    b.update(2, all.iter().filter(|i| i.id != leaving));
    let mut moved = 0;
    for (k, was) in keys.iter().zip(&before) {
        let now = owner(&b, k);
        if &now != was {
            assert_eq!(
                was, &leaving,
                "key {k} moved between two instances that stayed"
            );
            moved += 1;
        }
    }
    let fraction = moved as f64 / keys.len() as f64;
    assert!(
        (0.05..0.15).contains(&fraction),
        "moved {fraction} of keys, expected ~1/10"
    );
}

#[tokio::test(start_paused = true)]
async fn outliers_are_ejected_for_a_growing_time_but_never_the_last_one() {
    let outlier = OutlierConfig {
        consecutive_failures: 2,
        base_ejection: Duration::from_secs(10),
        max_ejection: Duration::from_secs(60),
    };
    let b = balancer(Strategy::RoundRobin, outlier);
    b.update(1, &instances(2));
    // Every call fails: the first instance to reach two failures is ejected...
    for _ in 0..4 {
        b.pick(None).unwrap().finish(false);
    }
    let ejected: Vec<_> = b
        .endpoints()
        .iter()
        .map(|e| e.is_ejected(b.shared.now_ns()))
        .collect();
    assert_eq!(ejected.iter().filter(|e| **e).count(), 1, "{ejected:?}");
    // ...and the survivor keeps failing but is never ejected: it is the last one.
    for _ in 0..10 {
        let p = b.pick(None).unwrap();
        p.finish(false);
    }
    let now = b.shared.now_ns();
    assert_eq!(
        b.endpoints().iter().filter(|e| e.is_ejected(now)).count(),
        1
    );
    // The ejected instance comes back after its ejection.
    tokio::time::advance(Duration::from_secs(11)).await;
    let now = b.shared.now_ns();
    assert_eq!(
        b.endpoints().iter().filter(|e| e.is_ejected(now)).count(),
        0
    );
}

#[tokio::test(start_paused = true)]
async fn a_single_instance_is_never_ejected() {
    let outlier = OutlierConfig {
        consecutive_failures: 1,
        ..OutlierConfig::default()
    };
    let b = balancer(Strategy::Random, outlier);
    b.update(1, &instances(1));
    for _ in 0..20 {
        b.pick(None).unwrap().finish(false);
    }
    assert!(!b.endpoints()[0].is_ejected(b.shared.now_ns()));
}

#[test]
fn no_instances_means_no_pick() {
    let b = balancer(Strategy::PeakEwma, OutlierConfig::default());
    assert!(b.pick(None).is_none());
    b.update(1, &[]);
    assert!(b.pick(None).is_none());
}
