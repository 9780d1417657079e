//! The whole story (deploy three releases, split, flip, roll back, retire) against moto with
//! faults injected at the seam on 20% of calls: throttling, 5xx, timeouts, slow answers and
//! resets after the call went through. Each run must reach exactly the end state of a
//! fault-free run, with nothing lost or doubled in the published state and history.

mod common;

use common::fault_story::{story, Counts};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_story_reaches_its_end_state_at_a_20_percent_fault_rate() {
    let mut total = Counts::default();
    for seed in 1..=3 {
        let c = story(seed, 0.2).await;
        assert!(c.faults > 0 && c.faults * 10 > c.calls, "seed {seed}: faults were injected at about the rate: {c:?}");
        total.calls += c.calls;
        total.faults += c.faults;
    }
    eprintln!("3 stories at 20%: {} calls, {} faults injected", total.calls, total.faults);
}
