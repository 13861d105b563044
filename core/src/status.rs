//! The job state machine: QUEUED -> RUNNING | CANCELLED; RUNNING -> SUCCEEDED | FAILED |
//! CANCELLED; terminal states change no more.

use crate::model::JobStatus::{self, *};

/// Whether a job may move from `from` to `to`. Staying in the same state is not a transition
/// (a patch that repeats the current status changes nothing and is accepted by the validator).
pub fn can_transition(from: JobStatus, to: JobStatus) -> bool {
    matches!((from, to), (Queued, Running | Cancelled) | (Running, Succeeded | Failed | Cancelled))
}

/// The states a job may be created in.
pub fn is_initial(status: JobStatus) -> bool {
    matches!(status, Queued | Running)
}

/// Where a job can go from `from`.
pub fn next_states(from: JobStatus) -> Vec<JobStatus> {
    JobStatus::ALL.iter().copied().filter(|to| can_transition(from, *to)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pair() {
        // One line per (from, to): the whole 5x5 table.
        let allowed =
            [(Queued, Running), (Queued, Cancelled), (Running, Succeeded), (Running, Failed), (Running, Cancelled)];
        for from in JobStatus::ALL {
            for to in JobStatus::ALL {
                assert_eq!(can_transition(*from, *to), allowed.contains(&(*from, *to)), "{from} -> {to}");
            }
        }
        for terminal in [Succeeded, Failed, Cancelled] {
            assert!(next_states(terminal).is_empty());
            assert!(terminal.is_terminal());
        }
        assert!(is_initial(Queued) && is_initial(Running) && !is_initial(Failed));
    }
}
