//! TODO(skeleton): noise
