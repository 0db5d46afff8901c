//! Omaha v3 protocol types (no I/O). Filled by issue 4.
