"""The bookstore app (seed 002): a catalogue of made-up books, a page per book, and its events."""
