"""sagehost: run Amazon SageMaker endpoints anywhere."""

__version__ = "0.1.0"

__all__ = ["__version__"]
