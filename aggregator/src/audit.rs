//! TODO(skeleton): audit
