//! Alone in its own test binary (one test, one thread), so the process-wide
//! allocation count sees only this test.
use metaprompt::*;

#[test]
fn drop_frees_everything() {
    let before = live_allocations();
    let cfgs: Vec<Config> = (0..20).map(|_| Config::new().unwrap()).collect();
    assert!(live_allocations() > before);
    let copy = cfgs[0].try_clone().unwrap();
    drop(cfgs);
    drop(copy);
    assert_eq!(live_allocations(), before);
}
