"""Benchmarks, one script each, run from the checkout's root as `python bench/NAME.py` or `python -m bench.NAME`
(`-m` where nothing is installed, as on the GPU machine). What they share with the tests is in docground_testing/;
bench/qa/ holds the QA benchmark's questions and their tools."""
