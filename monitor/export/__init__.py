"""What leaves the process: the metrics contract and its collectors, the HTTP server, reports, and alerts."""
