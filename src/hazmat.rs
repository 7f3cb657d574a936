//! TODO(skeleton): hazmat
