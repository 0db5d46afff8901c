//! GPT priority attributes.
