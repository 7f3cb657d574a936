//! TODO(skeleton): estimate
