//! TODO(skeleton): pseudonym
