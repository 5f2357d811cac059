//! The daemon's core: domain models, the injected clock, the shared `DataHub` and the engine
//! that spawns and wires the tasks. Models and the clock are plain data; the hub is the only
//! shared mutable state, and no lock on it is ever held across an `.await`.

pub mod clock;
pub mod data_hub;
pub mod engine;
pub mod models;
pub mod systemd;
