"""What the daemon keeps per model between events: windows, histograms, vocabularies, feedback, references."""
