"""Validation: the Great Expectations suites, and the engines that run them."""
