"""What the server keeps between requests: the SQLite database that sessions and file records share."""
