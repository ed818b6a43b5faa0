"""rail: deploy BLOOM and BLOOMZ within the BigScience BLOOM RAIL License v1.0."""
__version__ = "0.1.0"
