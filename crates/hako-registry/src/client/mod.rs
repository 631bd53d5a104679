//! The registry client (filled in step 5).
