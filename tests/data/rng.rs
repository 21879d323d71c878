//! The PRNG: determinism, resuming, ranges and shuffles.

use super::*;

#[test]
fn rng_is_deterministic_and_resumable() {
    let a: Vec<u64> = {
        let mut r = Rng::new(42);
        (0..100).map(|_| r.next_u64()).collect()
    };
    let b: Vec<u64> = {
        let mut r = Rng::new(42);
        (0..100).map(|_| r.next_u64()).collect()
    };
    assert_eq!(a, b);
    let mut c = Rng::new(43);
    assert_ne!(a[0], c.next_u64());

    // Derived streams depend on every key word and on their order.
    let first = |key: &[u64]| Rng::derive(7, key).next_u64();
    assert_eq!(first(&[1, 2]), first(&[1, 2]));
    let distinct = [
        first(&[]),
        first(&[0]),
        first(&[1, 2]),
        first(&[2, 1]),
        first(&[1, 2, 0]),
        Rng::derive(8, &[1, 2]).next_u64(),
    ];
    for i in 0..distinct.len() {
        for j in i + 1..distinct.len() {
            assert_ne!(distinct[i], distinct[j], "streams {i} and {j} coincide");
        }
    }

    // Exact resume through serde.
    let mut r = Rng::new(5);
    for _ in 0..17 {
        r.next_u64();
    }
    let saved = serde_json::to_string(&r).unwrap();
    let mut restored: Rng = serde_json::from_str(&saved).unwrap();
    for _ in 0..50 {
        assert_eq!(r.next_u64(), restored.next_u64());
    }
    assert!(serde_json::from_str::<Rng>("[0,0,0,0]").is_err());
    assert_eq!(Rng::from_state(r.state()), Some(r.clone()));
    assert_eq!(Rng::from_state([0; 4]), None);
}

#[test]
fn rng_ranges_and_shuffle() {
    let mut r = Rng::new(1);
    let mut counts = [0usize; 7];
    let mut sum = 0.0f64;
    for _ in 0..70_000 {
        let u = r.uniform();
        assert!((0.0..1.0).contains(&u));
        sum += f64::from(u);
        let v = r.range(-2.0, 3.0);
        assert!((-2.0..=3.0).contains(&v));
        counts[r.below(7)] += 1;
    }
    assert!((sum / 70_000.0 - 0.5).abs() < 0.01);
    for c in counts {
        assert!((9_000..11_000).contains(&c), "below(7) counts {counts:?}");
    }
    assert_eq!(r.below(0), 0);
    assert_eq!(r.below(1), 0);
    assert!(!r.bernoulli(0.0));
    assert!(r.bernoulli(1.0));
    let hits = (0..10_000).filter(|_| r.bernoulli(0.3)).count();
    assert!((2_700..3_300).contains(&hits));

    let mut items: Vec<u32> = (0..100).collect();
    r.shuffle(&mut items);
    assert_ne!(items, (0..100).collect::<Vec<_>>());
    let mut sorted = items.clone();
    sorted.sort();
    assert_eq!(sorted, (0..100).collect::<Vec<_>>());
    let mut again: Vec<u32> = (0..100).collect();
    let mut r1 = Rng::new(9);
    let mut r2 = Rng::new(9);
    r1.shuffle(&mut again);
    let mut again2: Vec<u32> = (0..100).collect();
    r2.shuffle(&mut again2);
    assert_eq!(again, again2);
}
