//! TODO(skeleton): envelope
