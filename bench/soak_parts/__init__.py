"""The soak test's parts: request kinds and outcomes, the clients, the fault schedule, monitors, the report."""
