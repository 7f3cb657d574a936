//! TODO(skeleton): ldp
