//! Prefixed, time-ordered identifiers (`int_...`, `dlv_...`, `log_...`): lower-cased
//! ULIDs, monotonic per thread (one generator per thread, so busy threads never wait
//! for each other), so ids sort in creation order to the millisecond. Ordering by id is
//! how lists page newest-first and how retention cuts.

use std::cell::RefCell;
use std::time::{Duration, SystemTime};

use ulid::{Generator, Ulid};

thread_local! {
    static GENERATOR: RefCell<Generator> = const { RefCell::new(Generator::new()) };
}

pub const INTEGRATION: &str = "int";
pub const DELIVERY: &str = "dlv";
pub const LOG: &str = "log";

pub fn new_id(prefix: &str) -> String {
    let ulid = GENERATOR.with(|g| {
        // Overflow means 2^80 ids in one millisecond; step into the next one.
        g.borrow_mut()
            .generate()
            .unwrap_or_else(|o| o.commit_overflow_increment())
    });
    format!("{prefix}_{}", ulid.to_string().to_lowercase())
}

/// The smallest id with `prefix` created at `at`: every id created before `at` sorts
/// below it.
pub fn floor_at(prefix: &str, at: SystemTime) -> String {
    let ms = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as u64;
    format!(
        "{prefix}_{}",
        Ulid::from_parts(ms, 0).to_string().to_lowercase()
    )
}

/// Whether `id` looks like an id this service made with `prefix` (cheap syntax check
/// before a lookup).
pub fn is_valid(prefix: &str, id: &str) -> bool {
    id.strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('_'))
        .is_some_and(|u| u.len() == 26 && Ulid::from_string(&u.to_uppercase()).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_in_creation_order() {
        let ids: Vec<String> = (0..1000).map(|_| new_id(LOG)).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted);
        assert!(ids.iter().all(|id| is_valid(LOG, id)));
    }

    #[test]
    fn floor_sorts_below_later_ids_and_above_earlier_ones() {
        let before = new_id(LOG);
        std::thread::sleep(Duration::from_millis(3));
        let floor = floor_at(LOG, SystemTime::now());
        std::thread::sleep(Duration::from_millis(3));
        let after = new_id(LOG);
        assert!(before < floor && floor < after, "{before} {floor} {after}");
    }

    #[test]
    fn validity_checks_prefix_and_shape() {
        assert!(!is_valid(INTEGRATION, "int_"));
        assert!(!is_valid(INTEGRATION, &new_id(LOG)));
        assert!(!is_valid(INTEGRATION, "int_../../etc/passwd"));
    }
}
