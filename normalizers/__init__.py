"""Normalizers turn one channel's raw statement into standard records (and rejects)."""
