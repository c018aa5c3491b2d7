"""Pheno-CA (Linsley et al., "Neural scaling laws for phenotypic drug discovery"): data and tasks."""
