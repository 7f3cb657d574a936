//! TODO(skeleton): ledger
