//! TODO(skeleton): consent
