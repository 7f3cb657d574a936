//! TODO(skeleton): transcrypt
