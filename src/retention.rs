//! Retention: typed durations, hold arithmetic and the [`RetentionTag`] that rides on
//! every report (docs/design.md#retention-tag).
//!
//! *Hold deadline* of a record collected at `t` under receipt `g`:
//! `t + min(g.hold, catalogue max hold)`. Of an anonymous partition: its bucket end plus
//! its tag's hold. All arithmetic saturates; nothing here can panic.

mod duration;
mod tag;

pub use duration::{Deadline, Duration, DurationError, EventName, Period};
pub use tag::{RetentionTag, TagError};
