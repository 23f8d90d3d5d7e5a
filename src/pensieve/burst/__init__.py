"""The burst controller: decides per request whether it runs on the local model or a cloud model, and why."""
