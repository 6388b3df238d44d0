"""Running requests and archiving them: config, driver, processes, replicates, telemetry."""
