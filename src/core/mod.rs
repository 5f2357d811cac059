//! The ground floor: domain models, the injected clock, the shared `DataHub`, the loop's
//! liveness and the systemd notifications. It imports nothing from the layers above it; the
//! tasks that wire everything together live in `tasks/`.

pub mod clock;
pub mod data_hub;
pub mod liveness;
pub mod models;
pub mod systemd;
