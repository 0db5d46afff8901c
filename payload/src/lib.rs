//! CrAU update payloads (major versions 1 and 2): parsing, signature checks,
//! generation and a streaming, verifying apply. Filled by issue 3.
