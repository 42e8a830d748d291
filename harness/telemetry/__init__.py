"""Board telemetry: turn what Jetson tools print (tegrastats) into typed samples and tidy rows."""
