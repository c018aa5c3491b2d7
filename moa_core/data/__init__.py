"""Data: plate designs, load_data tables, image I/O and the synthetic renderer."""
