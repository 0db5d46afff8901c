//! The update agent.
