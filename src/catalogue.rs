//! TODO(skeleton): catalogue
