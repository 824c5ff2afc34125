"""berth loadtest: locust scenarios and the headless benchmark."""
