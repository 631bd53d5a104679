//! hako's builder, the parts that know Dockerfiles and build contexts: the Dockerfile parser
//! and word expansion, `.dockerignore` matching, and content hashes for the layer cache. The
//! engine (hako-api) runs the steps.

pub mod dockerfile;
pub mod ignore;
