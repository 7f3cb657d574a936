//! TODO(skeleton): retention
