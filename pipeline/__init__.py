"""Pipeline runners: what the trigger step starts and the workflow watches."""
