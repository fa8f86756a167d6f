"""Business logic as plain functions; views, admin, tasks and commands all call these."""
