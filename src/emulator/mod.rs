//! Faithful local emulators of the external APIs steward talks to, for tests, the demo
//! and benchmarks. They run in-process or as `steward emulate ...`, speak real HTTP, and
//! follow the official API shapes; fault injection is an admin endpoint, never a switch
//! inside the client.

pub mod github;
pub mod vercel;
